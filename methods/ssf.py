"""SSF: Scale and Shift deep Features (Lian et al., NeurIPS 2022, arXiv:2210.08823).

A learnable per-channel scale and shift, `y = x * scale + shift`, after every Linear,
LayerNorm and Conv2d of the backbone, head excluded. On timm models these are the official
code's sites: ViT (patch embedding, norm1, qkv, proj, norm2, fc1, fc2, final norm), Swin
(the same per block, plus patch-embed norm and patch-merging norm; not after the merging
reduction, which the official code leaves alone), ConvNeXt (stem conv and norm, downsample
norm and conv, depthwise conv, block norm, fc1, fc2) plus one SSF on the last stage's
output, and MLP-Mixer (stem, norms, token- and channel-MLP linears).
Scale ~ N(1, init_std), shift ~ N(0, init_std), as in the official code.

Each site gets a child module `ssf` and a forward hook, so the backbone keeps its module
types and state-dict keys. `merge` folds every site that follows a Linear, Conv2d or
LayerNorm into that layer (exact); ConvNeXt's last-stage SSF follows a residual sum and
then LayerNorm (not linear in its input), and a site after a layer without a bias (CLIP's
patch embedding) has no bias to take its shift, so both stay explicit ops at inference.
"""
from dataclasses import dataclass

import torch
import torch.nn as nn
from timm.layers import LayerNorm2d

from bench.config import NON_NEGATIVE
from methods._common import attach, detach, find_modules, freeze, train_head

SITE_TYPES = (nn.Linear, nn.LayerNorm, nn.Conv2d)
NOT_SITES = ("reduction",)  # Swin's patch-merging projection: no SSF after it in the official code


@dataclass
class Config:
    init_std: float = 0.02


RULES = {"method.init_std": NON_NEGATIVE}


class SSF(nn.Module):
    """Per-channel affine on channel dim `dim` (-1 for channels-last tensors, 1 for NCHW maps)."""

    def __init__(self, channels: int, dim: int, init_std: float, foldable: bool = True):
        super().__init__()
        self.dim, self.foldable = dim, foldable
        self.scale = nn.Parameter(torch.empty(channels).normal_(1.0, init_std))
        self.shift = nn.Parameter(torch.empty(channels).normal_(0.0, init_std))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = [1] * x.ndim
        shape[self.dim] = -1
        # the official `x * scale + shift`, adding in place into the product (a fresh tensor autograd
        # does not keep): the same bits with one tensor less allocated and written per site
        return (x * self.scale.view(shape)).add_(self.shift.view(shape))


def _hook(module: nn.Module, inputs, output):
    return module.ssf(output)


def _channels_and_dim(m: nn.Module) -> tuple[int, int]:
    if isinstance(m, nn.Linear):
        return m.out_features, -1
    if isinstance(m, nn.Conv2d):
        return m.out_channels, 1
    return m.normalized_shape[-1], 1 if isinstance(m, LayerNorm2d) else -1


def sites(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return find_modules(model, lambda n, m: isinstance(m, SITE_TYPES) and n.rsplit(".", 1)[-1] not in NOT_SITES,
                        "Linear/LayerNorm/Conv2d layers", "ssf")


def apply(model: nn.Module, cfg: Config) -> nn.Module:
    freeze(model)
    for _, m in sites(model):
        # a layer without a bias (CLIP's patch embedding) has nowhere to take the shift: merging it
        # would add a bias the plain architecture does not have, so that site stays an explicit op
        attach(m, "ssf", SSF(*_channels_and_dim(m), cfg.init_std, foldable=getattr(m, "bias", None) is not None), _hook)
    if hasattr(model, "stages") and hasattr(model, "num_features") and isinstance(model.stages[-1], nn.Module):
        # ConvNeXt-style: the official code adds one SSF on the last stage's (NCHW) output
        attach(model.stages[-1], "ssf", SSF(model.num_features, 1, cfg.init_std, foldable=False), _hook)
    train_head(model)
    return model


@torch.no_grad()
def merge(model: nn.Module) -> nn.Module:
    """Fold every foldable SSF site into the layer it follows, in place.

    Linear/Conv: W' = diag(scale) W, b' = scale * b + shift. LayerNorm: w' = scale * w,
    b' = scale * b + shift. Unfoldable sites stay (their parameters count as inference overhead).

    Raises:
        RuntimeError: if the model has no foldable SSF site (never applied, or already merged).
    """
    folded = 0
    for _, m in list(model.named_modules()):
        ssf = getattr(m, "ssf", None)
        if not isinstance(ssf, SSF) or not ssf.foldable:
            continue
        scale, shift = ssf.scale, ssf.shift
        view = (-1,) + (1,) * (m.weight.ndim - 1)  # scale output rows / channels
        m.weight.mul_(scale.view(view))
        m.bias.mul_(scale).add_(shift)
        detach(m, "ssf", _hook)
        folded += 1
    if not folded:
        raise RuntimeError("ssf.merge: no foldable SSF site in this model (never applied, or already merged)")
    return model
