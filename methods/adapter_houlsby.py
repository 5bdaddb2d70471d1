"""Houlsby adapter: a bottleneck adapter after both the attention and the MLP of each block
(Houlsby et al., ICML 2019, arXiv:1902.00751), as PETL_Vision runs it (`rand_h_adapter`).

Each sublayer's output `h` becomes `h + s * up(dropout(relu(down(h))))` before the residual
add (PETL_Vision's `sequential_after`). Xavier-uniform projections with N(0, 1e-6) biases
(PETL_Vision's `xavier` init for rand_h_adapter), so the model does not start exactly equal to
the backbone. Defaults are PETL_Vision's: bottleneck 64, scale 0.1, dropout 0.1 (its grid:
bottleneck {4, 8, 16, 32} x scale {0.01, 0.1, 1, 10}). On blocks with LayerScale (DINOv2)
the adapter acts before it; PETL_Vision applies LayerScale on both sides.

Needs blocks with `attn` and `mlp` (ViT family, Swin); nothing to merge.
"""
from dataclasses import dataclass

import torch.nn as nn

from bench.config import NON_NEGATIVE, POSITIVE, UNIT, one_of
from methods._bottleneck import INITS, Bottleneck
from methods._common import attach, blocks, freeze, train_head


@dataclass
class Config:
    bottleneck: int = 64
    scale: float = 0.1
    dropout: float = 0.1
    init: str = "xavier"  # xavier (PETL_Vision) | zero_up: starts equal to the backbone | lora_xavier


RULES = {"method.bottleneck": POSITIVE, "method.scale": NON_NEGATIVE, "method.dropout": UNIT,
         "method.init": one_of(*INITS)}


class _After:
    """Forward hook: the sublayer's output plus its adapter's branch (the residual around the adapter)."""

    def __call__(self, module, inputs, output):
        return output + module.houlsby(output)


def apply(model: nn.Module, cfg: Config) -> nn.Module:
    freeze(model)
    for block in blocks(model, "adapter_houlsby"):
        dim = block.norm1.normalized_shape[-1]
        for sub in (block.attn, block.mlp):
            attach(sub, "houlsby", Bottleneck(dim, cfg.bottleneck, cfg.scale, cfg.init, "relu", cfg.dropout), _After())
    train_head(model)
    return model
