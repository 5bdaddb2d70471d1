"""Backbones: `timm.create_model` plus local weight files. Nothing method-specific here."""
from pathlib import Path

import timm
import torch.nn as nn
from timm.models import register_model
from timm.models.mlp_mixer import _create_mixer

from bench import PROJECT_ROOT
from bench.config import BackboneConfig


@register_model
def mixer_tiny(pretrained: bool = False, **kwargs) -> nn.Module:
    """A two-block MLP-Mixer on 32x32 inputs for tests (timm's mixer entrypoints fix patch size and depth)."""
    args = dict(img_size=32, patch_size=8, num_blocks=2, embed_dim=48) | kwargs
    return _create_mixer("mixer_s16_224", pretrained=pretrained, **args)


def weights_path(cfg: BackboneConfig) -> Path | None:
    if not cfg.file:
        return None
    path = Path(cfg.file).expanduser()
    return path if path.is_absolute() else PROJECT_ROOT / path


def build_backbone(cfg: BackboneConfig, num_classes: int, drop_path: float = 0.0) -> nn.Module:
    """Create `cfg.arch` with a fresh `num_classes` head.

    Local weights go through timm's `pretrained_cfg_overlay=dict(file=...)`, which also drops
    a classifier whose class count differs, so offline clusters work without the hub.

    Raises:
        FileNotFoundError: when `cfg.file` is set but missing.
    """
    overlay = dict(cfg.pretrained_cfg)
    path = weights_path(cfg)
    if cfg.pretrained and path is not None:
        if not path.is_file():
            raise FileNotFoundError(f"backbone {cfg.name!r}: weights file {path} not found "
                                    f"(for the mini backbone, rebuild it with `python -m bench.pretrain`)")
        overlay["file"] = str(path)
    # Always explicit: some timm models default to a non-zero rate (Swin: 0.1), which would
    # make the recipe differ silently between families.
    kwargs = dict(cfg.kwargs, drop_path_rate=drop_path)
    return timm.create_model(cfg.arch, pretrained=cfg.pretrained, pretrained_cfg_overlay=overlay or None,
                             num_classes=num_classes, **kwargs)


def data_config(model: nn.Module) -> dict:
    """Input size, mean and std the backbone expects (timm's resolved data config)."""
    return timm.data.resolve_model_data_config(model)
