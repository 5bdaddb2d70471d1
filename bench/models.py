"""Backbones: `timm.create_model` plus local weight files. Nothing method-specific here."""
import math
from pathlib import Path

import timm
import torch.nn as nn
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, IMAGENET_INCEPTION_MEAN, IMAGENET_INCEPTION_STD
from timm.models import register_model
from timm.models.mlp_mixer import _create_mixer

from bench import PROJECT_ROOT
from bench.config import HEAD_INITS, NORMS, BackboneConfig


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


HUB_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")  # what timm fetches


def check_weights(cfg: BackboneConfig) -> None:
    """Refuse, before anything runs, a pretrained backbone without `backbone.file` whose weights are
    neither in the hub cache nor downloadable now (offline, no network).

    Downloading here, where the run would download them anyway, turns a network failure deep inside
    timm into one line saying how to provide the weights.

    Raises:
        ConfigError: naming the backbone and `backbone.file`.
    """
    from bench.config import ConfigError

    if not cfg.pretrained:
        return
    if weights_path(cfg) is not None:
        return  # a local file; a missing one fails the run in build_backbone, which records it
    how = (f"download them where there is network (they are cached under the Hugging Face cache, HF_HOME) or set "
           f"backbone.file=<a local .safetensors or .pth of {cfg.arch}>")
    pcfg = timm.models.get_pretrained_cfg(cfg.arch)
    if pcfg is None:
        raise ConfigError(f"backbone {cfg.name}: timm knows no pretrained weights for {cfg.arch}; set backbone.file=<weights> "
                          f"or backbone.pretrained=false")
    source, loc = timm.models._builder._resolve_pretrained_source(pcfg.to_dict() | dict(cfg.pretrained_cfg))
    if source != "hf-hub":
        if source == "url" and not timm.models._hub.check_cached_file(loc) and _offline():
            raise ConfigError(f"backbone {cfg.name}: its pretrained weights ({loc}) are not cached and the hub is "
                              f"offline; {how}")
        return  # a state dict in the config, or a URL timm fetches itself
    import huggingface_hub

    repo, files = (loc[0], (loc[1],)) if isinstance(loc, tuple) else (loc, HUB_WEIGHT_FILES)
    if any(isinstance(huggingface_hub.try_to_load_from_cache(repo, f), str) for f in files):
        return
    if _offline():
        raise ConfigError(f"backbone {cfg.name}: its pretrained weights (hub {repo}) are not in the cache and the hub "
                          f"is offline (HF_HUB_OFFLINE); {how}")
    try:
        import socket
        from urllib.parse import urlparse

        endpoint = urlparse(huggingface_hub.constants.ENDPOINT)  # a dead network answers here, not after a minute
        socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=10).close()  # of hub retries
        listed = set(huggingface_hub.list_repo_files(repo))
        name = next((f for f in files if f in listed), None)
        if name is None:
            raise FileNotFoundError(f"none of {', '.join(files)} in the repository")
        huggingface_hub.hf_hub_download(repo, name)
    except Exception as e:
        reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        raise ConfigError(f"backbone {cfg.name}: its pretrained weights could not be downloaded from the hub ({repo}; "
                          f"{reason}); {how}") from e


def _offline() -> bool:
    import huggingface_hub

    return bool(huggingface_hub.constants.HF_HUB_OFFLINE)


def check_image_size(backbone: BackboneConfig, image_size: int) -> None:
    """Refuse, before anything runs, an image size a fixed-size backbone (ViT, Swin, Mixer) cannot take.

    Raises:
        ConfigError: naming both sizes (timm would otherwise assert deep inside the first forward).
    """
    from bench.config import ConfigError

    timm_cfg = timm.models.get_pretrained_cfg(backbone.arch)
    size = backbone.kwargs.get("img_size") or (backbone.pretrained_cfg.get("input_size") or [None])[-1] \
        or (timm_cfg.input_size[-1] if timm_cfg is not None else None)
    fixed = timm_cfg.fixed_input_size if timm_cfg is not None else True
    if fixed and size and int(size) != image_size:
        raise ConfigError(f"dataset.image_size={image_size}: backbone {backbone.name} takes {size} x {size} images "
                          f"only; use a backbone made for {image_size} px (backbone=...) or dataset.image_size={size}")


def data_config(model: nn.Module) -> dict:
    """Input size, mean and std the backbone expects (timm's resolved data config)."""
    return timm.data.resolve_model_data_config(model)


NORM_STATS = {"imagenet": (IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD),
              "inception": (IMAGENET_INCEPTION_MEAN, IMAGENET_INCEPTION_STD),
              "none": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))}  # pixels in [0, 1] (PETL_Vision: normalized=False)


def normalization(norm: str, dcfg: dict) -> tuple[tuple, tuple]:
    """(mean, std) for `dataset.norm`: the backbone's own (its timm data config), or a recipe's fixed pair.

    NOAH normalises with ImageNet's mean/std (VPT runs: 0.5, `--inception`) whatever the checkpoint's
    own statistics are, and PETL_Vision not at all; a recipe says which (docs/recipes.md).
    """
    if norm == "backbone":
        return tuple(dcfg["mean"]), tuple(dcfg["std"])
    if norm not in NORM_STATS:
        raise ValueError(f"dataset.norm={norm!r}; valid: {', '.join(NORMS)}")
    return NORM_STATS[norm]


def init_head(model: nn.Module, kind: str) -> None:
    """Re-initialise the classifier as a recipe's code does; `timm` keeps the backbone's own init.

    vpt: KMnP/vpt:src/models/mlp.py initialises its Linear head with Kaiming-normal weights
    (fan_out, std sqrt(2 / num_classes)) and the bias at -log((1 - 0.01) / 0.01).
    pytorch: PETL_Vision (experiment/build_model.py) calls timm's `reset_classifier` after loading
    the checkpoint, which builds a fresh nn.Linear: PyTorch's default init, Kaiming-uniform
    (a = sqrt(5)) weights and a bias uniform in +-1/sqrt(fan_in), not timm's std 0.02 and zero bias.
    """
    if kind == "timm":
        return
    if kind not in HEAD_INITS:
        raise ValueError(f"train.head_init={kind!r}; valid: {', '.join(HEAD_INITS)}")
    head = model.get_classifier()
    if not isinstance(head, nn.Linear):
        raise ValueError(f"train.head_init={kind} needs a Linear classifier; {type(model).__name__} has "
                         f"{type(head).__name__}")
    if kind == "pytorch":
        head.reset_parameters()
        return
    nn.init.kaiming_normal_(head.weight, a=0, mode="fan_out")
    nn.init.constant_(head.bias, -math.log((1 - 0.01) / 0.01))
