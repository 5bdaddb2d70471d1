"""DiffFit: biases, norms and a learnable scale per residual branch (Xie et al., ICCV 2023,
arXiv:2304.06648), as PETL_Vision runs it (`difffit`).

Trains every bias, every normalisation layer's parameters and, per block, one per-channel
scale on the attention branch and one on the MLP branch, initialised to 1 (so the model starts
equal to the backbone): `x + g1 * attn(norm1(x))`, then `x + g2 * mlp(norm2(x))`. A scale
multiplies the branch's output channel-wise, so it commutes with LayerScale and drop-path
and is applied as a hook on the sublayer's output; `merge` folds it exactly into the
sublayer's last Linear (`attn.proj`, `mlp.fc2`: W' = diag(g) W, b' = g b).

Needs blocks with `attn.proj` and `mlp.fc2` Linear (ViT family, Swin).
"""
from dataclasses import dataclass

import torch
import torch.nn as nn

from methods import Unsupported
from methods._common import attach, blocks, detach, freeze, train_head

NORMS = (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm2d)


@dataclass
class Config:
    pass


class Gamma(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))


class _Scale:
    """Forward hook on a sublayer: its output times the branch's scale (channels last)."""

    def __call__(self, module, inputs, output):
        return output * module.difffit.gamma


def _sites(model: nn.Module) -> list[tuple[nn.Module, nn.Linear]]:
    """(sublayer, its last Linear) for the attention and MLP branch of every block."""
    out = []
    for block in blocks(model, "difffit"):
        for sub, last in ((block.attn, getattr(block.attn, "proj", None)), (block.mlp, getattr(block.mlp, "fc2", None))):
            if not isinstance(last, nn.Linear):
                raise Unsupported(f"difffit: backbone {type(model).__name__}: a block's branch does not end in a Linear")
            out.append((sub, last))
    return out


def apply(model: nn.Module, cfg: Config) -> nn.Module:
    sites = _sites(model)
    freeze(model)
    for name, p in model.named_parameters():
        if name.rsplit(".", 1)[-1] == "bias":
            p.requires_grad_(True)
    for m in model.modules():
        if isinstance(m, NORMS):
            for p in m.parameters():
                p.requires_grad_(True)
    for sub, last in sites:
        attach(sub, "difffit", Gamma(last.out_features), _Scale())
    train_head(model)
    return model


@torch.no_grad()
def merge(model: nn.Module) -> nn.Module:
    """Fold every branch scale into the branch's last Linear, in place; RuntimeError when there is none."""
    folded = 0
    for sub, last in _sites(model):
        g = getattr(sub, "difffit", None)
        if not isinstance(g, Gamma):
            continue
        last.weight.mul_(g.gamma[:, None])
        if last.bias is not None:
            last.bias.mul_(g.gamma)
        detach(sub, "difffit", _Scale)
        folded += 1
    if not folded:
        raise RuntimeError("difffit.merge: no branch scale in this model (never applied, or already merged)")
    return model
