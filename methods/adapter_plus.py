"""Adapter+: a bottleneck adapter after the whole block with a learned per-channel scale, Houlsby init and
drop path on the branch (Steitz & Roth, "Adapters Strike Back", CVPR 2024; visinf/adapter_plus).

`out = z + s ⊙ DP(up(GELU(down(z))))`, z the block's output: visinf/adapter_plus's `AdapterBlock.forward_post`
with conf/adapter/adapter_plus.yaml (config post, scaling channel, init houlsby, norm_layer false, bias,
dim 8, dropout 0, drop_path 0.1). `s` starts at ones; both projections trunc-normal std 0.01 cut at
+-0.02, biases zero, as its `Adapter` draws them (its model rebuilds the blocks after timm's
init_weights, so nothing redraws them); the branch's stochastic depth is 0.1 in every block, apart from
the backbone's own (train.drop_path).

The whole design space of its code is here as options: `position` (methods/_adapter.py: post, pre,
intermediate, parallel, houlsby, pfeiffer), `scaling` (constant `scale`, a learned scalar, per channel),
`init` (houlsby, lora, bert), `norm` (a LayerNorm on the branch's input, Pfeiffer's), `dropout` on the
hidden activation vs `branch_drop_path` on the branch, `bias`. Its named ablation configs are overrides of
this one (docs/methods.md). Needs transformer blocks (ViT family, Swin); nothing to merge: the branch
is nonlinear.
"""
from dataclasses import dataclass

import torch.nn as nn

from bench.config import POSITIVE, UNIT, one_of
from methods._adapter import POSITIONS, place
from methods._bottleneck import PLUS_INITS, SCALINGS, Bottleneck
from methods._common import freeze, train_head


@dataclass
class Config:
    bottleneck: int = 8  # Adapter+'s `dim` (its rank)
    position: str = "post"  # post | pre | intermediate | parallel | houlsby | pfeiffer
    scaling: str = "channel"  # channel: learned per channel | learned: one learned scalar | constant: `scale`
    scale: float = 1.0  # scaling=constant: the constant
    init: str = "houlsby"  # houlsby: trunc-normal std 0.01, zero biases | lora: zero up | bert: normal std 0.02
    norm: bool = False  # a LayerNorm on the branch's input (pfeiffer's config: true)
    bias: bool = True  # biases in down and up
    dropout: float = 0.0  # on the hidden activation, before up
    branch_drop_path: float = 0.1  # stochastic depth on the branch alone, the same rate in every block


RULES = {"method.bottleneck": POSITIVE, "method.position": one_of(*POSITIONS), "method.scaling": one_of(*SCALINGS),
         "method.init": one_of(*PLUS_INITS), "method.dropout": UNIT, "method.branch_drop_path": UNIT}


def apply(model: nn.Module, cfg: Config) -> nn.Module:
    freeze(model)

    def branch(dim: int) -> Bottleneck:
        return Bottleneck(dim, cfg.bottleneck, cfg.scale, cfg.init, "gelu", cfg.dropout, scaling=cfg.scaling,
                          norm=cfg.norm, bias=cfg.bias, drop_branch=cfg.branch_drop_path)

    # intermediate and houlsby: the block's drop path on the sublayer alone (after its LayerScale), the adapter
    # reading its output: y + DP(ls(h)) + a(DP(ls(h)))
    place(model, "adapter_plus", "adapter", cfg.position, branch, drop_path="sublayer", layer_scale=True)
    train_head(model)
    return model
