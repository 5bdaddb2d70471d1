"""Adapter: a bottleneck MLP (down, GELU, up, residual) after each block's MLP (Houlsby et al. 2019;
sequential placement as in the VPT and NOAH code).

The up-projection starts at zero, so the adapted model starts equal to the backbone; the
down-projection starts random (PyTorch's Kaiming-uniform Linear init). Zeroing all four
tensors, as the VPT and V-PETL code does, leaves the down-projection with zero gradient
forever: with GELU(0) = 0 only the up-projection's bias would ever train.
"""
from dataclasses import dataclass

import torch
import torch.nn as nn

from methods._common import find_modules, freeze, train_head

MLP_NAMES = ("mlp", "mlp_channels")  # the block MLP in ViT / Swin / ConvNeXt, Mixer's channel MLP


@dataclass
class Config:
    bottleneck: int = 8
    scale: float = 1.0  # multiplies the adapter's output before the residual add


class Adapter(nn.Module):
    def __init__(self, dim: int, bottleneck: int, scale: float):
        super().__init__()
        self.down = nn.Linear(dim, bottleneck)  # random init: must get gradients once `up` moves
        self.act = nn.GELU()
        self.up = nn.Linear(bottleneck, dim)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, N, dim)
        return x + self.scale * self.up(self.act(self.down(x)))


def _hook(module: nn.Module, inputs, output):
    return module.adapter(output)


def apply(model: nn.Module, cfg: Config) -> nn.Module:
    freeze(model)
    mlps = find_modules(model, lambda n, m: n.rsplit(".", 1)[-1] in MLP_NAMES and hasattr(m, "fc2"),
                        f"block MLPs (modules named {'/'.join(MLP_NAMES)} with an fc2)", "adapter")
    for _, mlp in mlps:
        mlp.adapter = Adapter(mlp.fc2.out_features, cfg.bottleneck, cfg.scale)
        mlp.register_forward_hook(_hook)
    train_head(model)
    return model
