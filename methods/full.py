"""Full fine-tuning: every parameter trains (the reference every PEFT method is measured against)."""
from dataclasses import dataclass

import torch.nn as nn


@dataclass
class Config:
    pass


def apply(model: nn.Module, cfg: Config) -> nn.Module:
    for p in model.parameters():
        p.requires_grad_(True)
    return model
