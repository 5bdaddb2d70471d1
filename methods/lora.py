"""LoRA: Low-Rank Adaptation (Hu et al., ICLR 2022, arXiv:2106.09685), through the peft library.

`W x + (alpha / r) * B A x` on every Linear named in `target_modules` (default: the fused
attention `qkv` of each ViT block). peft's init: A Kaiming-uniform, B zero, so the model
starts equal to the backbone and both factors train from the second step on. The head is
kept trainable directly (not through `modules_to_save`, which would keep a frozen copy of
it and inflate the parameter count). peft is imported only here: it costs seconds.
"""
from dataclasses import dataclass, field

import torch.nn as nn

from methods import Unsupported
from methods._common import train_head


@dataclass
class Config:
    r: int = 4
    alpha: float = 8.0
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: ["qkv"])


def apply(model: nn.Module, cfg: Config) -> nn.Module:
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                        target_modules=list(cfg.target_modules), bias="none")
    try:
        peft_model = get_peft_model(model, config)  # injects LoRA layers in place, freezes the rest
    except ValueError as e:
        raise Unsupported(f"lora: target_modules {list(cfg.target_modules)} not found in backbone "
                          f"{type(model).__name__}: {e}") from e
    train_head(model)
    return peft_model


def merge(model: nn.Module) -> nn.Module:
    """Fold B A into W (peft's merge_and_unload); returns the plain backbone."""
    return model.merge_and_unload()
