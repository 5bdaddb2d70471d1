"""The bottleneck MLP shared by the adapter family: `scale * up(dropout(act(down(x))))`, no residual.

Initialisations, named as in PETL_Vision's `model/utils.py:init_weight` where they come from:
- `zero_up`: PyTorch's Linear init for `down` (Kaiming-uniform, a = sqrt(5)), zero `down` bias,
  zero `up`: the branch starts at zero. This is PETL_Vision's and AdaptFormer's `lora_kaiming`.
- `lora_xavier`: Xavier-uniform `down`, everything else zero (Convpass, RepAdapter).
- `xavier`: both Xavier-uniform, biases N(0, 1e-6): the branch does not start at zero
  (NOAH's adapter, PETL_Vision's rand_h_adapter, as their module files declare it).
- `trunc_normal`: both weights trunc-normal std 0.02, biases zero: what those modules hold when
  the runs start, NOAH's and PETL_Vision's model constructors redrawing every Linear after the
  modules' own init (methods/_common.py:redraw_linears). The branch does not start at zero.
"""
import torch
import torch.nn as nn

from methods._common import redraw_linears

INITS = ("zero_up", "lora_xavier", "xavier", "trunc_normal")
ACTS = ("gelu", "quick_gelu", "relu")


class QuickGELU(nn.Module):
    """x * sigmoid(1.702 x), CLIP's GELU approximation (NOAH, Convpass)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


def activation(name: str) -> nn.Module:
    return {"gelu": nn.GELU, "quick_gelu": QuickGELU, "relu": nn.ReLU}[name]()


def init_pair(down: nn.Module, up: nn.Module, init: str) -> None:
    """Initialise a down/up projection pair (Linear or Conv) in place; `down` keeps PyTorch's init under zero_up."""
    if init == "trunc_normal":
        redraw_linears([down, up])
        return
    with torch.no_grad():
        if init == "xavier":
            for m in (down, up):
                nn.init.xavier_uniform_(m.weight)
                nn.init.normal_(m.bias, std=1e-6)
            return
        if init == "lora_xavier":
            nn.init.xavier_uniform_(down.weight)
        nn.init.zeros_(down.bias)
        nn.init.zeros_(up.weight)
        nn.init.zeros_(up.bias)


class Bottleneck(nn.Module):
    """(..., dim) -> (..., dim): the branch alone; callers add it where their method says."""

    def __init__(self, dim: int, bottleneck: int, scale: float, init: str = "zero_up", act: str = "gelu",
                 dropout: float = 0.0):
        super().__init__()
        self.down = nn.Linear(dim, bottleneck)
        self.act = activation(act)
        self.drop = nn.Dropout(dropout)
        self.up = nn.Linear(bottleneck, dim)
        init_pair(self.down, self.up, init)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * self.up(self.drop(self.act(self.down(x))))
