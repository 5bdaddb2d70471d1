"""Bias tuning (BitFit, Ben Zaken et al. 2022, arXiv:2106.10199): every bias term plus the head train.

"Every bias" includes the LayerNorm biases and the patch-embedding bias, as in BitFit and
VPT's `tinytl-bias` transfer type.
"""
from dataclasses import dataclass

import torch.nn as nn

from methods import Unsupported
from methods._common import freeze, train_head


@dataclass
class Config:
    pass


def apply(model: nn.Module, cfg: Config) -> nn.Module:
    freeze(model)
    biases = [p for n, p in model.named_parameters() if n.rsplit(".", 1)[-1] == "bias"]
    if not biases:
        raise Unsupported(f"bias: backbone {type(model).__name__} has no bias parameters")
    for p in biases:
        p.requires_grad_(True)
    train_head(model)
    return model
