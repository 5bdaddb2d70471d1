"""AdaptFormer: a bottleneck branch in parallel with each block's MLP (Chen et al., NeurIPS 2022,
arXiv:2205.13535; official code ShoufaChen/AdaptFormer, as PETL_Vision runs it: `adaptformer`).

The branch reads the MLP branch's input before `norm2` (the official `adaptmlp(x)` on the
residual stream; PETL_Vision's `ft_mlp_ln: before`) and its output is added to the MLP's:
`x + mlp(norm2(x)) + s * up(dropout(relu(down(x))))`. ReLU, dropout 0.1 inside the branch,
`down` Kaiming-uniform and `up` zero (the official `lora` init), so the model starts equal to
the backbone. Defaults are the official ones: bottleneck 64, scale 0.1 (PETL_Vision's grid:
bottleneck {4, 16, 32} x scale {0.05, 0.1, 0.2}). Where the block has LayerScale (DINOv2) the
branch is added before it, as PETL_Vision's block adds it inside `ls2`.

As PETL_Vision's runs effectively trained it (`recipe=petl_vision`): its model constructor
redraws every Linear after the adapter's own init, so both projections start trunc-normal std
0.02 with zero biases (`init=trunc_normal`: the model does not start equal to the backbone),
and its block draws drop path separately for the MLP and for the branch,
`x + DP(mlp(norm2(x))) + DP'(branch(x))` (`drop_path=separate`), where the default `shared`
drops both with one draw (timm's drop path around the hooked MLP). The same in evaluation.

Needs blocks with `norm2` and `mlp` next to an `attn` (ViT family, Swin); nothing to merge.
"""
from dataclasses import dataclass

import torch.nn as nn

from bench.config import NON_NEGATIVE, POSITIVE, UNIT, one_of
from methods._bottleneck import Bottleneck
from methods._common import attach, blocks, freeze, take_drop_path, train_head

INITS = ("zero_up", "trunc_normal")
DROP_PATHS = ("shared", "separate")


@dataclass
class Config:
    bottleneck: int = 64
    scale: float = 0.1
    dropout: float = 0.1
    init: str = "zero_up"  # zero_up: down Kaiming-uniform, up zero (official) | trunc_normal: both std 0.02, biases 0
    drop_path: str = "shared"  # shared: one draw for MLP + branch | separate: a draw each (PETL_Vision)


RULES = {"method.bottleneck": POSITIVE, "method.scale": NON_NEGATIVE, "method.dropout": UNIT,
         "method.init": one_of(*INITS), "method.drop_path": one_of(*DROP_PATHS)}


class _KeepInput:
    """Forward hook on `norm2`: hand its input (the MLP branch's pre-norm input) to the branch."""

    def __init__(self, branch: Bottleneck):
        self.branch = branch

    def __call__(self, norm, inputs, output):
        self.branch.pending = inputs[0]


class _AddBranch:
    """Forward hook on `mlp`: add the branch of the input `norm2` just saw."""

    def __call__(self, mlp, inputs, output):
        branch = mlp.adaptformer
        x, branch.pending = branch.pending, None
        if "drop_path" in branch._modules:  # drop_path=separate: the block's drop path, one draw per term
            return branch.drop_path(output) + branch.drop_path(branch(x))
        return output + branch(x)


def apply(model: nn.Module, cfg: Config) -> nn.Module:
    freeze(model)
    for block in blocks(model, "adaptformer"):
        dim = block.norm2.normalized_shape[-1]
        branch = Bottleneck(dim, cfg.bottleneck, cfg.scale, cfg.init, "relu", cfg.dropout)
        if cfg.drop_path == "separate":
            branch.drop_path = take_drop_path(block, 2, "adaptformer")
        block.norm2.register_forward_hook(_KeepInput(branch))
        attach(block.mlp, "adaptformer", branch, _AddBranch())
    train_head(model)
    return model
