"""LayerNorm tuning (`ln`): only the normalisation layers' affine parameters and the head train.

PETL_Vision's `ln` (OSU-MLB/PETL_Vision:experiment/build_model.py, `--ln`: every parameter whose name
contains `norm`), V-PETL Bench's `lntune` and peft's `LNTuningConfig`. On timm's ViT-B/16 that is
norm1 and norm2 of the 12 blocks plus the final norm: 25 x 2 x 768 = 38,400 parameters, PETL_Vision's
0.038M. Every family: timm's LayerNorm (ViT, Swin with its patch-embed and patch-merging norms,
Mixer), ConvNeXt's LayerNorm2d (stem, downsampling and block norms) and the pre-logits norm timm
keeps inside ConvNeXt's head; GroupNorm, BatchNorm and RMSNorm where a backbone has them.

Nothing is added, so there is nothing to merge: the deployed model is the trained model.
`unfreeze_norms` is also the `train.tune_norms` add-on (adapter_plus's `train_ln`): after any
method applies, the norms' affine parameters train too (bench/run/runner.py).
"""
from dataclasses import dataclass

import torch.nn as nn
from timm.layers import RmsNorm, RmsNorm2d

from methods import Unsupported
from methods._common import freeze, train_head

# LayerNorm2d and timm's LayerNorm subclass nn.LayerNorm; GroupNorm1 nn.GroupNorm; BatchNormAct2d BatchNorm2d
NORM_TYPES = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm, nn.RMSNorm, RmsNorm, RmsNorm2d)


@dataclass
class Config:
    pass


def norm_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The affine parameters of every normalisation layer of `model`, the head's pre-logits norm included."""
    return [p for m in model.modules() if isinstance(m, NORM_TYPES) for p in m.parameters(recurse=False)]


def unfreeze_norms(model: nn.Module) -> int:
    """Make every norm's affine parameters trainable; returns how many parameters that is."""
    params = norm_parameters(model)
    for p in params:
        p.requires_grad_(True)
    return sum(p.numel() for p in params)


def apply(model: nn.Module, cfg: Config) -> nn.Module:
    freeze(model)
    if not unfreeze_norms(model):
        raise Unsupported(f"ln: backbone {type(model).__name__} has no normalisation layer with affine parameters")
    train_head(model)
    return model
