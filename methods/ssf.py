"""SSF: Scale and Shift deep Features (Lian et al., NeurIPS 2022, arXiv:2210.08823).

A learnable per-channel scale and shift, `y = x * scale + shift`, after every Linear,
LayerNorm and Conv2d of the backbone (head excluded). On a timm ViT these are exactly the
official code's sites: patch embedding, norm1, qkv, attention proj, norm2, fc1, fc2 and the
final norm. Scale ~ N(1, init_std), shift ~ N(0, init_std), as in the official code.

Each site gets a child module `ssf` and a forward hook, so the backbone keeps its module
types and state-dict keys; `merge` folds every site into the layer it follows.
"""
from dataclasses import dataclass

import torch
import torch.nn as nn

from methods._common import find_modules, freeze, train_head

SITE_TYPES = (nn.Linear, nn.LayerNorm, nn.Conv2d)


@dataclass
class Config:
    init_std: float = 0.02


class SSF(nn.Module):
    """Per-channel affine on channel dim `dim` (-1 for token tensors, 1 for NCHW feature maps)."""

    def __init__(self, channels: int, dim: int, init_std: float):
        super().__init__()
        self.dim = dim
        self.scale = nn.Parameter(torch.empty(channels).normal_(1.0, init_std))
        self.shift = nn.Parameter(torch.empty(channels).normal_(0.0, init_std))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = [1] * x.ndim
        shape[self.dim] = -1
        return x * self.scale.view(shape) + self.shift.view(shape)


def _hook(module: nn.Module, inputs, output):
    return module.ssf(output)


def _channels(m: nn.Module) -> int:
    if isinstance(m, nn.Linear):
        return m.out_features
    if isinstance(m, nn.Conv2d):
        return m.out_channels
    return m.normalized_shape[-1]


def sites(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return find_modules(model, lambda n, m: isinstance(m, SITE_TYPES), "Linear/LayerNorm/Conv2d layers", "ssf")


def apply(model: nn.Module, cfg: Config) -> nn.Module:
    freeze(model)
    for _, m in sites(model):
        m.ssf = SSF(_channels(m), 1 if isinstance(m, nn.Conv2d) else -1, cfg.init_std)
        m._ssf_handle = m.register_forward_hook(_hook)
    train_head(model)
    return model


@torch.no_grad()
def merge(model: nn.Module) -> nn.Module:
    """Fold every SSF site into the layer it follows, in place: W' = diag(scale) W, b' = scale * b + shift.

    Raises:
        RuntimeError: if the model has no SSF site left (never applied, or already merged).
    """
    folded = 0
    for _, m in list(model.named_modules()):
        ssf = getattr(m, "ssf", None)
        if not isinstance(ssf, SSF):
            continue
        scale, shift = ssf.scale, ssf.shift
        view = (-1,) + (1,) * (m.weight.ndim - 1)  # scale output rows / channels
        m.weight.mul_(scale.view(view))
        if m.bias is None:
            m.bias = nn.Parameter(shift.clone(), requires_grad=m.weight.requires_grad)
        else:
            m.bias.mul_(scale).add_(shift)
        m._ssf_handle.remove()
        del m.ssf, m._ssf_handle
        folded += 1
    if not folded:
        raise RuntimeError("ssf.merge: no SSF site in this model (never applied, or already merged)")
    return model
