"""Adapter: a bottleneck MLP (down, GELU, up, residual) after each block's MLP (Houlsby et al. 2019;
sequential placement as in the VPT and NOAH code).

The up-projection starts at zero, so the adapted model starts equal to the backbone; the
down-projection starts random (PyTorch's Kaiming-uniform Linear init). Zeroing all four
tensors, as the VPT and V-PETL code does, leaves the down-projection with zero gradient
forever: with GELU(0) = 0 only the up-projection's bias would ever train.

`init=noah, act=quick_gelu` is NOAH's adapter exactly (ZhangYuanhan-AI/NOAH:
model/module/adapter_super.py): both projections Xavier-uniform with N(0, 1e-6) biases, so the
model does not start equal to the backbone, and QuickGELU, x * sigmoid(1.702 x).
"""
from dataclasses import dataclass

import torch.nn as nn

from bench.config import NON_NEGATIVE, POSITIVE, one_of
from methods._bottleneck import Bottleneck
from methods._common import attach, find_modules, freeze, train_head

MLP_NAMES = ("mlp", "mlp_channels")  # the block MLP in ViT / Swin / ConvNeXt, Mixer's channel MLP
INIT = {"zero_up": "zero_up", "noah": "xavier"}  # our names -> methods/_bottleneck.py's


@dataclass
class Config:
    bottleneck: int = 8
    scale: float = 1.0  # multiplies the adapter's output before the residual add
    init: str = "zero_up"  # zero_up: starts equal to the backbone | noah: Xavier-uniform, N(0, 1e-6) biases
    act: str = "gelu"  # gelu | quick_gelu (NOAH)


RULES = {"method.bottleneck": POSITIVE, "method.scale": NON_NEGATIVE, "method.init": one_of(*INIT),
         "method.act": one_of("gelu", "quick_gelu")}


def _hook(module: nn.Module, inputs, output):
    return output + module.adapter(output)  # (B, N, dim): sequential, residual around the adapter


def apply(model: nn.Module, cfg: Config) -> nn.Module:
    freeze(model)
    mlps = find_modules(model, lambda n, m: n.rsplit(".", 1)[-1] in MLP_NAMES and hasattr(m, "fc2"),
                        f"block MLPs (modules named {'/'.join(MLP_NAMES)} with an fc2)", "adapter")
    for _, mlp in mlps:
        attach(mlp, "adapter", Bottleneck(mlp.fc2.out_features, cfg.bottleneck, cfg.scale, INIT[cfg.init], cfg.act), _hook)
    train_head(model)
    return model
