"""Adapter: a bottleneck MLP (down, GELU, up, residual) after each block's MLP (Houlsby et al. 2019;
sequential placement as in the VPT and NOAH code).

The up-projection starts at zero, so the adapted model starts equal to the backbone; the
down-projection starts random (PyTorch's Kaiming-uniform Linear init). Zeroing all four
tensors, as the VPT and V-PETL code does, leaves the down-projection with zero gradient
forever: with GELU(0) = 0 only the up-projection's bias would ever train.

NOAH's adapter (ZhangYuanhan-AI/NOAH: model/module/adapter_super.py, used through
model/supernet_vision_transformer_timm.py) in two readings:
- as its module file declares it: `init=noah, act=quick_gelu`, both projections Xavier-uniform
  with N(0, 1e-6) biases and QuickGELU, x * sigmoid(1.702 x);
- as NOAH's runs effectively trained it (`recipe=noah`): the model's constructor then redraws
  every Linear with timm's ViT init, so both projections start trunc-normal std 0.02 with zero
  biases (`init=trunc_normal`); dropout 0.1 on the hidden activation, before the up-projection
  (`dropout=0.1`, supernet_train_prompt.py's `--drop_rate_adapter` default); and the block's
  drop path acts on the MLP alone, the adapter reading the dropped output:
  `x + DP(mlp(n)) + up(drop(act(down(DP(mlp(n))))))` with one draw (`drop_path=sublayer`),
  where the default `shared` drops the MLP and the adapter together (timm's one drop path
  around the hooked MLP). Either model starts away from the backbone.
"""
from dataclasses import dataclass

import torch.nn as nn

from bench.config import NON_NEGATIVE, POSITIVE, UNIT, one_of
from methods._adapter import place
from methods._bottleneck import Bottleneck
from methods._common import freeze, train_head

INIT = {"zero_up": "zero_up", "noah": "xavier", "trunc_normal": "trunc_normal"}  # our names -> methods/_bottleneck.py's
DROP_PATHS = ("shared", "sublayer")


@dataclass
class Config:
    bottleneck: int = 8
    scale: float = 1.0  # multiplies the adapter's output before the residual add
    init: str = "zero_up"  # zero_up: starts equal to the backbone | noah: Xavier-uniform, N(0, 1e-6) biases
    # | trunc_normal: weights trunc-normal std 0.02, biases zero (what NOAH's runs start from)
    act: str = "gelu"  # gelu | quick_gelu (NOAH)
    dropout: float = 0.0  # on the hidden activation, before the up-projection (NOAH's runs: 0.1)
    drop_path: str = "shared"  # shared: one drop path around MLP + adapter | sublayer: on the MLP alone,
    # the adapter reading its dropped output (NOAH's block)


RULES = {"method.bottleneck": POSITIVE, "method.scale": NON_NEGATIVE, "method.init": one_of(*INIT),
         "method.act": one_of("gelu", "quick_gelu"), "method.dropout": UNIT, "method.drop_path": one_of(*DROP_PATHS)}


def apply(model: nn.Module, cfg: Config) -> nn.Module:
    """Adapter+'s `intermediate` position (methods/_adapter.py), constant scale, no branch drop path."""
    freeze(model)
    place(model, "adapter", "adapter", "intermediate",
          lambda dim: Bottleneck(dim, cfg.bottleneck, cfg.scale, INIT[cfg.init], cfg.act, cfg.dropout), cfg.drop_path)
    train_head(model)
    return model
