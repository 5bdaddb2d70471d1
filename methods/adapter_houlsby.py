"""Houlsby adapter: a bottleneck adapter after both the attention and the MLP of each block
(Houlsby et al., ICML 2019, arXiv:1902.00751), as PETL_Vision runs it (`rand_h_adapter`).

Each sublayer's output `h` becomes `h + s * up(dropout(relu(down(h))))` before the residual
add (PETL_Vision's `sequential_after`). Xavier-uniform projections with N(0, 1e-6) biases
(PETL_Vision's `xavier` init for rand_h_adapter), so the model does not start exactly equal to
the backbone. Defaults are PETL_Vision's: bottleneck 64, scale 0.1, dropout 0.1 (its grid:
bottleneck {4, 8, 16, 32} x scale {0.01, 0.1, 1, 10}). On blocks with LayerScale (DINOv2)
the adapter acts before it; PETL_Vision applies LayerScale on both sides.

The Xavier init is what PETL_Vision's adapter file declares; its runs start elsewhere: its model
constructor redraws every Linear afterwards, so weights trunc-normal std 0.02, biases zero
(`init=trunc_normal`, `recipe=petl_vision`). Its block also applies drop path twice, on the
sublayer's output and again around sublayer + adapter, two draws and the 1/(1-p) rescaling
twice where both keep: `x + DP'(DP(h) + a(DP(h)))` (`drop_path=nested`), where the default
`shared` is timm's one drop path around `h + a(h)`. The same in evaluation.

Needs blocks with `attn` and `mlp` (ViT family, Swin); nothing to merge.
"""
from dataclasses import dataclass

import torch.nn as nn

from bench.config import NON_NEGATIVE, POSITIVE, UNIT, one_of
from methods._adapter import place
from methods._bottleneck import INITS, Bottleneck
from methods._common import freeze, train_head

DROP_PATHS = ("shared", "nested")


@dataclass
class Config:
    bottleneck: int = 64
    scale: float = 0.1
    dropout: float = 0.1
    init: str = "xavier"  # xavier (PETL_Vision's file) | zero_up: starts equal to the backbone | lora_xavier
    # | trunc_normal: weights std 0.02, biases 0 (PETL_Vision's runs)
    drop_path: str = "shared"  # shared: one draw around sublayer + adapter | nested: PETL_Vision's two draws


RULES = {"method.bottleneck": POSITIVE, "method.scale": NON_NEGATIVE, "method.dropout": UNIT,
         "method.init": one_of(*INITS), "method.drop_path": one_of(*DROP_PATHS)}


def apply(model: nn.Module, cfg: Config) -> nn.Module:
    """Adapter+'s `houlsby` position (methods/_adapter.py) with ReLU, constant scale, no branch drop path."""
    freeze(model)
    place(model, "adapter_houlsby", "houlsby", "houlsby",
          lambda dim: Bottleneck(dim, cfg.bottleneck, cfg.scale, cfg.init, "relu", cfg.dropout), cfg.drop_path)
    train_head(model)
    return model
