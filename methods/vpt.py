"""VPT-Deep: Visual Prompt Tuning (Jia et al., ECCV 2022, arXiv:2203.12119), deep variant.

`length` learned prompt tokens are inserted after the class token before the first block;
before every later block the previous prompt outputs are replaced by that layer's own
prompts. Init is VPT's Xavier-uniform bound sqrt(6 / (3 * patch_h * patch_w + dim)).
This is the VPT row the SSF paper compares against; `vpt_shallow` prompts the first layer only.

Works on backbones with a token sequence and `blocks` (timm ViTs) and on Swin, prompted stage
by stage as the official VPT code does (methods/_vpt_swin.py); elsewhere it reports the run as
unsupported.
"""
import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from bench.config import POSITIVE, UNIT, one_of
from methods import Unsupported, _vpt_swin
from methods._common import freeze, train_head


@dataclass
class Config:
    length: int = 8  # prompt tokens per prompted layer
    dropout: float = 0.0  # dropout on the prompt embeddings
    shallow_prompts: str = "carry"  # vpt_shallow: carry: the prompt outputs flow through every block (VPT) |
    # remove: dropped after the first block (PETL_Vision); vpt replaces its prompts at every block either way


RULES = {"method.length": POSITIVE, "method.dropout": UNIT, "method.shallow_prompts": one_of("carry", "remove")}


class Prompts(nn.Module):
    def __init__(self, layers: int, length: int, dim: int, patch_area: int, dropout: float):
        super().__init__()
        bound = math.sqrt(6.0 / (3 * patch_area + dim))
        self.tokens = nn.Parameter(torch.empty(layers, length, dim).uniform_(-bound, bound))
        self.dropout = nn.Dropout(dropout)


class _InsertPrompts:
    """Forward pre-hook on block `layer`: put that layer's prompts after the `prefix` tokens."""

    def __init__(self, prompts: Prompts, layer: int, prefix: int, replace: bool):
        self.prompts, self.layer, self.prefix, self.replace = prompts, layer, prefix, replace

    def __call__(self, block, args, kwargs):
        x = args[0]  # (B, prefix [+ length] + N, D)
        p = self.prompts.dropout(self.prompts.tokens[self.layer]).expand(x.shape[0], -1, -1).to(x.dtype)
        rest = x[:, self.prefix + (p.shape[1] if self.replace else 0):]
        return (torch.cat([x[:, :self.prefix], p, rest], dim=1), *args[1:]), kwargs


class _RemovePrompts:
    """Forward hook on the first block: drop its `length` prompt outputs after the `prefix` tokens."""

    def __init__(self, prefix: int, length: int):
        self.prefix, self.length = prefix, length

    def __call__(self, block, inputs, output):  # (B, prefix + length + N, D) -> (B, prefix + N, D)
        return torch.cat([output[:, :self.prefix], output[:, self.prefix + self.length:]], dim=1)


def add_prompts(model: nn.Module, cfg: Config, deep: bool, method: str) -> nn.Module:
    remove = not deep and cfg.shallow_prompts == "remove"
    if _vpt_swin.is_swin(model):  # per-stage prompts (methods/_vpt_swin.py)
        if remove:
            raise Unsupported(f"{method}: shallow_prompts=remove is PETL_Vision's ViT forward; not defined on Swin")
        freeze(model)
        _vpt_swin.add_prompts(model, cfg.length, deep, cfg.dropout)
        train_head(model)
        return model
    if not all(hasattr(model, a) for a in ("blocks", "num_prefix_tokens", "patch_embed", "embed_dim")):
        raise Unsupported(f"{method}: backbone {type(model).__name__} has no token sequence with "
                          f"`blocks` and `num_prefix_tokens` (VPT needs a ViT-style model)")
    freeze(model)
    patch_area = math.prod(model.patch_embed.patch_size)
    layers = len(model.blocks) if deep else 1
    model.vpt = Prompts(layers, cfg.length, model.embed_dim, patch_area, cfg.dropout)
    prefix = model.num_prefix_tokens
    for i in range(layers):
        model.blocks[i].register_forward_pre_hook(_InsertPrompts(model.vpt, i, prefix, replace=i > 0), with_kwargs=True)
    if remove:  # PETL_Vision's forward_features: the prompt outputs of block 0 are cut before block 1
        model.blocks[0].register_forward_hook(_RemovePrompts(prefix, cfg.length))
    else:  # prompts sit among the prefix tokens, so timm's pooling (CLS or average) ignores them
        model.num_prefix_tokens = prefix + cfg.length
    train_head(model)
    return model


def apply(model: nn.Module, cfg: Config) -> nn.Module:
    return add_prompts(model, cfg, deep=True, method="vpt")
