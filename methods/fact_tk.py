"""FacT-TK: factor-tuning with one Tucker core shared by every update (Jie and Deng, AAAI 2023;
see methods/_fact.py). Defaults from the official CIFAR-100 config: rank 32, scale 0.1
(PETL_Vision's grid: rank {16, 32, 64} x scale {0.01, 0.1, 1, 10, 100})."""
from dataclasses import dataclass

import torch.nn as nn

from bench.config import NON_NEGATIVE, POSITIVE
from methods import _fact


@dataclass
class Config:
    rank: int = 32
    scale: float = 0.1


RULES = {"method.rank": POSITIVE, "method.scale": NON_NEGATIVE}


def apply(model: nn.Module, cfg: Config) -> nn.Module:
    return _fact.apply(model, cfg.rank, cfg.scale, "tk", "fact_tk")


merge = _fact.merge
