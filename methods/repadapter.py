"""RepAdapter: a linear adapter before each block's attention and MLP, re-parameterised into
the following layer at deployment (Luo et al. 2023, arXiv:2302.08106; official code
luogen1996/RepAdapter `repblock`, as PETL_Vision runs it).

After `norm1` and after `norm2`: `y = n + s * B(dropout(A n))`, with A a 1 x 1 convolution to
`bottleneck` channels and B a grouped one back (`groups` 2), Xavier-uniform A, zero B and
biases, so the model starts equal to the backbone. Defaults are the official ones:
bottleneck 8, groups 2, scale 1 (PETL_Vision's grid: bottleneck {8, 16, 32} x scale
{0.1, 0.5, 1, 5, 10}); dropout 0.1.

With no non-linearity the adapter is the affine map `M n + c`, `M = I + s B A`,
`c = s (B a + b)`, so `merge` folds it exactly into the next layer, as the official
`set_RepWeight` does: `attn.qkv` gets `W M` and `b + W c`, `mlp.fc1` likewise, and the
deployed model is the untouched architecture. Swin pads its maps to whole windows after
`norm1`; where a stage's resolution is not a multiple of the window, the padded tokens see the
adapter's bias before merging and not after (never at 224 px with window 7).

Needs blocks whose `attn.qkv` and `mlp.fc1` are Linear (ViT family, Swin).
"""
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from bench.config import NON_NEGATIVE, POSITIVE, UNIT
from methods._bottleneck import init_pair
from methods._common import attach, blocks, detach, freeze, train_head


@dataclass
class Config:
    bottleneck: int = 8
    groups: int = 2
    scale: float = 1.0
    dropout: float = 0.1


RULES = {"method.bottleneck": POSITIVE, "method.groups": POSITIVE, "method.scale": NON_NEGATIVE,
         "method.dropout": UNIT}


class RepAdapter(nn.Module):
    def __init__(self, dim: int, bottleneck: int, groups: int, scale: float, dropout: float):
        super().__init__()
        self.conv_A = nn.Conv1d(dim, bottleneck, 1)
        self.conv_B = nn.Conv1d(bottleneck, dim, 1, groups=groups)
        init_pair(self.conv_A, self.conv_B, "lora_xavier")
        self.drop, self.scale, self.groups = nn.Dropout(dropout), scale, groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (..., dim), channels last
        # The two 1 x 1 convolutions as Linears on the tokens: a convolution over tokens taken as
        # length-1 sequences is many times slower on the CPU, mostly its backward. The same sums
        # in another order (B's zero blocks add exact zeros): outputs differ in the last bits.
        a = F.linear(x, self.conv_A.weight[..., 0], self.conv_A.bias)
        return x + self.scale * F.linear(self.drop(a), self.dense_B(), self.conv_B.bias)

    def dense_B(self) -> torch.Tensor:
        """B's weight as one (dim x k) matrix, zero off its groups' blocks: output channel o reads
        bottleneck group o // (dim / groups) only."""
        return torch.block_diag(*self.conv_B.weight[..., 0].unflatten(0, (self.groups, -1)))

    def affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(M, c) with adapter(n) = n @ M.T + c: M = I + s B A (dim x dim), c = s (B a + b)."""
        a, b = self.conv_A.weight[..., 0], self.dense_B()  # (k, dim), (dim, k)
        m = torch.eye(b.shape[0], dtype=b.dtype, device=b.device) + self.scale * b @ a
        c = self.scale * (b @ self.conv_A.bias + self.conv_B.bias)
        return m, c


class _Adapt:
    """Forward hook on a norm: its output through the adapter."""

    def __call__(self, norm, inputs, output):
        return norm.repadapter(output)


def _pairs(model: nn.Module) -> list[tuple[nn.Module, nn.Linear]]:
    """(norm, the Linear it feeds) for every adapter site."""
    out = []
    for block in blocks(model, "repadapter"):
        for norm, linear in ((block.norm1, getattr(block.attn, "qkv", None)), (block.norm2, getattr(block.mlp, "fc1", None))):
            if isinstance(linear, nn.Linear):
                out.append((norm, linear))
    return out


def apply(model: nn.Module, cfg: Config) -> nn.Module:
    freeze(model)
    pairs = _pairs(model)
    for norm, _ in pairs:
        dim = norm.normalized_shape[-1]
        if dim % cfg.groups or cfg.bottleneck % cfg.groups:
            raise ValueError(f"repadapter: method.groups={cfg.groups} must divide method.bottleneck="
                             f"{cfg.bottleneck} and the width {dim}")
        attach(norm, "repadapter", RepAdapter(dim, cfg.bottleneck, cfg.groups, cfg.scale, cfg.dropout), _Adapt())
    train_head(model)
    return model


@torch.no_grad()
def merge(model: nn.Module) -> nn.Module:
    """Fold every adapter into the Linear after its norm (W' = W M, b' = b + W c), in place.

    Raises:
        RuntimeError: no adapter in the model (never applied, or already merged).
    """
    folded = 0
    for norm, linear in _pairs(model):
        adapter = getattr(norm, "repadapter", None)
        if not isinstance(adapter, RepAdapter):
            continue
        m, c = adapter.affine()
        shift = linear.weight @ c
        linear.weight.copy_(linear.weight @ m)
        if linear.bias is None:
            linear.bias = nn.Parameter(shift, requires_grad=linear.weight.requires_grad)
        else:
            linear.bias.add_(shift)
        detach(norm, "repadapter", _Adapt)
        folded += 1
    if not folded:
        raise RuntimeError("repadapter.merge: no adapter in this model (never applied, or already merged)")
    return model
