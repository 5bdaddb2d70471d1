"""Linear probing: the backbone is frozen and only the classifier head trains."""
from dataclasses import dataclass

import torch.nn as nn

from methods._common import freeze, train_head


@dataclass
class Config:
    pass


def apply(model: nn.Module, cfg: Config) -> nn.Module:
    freeze(model)
    train_head(model)
    return model
