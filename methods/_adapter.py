"""Where a bottleneck adapter sits in a transformer block: the design space of Adapter+
(Steitz & Roth, CVPR 2024, visinf/adapter_plus: adapter_plus/vit_adapter.py `AdapterBlock.forward_*`),
shared by the `adapter`, `adapter_houlsby` and `adapter_plus` configs (methods/_bottleneck.py is the branch).

With `a` the branch, `A = attn(norm1(.))`, `M = mlp(norm2(.))`, DP1 / DP2 the block's stochastic depth:
- post:         y = x + DP1(A(x)); z = y + DP2(M(y)); out = z + a(z)  (Adapter+; after the whole block)
- pfeiffer:     Adapter+'s `forward_pfeiffer`, `(y + DP2(M(y))) + a(y + DP2(M(y)))` rearranged: the same
                function as post (Pfeiffer's config differs by the LayerNorm inside its branch)
- pre:          y = x + DP1(A(x)); y' = y + a(y); out = y' + DP2(M(y'))  (between attention and MLP)
- parallel:     y = x + DP1(A(x)); out = y + DP2(M(y)) + a(y)  (beside the MLP, reading its block input)
- intermediate: on the MLP's output h = M(y) before the residual add (`adapter`'s place)
- houlsby:      on the attention's and the MLP's outputs (two branches per block)

For the last two the block's drop path is placed as each official code places it (`DROP_PATHS`):
shared: timm's one draw around sublayer + adapter, `y + DP(h + a(h))`; sublayer: on the sublayer alone,
the adapter reading the dropped output, `y + DP(h) + a(DP(h))` (Adapter+ and NOAH); nested:
PETL_Vision's two draws, `y + DP'(DP(h) + a(DP(h)))`. The branch's own stochastic depth (Adapter+'s
`drop_path` on the adapter, methods/_bottleneck.py `drop_branch`) is separate from all of these.

Hooks, not a new block class: the backbone's modules and state-dict keys stay timm's, the adapters join
as `<block or sublayer>.<attr>`. pre and parallel need timm ViT / Swin blocks (`norm2` called once, then
`drop_path2` on the MLP branch): a forward pre-hook on `norm2` computes a(y) once, a forward hook on
`drop_path2` adds it to the residual sum. On blocks with LayerScale (DINOv2) a sublayer's adapter reads
its output before the scale (`adapter`, `adapter_houlsby`: PETL_Vision's and NOAH's sites) or after it
(`layer_scale=True`: Adapter+'s `DP(ls(sublayer))`).
"""
from typing import Callable

import torch.nn as nn

from methods import Unsupported
from methods._bottleneck import Bottleneck
from methods._common import attach, blocks, find_modules, take_drop_path

POSITIONS = ("post", "pre", "intermediate", "parallel", "houlsby", "pfeiffer")
DROP_PATHS = ("shared", "sublayer", "nested")  # the block's drop path around intermediate / houlsby adapters
MLP_NAMES = ("mlp", "mlp_channels")  # the block MLP in ViT / Swin / ConvNeXt, Mixer's channel MLP


class _After:
    """Forward hook on a sublayer or a block: its output plus the branch, placed as `mode` says. The branch
    is `<owner>.<attr>`, the owner the hooked module itself unless given (a sublayer hooked after its
    LayerScale keeps its branch)."""

    def __init__(self, attr: str, mode: str = "shared", owner: nn.Module | None = None):
        self.attr, self.mode, self.owner = attr, mode, owner

    def __call__(self, module, inputs, output):
        adapter = getattr(self.owner if self.owner is not None else module, self.attr)
        if self.mode == "shared":
            return output + adapter(output)
        h = adapter.drop_path(output)  # the block's drop path, taken out of its sum (one draw)
        if self.mode == "sublayer":
            return h + adapter(h)
        return adapter.drop_path(h + adapter(h))  # nested: a second draw around both


class _Beside:
    """pre / parallel: a forward pre-hook on `norm2` (which reads y, the MLP branch's block input) computes
    a(y) once, and for `pre` feeds norm2 with y + a(y); a forward hook on `drop_path2` then adds a(y) to
    the residual sum, `y + DP2(M(.)) + a(y)`."""

    def __init__(self, block: nn.Module, attr: str, pre: bool):
        self.block, self.attr, self.pre = block, attr, pre
        self.pending = None

    def on_norm(self, norm, inputs):
        self.pending = getattr(self.block, self.attr)(inputs[0])
        return (inputs[0] + self.pending,) if self.pre else None  # pre: the MLP reads the adapted stream

    def on_drop_path(self, module, inputs, output):
        branch, self.pending = self.pending, None
        return output + branch


def place(model: nn.Module, method: str, attr: str, position: str, branch: Callable[[int], Bottleneck],
          drop_path: str = "shared", layer_scale: bool = False) -> None:
    """Attach `branch(dim)` adapters at `position` in every transformer block of `model` (frozen already).

    `drop_path` (intermediate, houlsby): where the block's drop path acts, `DROP_PATHS`. With `shared`,
    intermediate also reaches MLP blocks without attention (ConvNeXt, Mixer's channel MLP).
    `layer_scale` (intermediate, houlsby): the adapter reads the sublayer's output after the block's
    LayerScale (`ls1` / `ls2`) rather than before it.

    Raises:
        Unsupported: no transformer blocks (or, intermediate shared, no block MLPs) in the backbone.
    """
    if position not in POSITIONS:
        raise ValueError(f"{method}: position {position!r}; valid: {', '.join(POSITIONS)}")
    if position == "intermediate" and drop_path == "shared":
        mlps = find_modules(model, lambda n, m: n.rsplit(".", 1)[-1] in MLP_NAMES and hasattr(m, "fc2"),
                            f"block MLPs (modules named {'/'.join(MLP_NAMES)} with an fc2)", method)
        for _, mlp in mlps:
            attach(mlp, attr, branch(mlp.fc2.out_features), _After(attr))
        return
    for block in blocks(model, method):
        dim = block.norm1.normalized_shape[-1]
        if position in ("post", "pfeiffer"):
            attach(block, attr, branch(dim), _After(attr))
        elif position in ("pre", "parallel"):
            if not isinstance(getattr(block, "drop_path2", None), nn.Module):
                raise Unsupported(f"{method}: position {position} needs blocks with drop_path2 (timm ViT, Swin); "
                                  f"{type(block).__name__} has none")
            setattr(block, attr, branch(dim))
            hooks = _Beside(block, attr, pre=position == "pre")
            block.norm2.register_forward_pre_hook(hooks.on_norm)
            block.drop_path2.register_forward_hook(hooks.on_drop_path)
        else:
            subs = ((1, block.attn), (2, block.mlp)) if position == "houlsby" else ((2, block.mlp),)
            if position == "houlsby" and drop_path != "shared" and hasattr(block, "_attn"):
                raise Unsupported(f"{method}: Swin's attention runs on windows, so a per-image drop path "
                                  f"(drop_path={drop_path}) cannot act on its output; position houlsby needs ViT "
                                  "blocks")
            for index, sub in subs:
                adapter = branch(dim)
                if drop_path != "shared":
                    adapter.drop_path = take_drop_path(block, index, method)
                site = getattr(block, f"ls{index}", None) if layer_scale else None
                if isinstance(site, nn.Module):  # after the block's LayerScale (identity where it has none)
                    setattr(sub, attr, adapter)
                    site.register_forward_hook(_After(attr, drop_path, owner=sub))
                else:
                    attach(sub, attr, adapter, _After(attr, drop_path))
