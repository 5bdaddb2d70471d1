"""FacT-TT: factor-tuning with a tensor-train core per update (Jie and Deng, AAAI 2023; see
methods/_fact.py). Defaults from the official per-dataset configs' most common setting:
rank 8, scale 1 (PETL_Vision's grid: rank {8, 16, 32} x scale {0.01, 0.1, 1, 10, 100})."""
from methods import _fact

Config = _fact.config(rank=8, scale=1.0)
RULES = _fact.RULES
apply = _fact.applier("tt")
merge = _fact.merge
