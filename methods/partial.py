"""Partial fine-tuning (`partial`): the last `k` blocks of the backbone train, with the head.

VPT's `partial-1/2/4` transfer types (KMnP/vpt:src/models/vit_models.py): every parameter of the last
k transformer blocks plus the final norm (`encoder_norm`); PETL_Vision's selective fine-tuning
(OSU-MLB/PETL_Vision:experiment/build_model.py) adds the choice of what in those blocks trains:
`part=block` (`--block_index`: the whole block), `attn` (`--attention_index`, attention_type full:
the attention's qkv and proj) or `mlp` (`--mlp_index`, mlp_type full: fc1 and fc2). PETL_Vision
trains no final norm with them: `final_norm=false`.

Blocks are counted across stages on hierarchical backbones, as VPT's Swin (partial-1: the last
block of the last stage; partial-4: the last stage's blocks, the previous stage's last blocks and
the patch merging between them) and ConvNeXt (partial-0: the last block of the last stage, and the
final norm) code does: the k blocks nearest the head, whatever stage they sit in, and (part=block) a
stage's downsampling layer when it lies between two trained blocks. The final norm is timm's `norm` (ViT,
Swin, Mixer), `fc_norm` (average-pooled ViTs) or the pre-logits norm inside ConvNeXt's head.
`attn` exists only in attention blocks (ViT, Swin); `mlp` is the block MLP, Mixer's channel MLP.

Nothing is added: the deployed model is the trained model.
"""
from dataclasses import dataclass

import torch.nn as nn

from bench.config import POSITIVE, one_of
from methods import Unsupported
from methods._common import freeze, train_head

PARTS = ("block", "attn", "mlp")
FINAL_NORMS = ("norm", "fc_norm", "head.norm")


@dataclass
class Config:
    k: int = 1  # the last k blocks train
    part: str = "block"  # block: every parameter of the block | attn: its attention | mlp: its MLP (PETL_Vision)
    final_norm: bool = True  # the final norm trains too (VPT's partial-k); PETL_Vision's indices: false


RULES = {"method.k": POSITIVE, "method.part": one_of(*PARTS)}


def blocks_in_order(model: nn.Module) -> list[tuple[nn.Module | None, nn.Module]]:
    """(the downsampling layer right before the block or None, block) from the input to the head.

    ViT and Mixer: `model.blocks`; Swin (`layers`) and ConvNeXt (`stages`): each stage's
    `downsample` (Identity on a first stage) and then its `blocks`.
    """
    if isinstance(getattr(model, "blocks", None), nn.Sequential):
        return [(None, b) for b in model.blocks]
    stages = getattr(model, "layers", None) if isinstance(getattr(model, "layers", None), nn.Sequential) \
        else getattr(model, "stages", None)
    if not isinstance(stages, nn.Sequential) or not all(hasattr(s, "blocks") for s in stages):
        raise Unsupported(f"partial: backbone {type(model).__name__} has neither `blocks` nor stages with `blocks`")
    out = []
    for stage in stages:
        for i, b in enumerate(stage.blocks):
            out.append((getattr(stage, "downsample", None) if i == 0 else None, b))
    return out


def _part(block: nn.Module, part: str) -> nn.Module:
    if part == "block":
        return block
    name = "attn" if part == "attn" else next((n for n in ("mlp", "mlp_channels") if hasattr(block, n)), None)
    module = getattr(block, name, None) if name else None
    if not isinstance(module, nn.Module):
        raise Unsupported(f"partial: part={part} needs blocks with {'attention' if part == 'attn' else 'an MLP'}; "
                          f"{type(block).__name__} has none")
    return module


def apply(model: nn.Module, cfg: Config) -> nn.Module:
    ordered = blocks_in_order(model)
    if cfg.k > len(ordered):
        raise ValueError(f"method.k={cfg.k}: backbone {type(model).__name__} has {len(ordered)} blocks")
    freeze(model)
    chosen = ordered[len(ordered) - cfg.k:]
    for i, (downsample, block) in enumerate(chosen):
        _part(block, cfg.part).requires_grad_(True)
        if i > 0 and downsample is not None and cfg.part == "block":  # between two trained blocks
            downsample.requires_grad_(True)
    if cfg.final_norm:
        modules = dict(model.named_modules())
        for name in FINAL_NORMS:
            if name in modules:
                modules[name].requires_grad_(True)
    train_head(model)
    return model
