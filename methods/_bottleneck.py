"""The bottleneck MLP shared by the adapter family: `scale * up(dropout(act(down(x))))`, no residual.

With the options Adapter+ adds (visinf/adapter_plus: adapter_plus/vit_adapter.py `Adapter`), the branch is
`s * DP(up(dropout(act(down(norm(x))))))`: an optional LayerNorm on its input, `s` a constant, a learned
scalar or a learned per-channel vector (`scale`, starting at ones), DP stochastic depth on the branch
alone (its own rate, `drop_branch`), biases optional. The defaults keep the plain bottleneck's tensors
and state-dict keys (`down`, `up`).

Initialisations, named as in PETL_Vision's `model/utils.py:init_weight` where they come from:
- `zero_up`: PyTorch's Linear init for `down` (Kaiming-uniform, a = sqrt(5)), zero `down` bias,
  zero `up`: the branch starts at zero. This is PETL_Vision's and AdaptFormer's `lora_kaiming`.
- `lora_xavier`: Xavier-uniform `down`, everything else zero (Convpass, RepAdapter).
- `xavier`: both Xavier-uniform, biases N(0, 1e-6): the branch does not start at zero
  (NOAH's adapter, PETL_Vision's rand_h_adapter, as their module files declare it).
- `trunc_normal`: both weights trunc-normal std 0.02, biases zero: what those modules hold when
  the runs start, NOAH's and PETL_Vision's model constructors redrawing every Linear after the
  modules' own init (methods/_common.py:redraw_linears). The branch does not start at zero.
- Adapter+'s three, drawn in its order (down's and up's PyTorch init first, then redrawn), so a
  seed gives its tensors bit for bit: `houlsby`: both weights trunc-normal std 0.01 cut at +-2 std,
  biases zero (the branch starts near zero, not at it); `lora`: `down` Kaiming-uniform (a = sqrt(5))
  with its bias redrawn uniform +-1/sqrt(fan_in), `up` zero; `bert`: both weights normal std 0.02,
  biases zero.
"""
import math

import torch
import torch.nn as nn
from timm.layers import DropPath

from methods._common import redraw_linears

INITS = ("zero_up", "lora_xavier", "xavier", "trunc_normal")
PLUS_INITS = ("houlsby", "lora", "bert")  # Adapter+'s (Linear pairs only)
SCALINGS = ("constant", "learned", "channel")  # s: the `scale` value | one learned scalar | one per channel
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
        if init in ("houlsby", "bert"):
            for m in (down, up):
                if init == "houlsby":
                    nn.init.trunc_normal_(m.weight, std=0.01, a=-0.02, b=0.02)
                else:
                    nn.init.normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            return
        if init == "lora":
            nn.init.kaiming_uniform_(down.weight, a=math.sqrt(5))
            if down.bias is not None:
                bound = 1 / math.sqrt(down.weight.shape[1])
                nn.init.uniform_(down.bias, -bound, bound)
            nn.init.zeros_(up.weight)
            if up.bias is not None:
                nn.init.zeros_(up.bias)
            return
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
                 dropout: float = 0.0, *, scaling: str = "constant", norm: bool = False, bias: bool = True,
                 drop_branch: float = 0.0, eps: float = 1e-6):
        super().__init__()
        self.down = nn.Linear(dim, bottleneck, bias=bias)
        self.act = activation(act)
        self.drop = nn.Dropout(dropout)
        self.up = nn.Linear(bottleneck, dim, bias=bias)
        if norm:  # the backbone's LayerNorm (timm ViT: eps 1e-6), fresh: weight 1, bias 0
            self.norm = nn.LayerNorm(dim, eps=eps)
        if drop_branch > 0:
            self.drop_branch = DropPath(drop_branch)
        init_pair(self.down, self.up, init)
        if scaling == "constant":
            self.scale = scale
        else:  # learned: starts at ones (Adapter+); 1-D, so timm's groups do not decay it
            self.scale = nn.Parameter(torch.ones(dim if scaling == "channel" else 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if "norm" in self._modules:
            x = self.norm(x)
        y = self.up(self.drop(self.act(self.down(x))))
        if "drop_branch" in self._modules:
            y = self.drop_branch(y)
        return y * self.scale if isinstance(self.scale, nn.Parameter) else self.scale * y
