"""FacT-TK: factor-tuning with one Tucker core shared by every update (Jie and Deng, AAAI 2023;
see methods/_fact.py). Defaults from the official CIFAR-100 config: rank 32, scale 0.1
(PETL_Vision's grid: rank {16, 32, 64} x scale {0.01, 0.1, 1, 10, 100})."""
from methods import _fact

Config = _fact.config(rank=32, scale=0.1)
RULES = _fact.RULES
apply = _fact.applier("tk")
merge = _fact.merge
