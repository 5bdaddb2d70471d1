"""Convpass: convolutional bypasses beside each block's attention and MLP (Jie and Deng 2022,
arXiv:2207.07039; official code JieShibo/PETL-ViT `convpass`, as PETL_Vision runs it).

Each bypass reads the sublayer's normalised input (`norm1(x)`, `norm2(x)`) and is added to the
sublayer's output: `x + attn(n1) + s * convpass(n1)`, then the same for the MLP. A bypass is
`up(dropout(act(conv3x3(act(down(t))))))` with QuickGELU: the patch tokens are laid back on
their H x W grid for the 3 x 3 convolution; each prefix token (class token, DINOv2's registers)
goes through the same convolution alone as a 1 x 1 map, as the official code treats the class
token. Init as the official code: the convolution is the identity (zero kernel, identity at
the centre tap), `down` Xavier-uniform, `up` zero, biases zero, so the model starts equal to
the backbone. Defaults: bottleneck 8, scale 10, dropout 0.1 (PETL_Vision's defaults; its grid:
scale {0.01, 0.1, 1, 10, 100} x bottleneck {8, 16}).

As PETL_Vision's runs effectively trained it (`recipe=petl_vision`): its model constructor
redraws every Linear after the bypass's own init, so `down` and `up` start trunc-normal std 0.02
with zero biases (`init=trunc_normal`; the convolution keeps its identity init, convolutions
are not redrawn), and its block draws drop path separately for each sublayer and its bypass,
`x + DP(attn(n1)) + DP'(convpass(n1))` (`drop_path=separate`), where the default `shared`
drops both with one draw. The same in evaluation.

Needs a ViT token sequence (`patch_embed.grid_size`, `num_prefix_tokens`, `blocks`); Swin's
windowed attention sees windows, not the image grid, so Swin is reported unsupported.
"""
from dataclasses import dataclass

import torch
import torch.nn as nn

from bench.config import NON_NEGATIVE, POSITIVE, UNIT, one_of
from methods import Unsupported
from methods._bottleneck import QuickGELU, init_pair
from methods._common import attach, blocks, freeze, take_drop_path, train_head

INITS = ("lora_xavier", "trunc_normal")
DROP_PATHS = ("shared", "separate")


@dataclass
class Config:
    bottleneck: int = 8
    scale: float = 10.0
    dropout: float = 0.1
    xavier_conv: bool = False  # False: the 3 x 3 conv starts as the identity (official) | True: Xavier-uniform
    init: str = "lora_xavier"  # lora_xavier: down Xavier, up zero (official) | trunc_normal: both std 0.02, biases 0
    drop_path: str = "shared"  # shared: one draw for sublayer + bypass | separate: a draw each (PETL_Vision)


RULES = {"method.bottleneck": POSITIVE, "method.scale": NON_NEGATIVE, "method.dropout": UNIT,
         "method.init": one_of(*INITS), "method.drop_path": one_of(*DROP_PATHS)}


class ConvBypass(nn.Module):
    def __init__(self, dim: int, bottleneck: int, scale: float, dropout: float, grid: tuple[int, int], prefix: int,
                 xavier_conv: bool = False, init: str = "lora_xavier"):
        super().__init__()
        self.conv = nn.Conv2d(bottleneck, bottleneck, 3, 1, 1)
        with torch.no_grad():
            if xavier_conv:
                nn.init.xavier_uniform_(self.conv.weight)
            else:
                self.conv.weight.zero_()
                self.conv.weight[:, :, 1, 1] = torch.eye(bottleneck)
            self.conv.bias.zero_()
        self.down, self.up = nn.Linear(dim, bottleneck), nn.Linear(bottleneck, dim)
        init_pair(self.down, self.up, init)
        self.act, self.drop = QuickGELU(), nn.Dropout(dropout)
        self.scale, self.grid, self.prefix = scale, tuple(grid), prefix

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, prefix + H*W, dim)
        b, n, _ = x.shape
        h, w = self.grid
        if n != self.prefix + h * w:
            raise RuntimeError(f"convpass: {n} tokens, expected {self.prefix} prefix + {h}x{w} patches")
        t = self.act(self.down(x))  # (B, N, k)
        k = t.shape[-1]
        patches = self.conv(t[:, self.prefix:].reshape(b, h, w, k).permute(0, 3, 1, 2))  # (B, k, H, W)
        prefix = self.conv(t[:, :self.prefix].reshape(b * self.prefix, k, 1, 1))  # each prefix token alone
        t = torch.cat([prefix.reshape(b, self.prefix, k), patches.permute(0, 2, 3, 1).reshape(b, h * w, k)], 1)
        return self.scale * self.up(self.drop(self.act(t)))


class _Beside:
    """Forward hook: the sublayer's output plus the bypass of its (normalised) input."""

    def __call__(self, module, inputs, output):
        bypass = module.convpass
        if "drop_path" in bypass._modules:  # drop_path=separate: the block's drop path, one draw per term
            return bypass.drop_path(output) + bypass.drop_path(bypass(inputs[0]))
        return output + bypass(inputs[0])


def apply(model: nn.Module, cfg: Config) -> nn.Module:
    if not all(hasattr(model, a) for a in ("blocks", "num_prefix_tokens", "patch_embed")) or \
            not hasattr(model.patch_embed, "grid_size"):
        raise Unsupported(f"convpass: backbone {type(model).__name__} has no ViT token grid "
                          f"(`patch_embed.grid_size`, `num_prefix_tokens`); Convpass convolves the patch grid")
    freeze(model)
    grid, prefix = model.patch_embed.grid_size, model.num_prefix_tokens
    for block in blocks(model, "convpass"):
        dim = block.norm1.normalized_shape[-1]
        for index, sub in ((1, block.attn), (2, block.mlp)):
            bypass = ConvBypass(dim, cfg.bottleneck, cfg.scale, cfg.dropout, grid, prefix, cfg.xavier_conv, cfg.init)
            if cfg.drop_path == "separate":
                bypass.drop_path = take_drop_path(block, index, "convpass")
            attach(sub, "convpass", bypass, _Beside())
    train_head(model)
    return model
