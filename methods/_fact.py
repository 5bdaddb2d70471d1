"""FacT: factor-tuning, the shared machinery of `fact_tt` and `fact_tk` (Jie and Deng, AAAI 2023,
arXiv:2212.03145; official code JieShibo/PETL-ViT `FacT`, as PETL_Vision runs it).

Every weight update of a ViT block's `qkv`, `proj`, `fc1` and `fc2` is factorised through two
matrices shared by all blocks, `U` (dim -> r, PyTorch's Linear init) and `V` (r -> dim, zero,
so the model starts equal to the backbone), with a small per-update core in between:
`delta(x) = s * V(dropout(core(U x)))`, dropout 0.1. `fc1`'s and `fc2`'s updates are applied to
the MLP width in `m` chunks of `dim` (m = mlp width / dim: 4 on ViT-B, where the official code
hard-codes 4), through one core of r x m r. The cores are (TT) a Linear per update and block,
or (TK) slices of one tensor product `C x P`, C (r, r, r), P (r, (4 + 2m) blocks), both
Xavier-uniform. Each update is a matrix `s V core U`, so `merge` adds it to the weight: exact,
and the deployed model is the untouched architecture.

`init=trunc_normal` is what PETL_Vision's runs start from: its model constructor redraws every
Linear after FacT's own init, so U, V and (TT) the cores start trunc-normal std 0.02 (V is not
zero: the model does not start equal to the backbone); TK's C and P are bare tensors and keep
their Xavier init.

Needs ViT blocks of one width (`blocks` with attn.qkv/proj and mlp.fc1/fc2, MLP width a
multiple of the width); Swin (widths change per stage) and the CNN/MLP families are reported
unsupported, as the official code supports only the ViT.
"""
import dataclasses

import torch
import torch.nn as nn

from bench.config import NON_NEGATIVE, POSITIVE, one_of
from methods import Unsupported
from methods._common import blocks, freeze, redraw_linears, remove_hooks, train_head

SITES = ("qkv", "proj", "fc1", "fc2")
INITS = ("zero_v", "trunc_normal")  # zero_v: U PyTorch's Linear init, V zero (official) | trunc_normal: every
# Linear of FacT std 0.02 (PETL_Vision's runs)


def layers(model: nn.Module, method: str) -> tuple[int, int, list[dict[str, nn.Linear]]]:
    """(width, mlp chunks m, per block {site: Linear}); Unsupported where FacT does not apply."""
    found = []
    for block in blocks(model, method):
        site = {"qkv": getattr(block.attn, "qkv", None), "proj": getattr(block.attn, "proj", None),
                "fc1": getattr(block.mlp, "fc1", None), "fc2": getattr(block.mlp, "fc2", None)}
        if not all(isinstance(v, nn.Linear) for v in site.values()):
            raise Unsupported(f"{method}: backbone {type(model).__name__}: a block's attn.qkv/proj or mlp.fc1/fc2 "
                              f"is not a Linear")
        found.append(site)
    dims = {s["proj"].in_features for s in found}
    hidden = {s["fc1"].out_features for s in found}
    if len(dims) != 1 or len(hidden) != 1:
        raise Unsupported(f"{method}: backbone {type(model).__name__} has blocks of widths {sorted(dims)}; "
                          f"FacT shares its factors across blocks of one width (ViT)")
    dim, width = dims.pop(), hidden.pop()
    if width % dim:
        raise Unsupported(f"{method}: MLP width {width} is not a multiple of the width {dim}")
    return dim, width // dim, found


class FacT(nn.Module):
    """The shared factors and the cores; `update(i, site)` is the dense weight update of block i's site."""

    def __init__(self, dim: int, rank: int, m: int, depth: int, scale: float, kind: str, dropout: float = 0.1):
        super().__init__()
        self.U = nn.Linear(dim, rank, bias=False)
        self.V = nn.Linear(rank, dim, bias=False)
        nn.init.zeros_(self.V.weight)
        self.drop, self.scale, self.kind, self.m, self.rank = nn.Dropout(dropout), scale, kind, m, rank
        self.depth = depth
        if kind == "tt":
            r = rank
            self.cores = nn.ModuleList(nn.ModuleDict({
                "qkv": nn.ModuleList(nn.Linear(r, r, bias=False) for _ in range(3)),
                "proj": nn.Linear(r, r, bias=False),
                "fc1": nn.Linear(r, m * r, bias=False),
                "fc2": nn.Linear(m * r, r, bias=False)}) for _ in range(depth))
        else:  # tk
            self.C = nn.Parameter(torch.empty(rank, rank, rank))
            self.P = nn.Parameter(torch.empty(rank, (4 + 2 * m) * depth))
            nn.init.xavier_uniform_(self.C)
            nn.init.xavier_uniform_(self.P)
        self.slabs = None  # TK: every block's C x P while a forward runs (`_Slabs`), else None

    def slab(self, i: int) -> torch.Tensor:
        """TK: block i's cores, C x P[:, its columns] (r, r, 4 + 2m): the product each site slices."""
        if self.slabs is not None:
            return self.slabs[i]
        cols = 4 + 2 * self.m
        return self.C @ self.P[:, i * cols:(i + 1) * cols]

    def core(self, i: int, site: str) -> list[torch.Tensor]:
        """The core matrices (out x in, as Linear weights) of block i's site: 3 for qkv, else 1."""
        r, m = self.rank, self.m
        if self.kind == "tt":
            c = self.cores[i][site]
            return [lin.weight for lin in c] if site == "qkv" else [c.weight]
        slab = self.slab(i)  # (r, r, 4 + 2m)
        if site == "qkv":  # the official `(U x) @ core`: a Linear weight is its transpose
            return [slab[:, :, j].t() for j in range(3)]
        if site == "proj":
            return [slab[:, :, 3].t()]
        if site == "fc1":
            return [slab[:, :, 4:4 + m].reshape(r, m * r).t()]  # (m r, r)
        return [slab[:, :, 4 + m:].reshape(r, m * r)]  # fc2: (r, m r)

    def delta(self, i: int, site: str, x: torch.Tensor) -> torch.Tensor:
        """The update's output for the site's input x (..., in_features)."""
        u, v, cores = self.U, self.V, self.core(i, site)
        if site == "qkv":  # U x once for the three cores, V once on the three stacked: q, k, v side by side;
            # the same outputs bit for bit as three U x and three V, U's and V's gradients summed in another order
            h = u(x)
            return self.scale * v(torch.stack([self.drop(h @ c.t()) for c in cores], -2)).flatten(-2)
        if site == "proj":
            return self.scale * v(self.drop(u(x) @ cores[0].t()))
        if site == "fc1":  # (..., dim) -> r -> m r -> m chunks of r -> m chunks of dim
            h = self.drop(u(x) @ cores[0].t())
            return self.scale * v(h.unflatten(-1, (self.m, self.rank))).flatten(-2)
        # fc2: (..., m dim) -> m chunks of dim -> m chunks of r -> m r -> r -> dim
        h = u(x.unflatten(-1, (self.m, -1))).flatten(-2)
        return self.scale * v(self.drop(h @ cores[0].t()))

    @torch.no_grad()
    def update(self, i: int, site: str) -> torch.Tensor:
        """The dense (out x in) weight update of block i's site, what `delta` adds in evaluation."""
        u, v, cores = self.U.weight, self.V.weight, self.core(i, site)  # u (r, dim), v (dim, r)
        if site == "qkv":
            return self.scale * torch.cat([v @ c @ u for c in cores], 0)
        if site == "proj":
            return self.scale * v @ cores[0] @ u
        c, m, r = cores[0], self.m, self.rank
        if site == "fc1":  # row chunk j: V c[j r:(j+1) r] U
            return self.scale * torch.cat([v @ c[j * r:(j + 1) * r] @ u for j in range(m)], 0)
        return self.scale * torch.cat([v @ c[:, j * r:(j + 1) * r] @ u for j in range(m)], 1)  # fc2: column chunks


class _Delta:
    """Forward hook on a Linear: add FacT's update of its input."""

    def __init__(self, fact: FacT, block: int, site: str):
        self.fact, self.block, self.site = fact, block, site

    def __call__(self, linear, inputs, output):
        return output + self.fact.delta(self.block, self.site, inputs[0])


class _Slabs:
    """TK: forward pre-hook on the first block and forward hook on the last: each block's C x P is
    computed once per forward, before the first block, rather than once per site (4 times), and
    dropped after the last block, so `update` (merge) never reads a product of older factors.
    The same products as per site, bit for bit; C's gradient sums one term per block instead of
    one per site, in another order (equal up to rounding)."""

    def __init__(self, fact: FacT, start: bool):
        self.fact, self.start = fact, start

    def __call__(self, block, inputs, output=None):
        fact = self.fact
        if self.start:
            fact.slabs = None  # a forward that raised leaves older products: never read them
            fact.slabs = [fact.slab(i) for i in range(fact.depth)]
        else:
            fact.slabs = None


RULES = {"method.rank": POSITIVE, "method.scale": NON_NEGATIVE, "method.init": one_of(*INITS)}  # both variants'


def config(rank: int, scale: float) -> type:
    """A variant's Config dataclass: `rank` and `scale` with that variant's defaults, and `init`."""
    return dataclasses.make_dataclass("Config", [("rank", int, dataclasses.field(default=rank)),
                                                 ("scale", float, dataclasses.field(default=scale)),
                                                 ("init", str, dataclasses.field(default="zero_v"))])


def applier(kind: str):
    """`apply(model, cfg)` of the variant `kind` (tt, tk): its Config has `rank`, `scale` and `init`."""
    def apply_variant(model: nn.Module, cfg) -> nn.Module:
        return apply(model, cfg.rank, cfg.scale, kind, f"fact_{kind}", cfg.init)
    return apply_variant


def apply(model: nn.Module, rank: int, scale: float, kind: str, method: str, init: str = "zero_v") -> nn.Module:
    dim, m, found = layers(model, method)
    freeze(model)
    model.fact = FacT(dim, rank, m, len(found), scale, kind)
    if init == "trunc_normal":
        redraw_linears(model.fact)
    for i, site in enumerate(found):
        for name, linear in site.items():
            linear.register_forward_hook(_Delta(model.fact, i, name))
    if kind == "tk":
        found_blocks = blocks(model, method)
        found_blocks[0].register_forward_pre_hook(_Slabs(model.fact, start=True))
        found_blocks[-1].register_forward_hook(_Slabs(model.fact, start=False))
    train_head(model)
    return model


@torch.no_grad()
def merge(model: nn.Module) -> nn.Module:
    """Add every update to its weight and remove FacT; raises RuntimeError when there is none."""
    fact = getattr(model, "fact", None)
    if not isinstance(fact, FacT):
        raise RuntimeError("fact.merge: no FacT factors in this model (never applied, or already merged)")
    for i, site in enumerate(layers(model, "fact")[2]):
        for name, linear in site.items():
            linear.weight.add_(fact.update(i, name))
            remove_hooks(linear, _Delta)
    for block in blocks(model, "fact"):
        remove_hooks(block, _Slabs)
    del model.fact
    return model


__all__ = ["FacT", "RULES", "SITES", "applier", "apply", "config", "layers", "merge"]
