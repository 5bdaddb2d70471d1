"""FacT-TT: factor-tuning with a tensor-train core per update (Jie and Deng, AAAI 2023; see
methods/_fact.py). Defaults from the official per-dataset configs' most common setting:
rank 8, scale 1 (PETL_Vision's grid: rank {8, 16, 32} x scale {0.01, 0.1, 1, 10, 100})."""
from dataclasses import dataclass

import torch.nn as nn

from bench.config import NON_NEGATIVE, POSITIVE
from methods import _fact


@dataclass
class Config:
    rank: int = 8
    scale: float = 1.0


RULES = {"method.rank": POSITIVE, "method.scale": NON_NEGATIVE}


def apply(model: nn.Module, cfg: Config) -> nn.Module:
    return _fact.apply(model, cfg.rank, cfg.scale, "tt", "fact_tt")


merge = _fact.merge
