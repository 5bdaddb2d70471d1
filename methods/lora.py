"""LoRA: Low-Rank Adaptation (Hu et al., ICLR 2022, arXiv:2106.09685), through the peft library.

`W x + (alpha / r) * B A x` on every Linear named in `target_modules`. By default
(`target_modules: null`) that is the fused attention `qkv` of ViT and Swin blocks, and the
MLP layers `fc1`/`fc2` on backbones without attention (ConvNeXt, MLP-Mixer); where a
ConvNeXt's MLP is a 1x1 Conv2d (`conv_mlp`), peft's Conv2d LoRA (A and B 1x1 convolutions,
the same r (in + out) parameters) takes its place and merges the same way. peft's init:
A Kaiming-uniform, B zero, so the model starts equal to the backbone and both factors train
from the second step on. `merge` folds B A into W.

`init=trunc_normal` draws A and B (their Linears; a Conv2d LoRA keeps peft's init) trunc-normal
std 0.02: what NOAH's and PETL_Vision's LoRA runs start from, their model constructors redrawing
every Linear after the LoRA modules' own Kaiming / zero init (methods/_common.py:redraw_linears).
B is then not zero: the model does not start equal to the backbone. `dropout` acts on the
LoRA branch's input, as peft's `lora_dropout`, NOAH's `LoRA_drop` and PETL_Vision's `lora_drop` do.
"""
from dataclasses import dataclass

import torch.nn as nn

from bench.config import POSITIVE, UNIT, one_of
from methods import peft as peft_method
from methods._common import find_modules, redraw_linears

INITS = ("kaiming_zero", "trunc_normal")


@dataclass
class Config:
    r: int = 4
    alpha: float | None = 8.0  # None: alpha = r, no alpha / r scaling (NOAH, PETL_Vision)
    dropout: float = 0.0
    target_modules: list[str] | None = None  # None: qkv where the backbone has it, else fc1/fc2
    init: str = "kaiming_zero"  # kaiming_zero: peft's, starts equal to the backbone | trunc_normal: A and B
    # trunc-normal std 0.02 (NOAH's and PETL_Vision's runs)


RULES = {"method.r": POSITIVE, "method.alpha": POSITIVE, "method.dropout": UNIT, "method.init": one_of(*INITS)}


def is_pointwise(m: nn.Module) -> bool:
    """A Linear, or a 1x1 Conv2d (the MLP of ConvNeXts built with conv_mlp, such as convnext_atto)."""
    return isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and m.groups == 1)


def default_targets(model: nn.Module) -> list[str]:
    names = {n.rsplit(".", 1)[-1] for n, m in find_modules(model, lambda n, m: is_pointwise(m),
                                                             "Linear or 1x1 Conv2d layers", "lora")}
    return ["qkv"] if "qkv" in names else ["fc1", "fc2"]


def apply(model: nn.Module, cfg: Config) -> nn.Module:
    from peft import LoraConfig

    targets = list(cfg.target_modules) if cfg.target_modules else default_targets(model)
    alpha = cfg.r if cfg.alpha is None else cfg.alpha
    config = LoraConfig(r=cfg.r, lora_alpha=alpha, lora_dropout=cfg.dropout, target_modules=targets, bias="none")
    wrapped = peft_method.wrap(model, config, "lora")
    if cfg.init == "trunc_normal":
        from peft.tuners.lora import LoraLayer

        redraw_linears([f for m in wrapped.modules() if isinstance(m, LoraLayer) for f in (m.lora_A, m.lora_B)])
    return wrapped


merge = peft_method.merge
