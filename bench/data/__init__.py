"""Datasets as ready-to-train tensors.

`load_split` returns a TensorDataset of normalised float images and int64 labels. The mini
benchmark is generated in memory (about a second per task) and cached per process, so a
sweep that runs many methods on one task generates it once.
"""
import functools

import numpy as np
import torch
from torch.utils.data import TensorDataset

from bench.config import DatasetConfig
from bench.data import mini

SPLITS = ("train", "val", "trainval", "test")


@functools.lru_cache(maxsize=16)
def _mini_split(task: str, split: str, data_seed: int) -> tuple[np.ndarray, np.ndarray]:
    if split == "trainval":  # VTAB's train800val200: the union of the two splits
        parts = [_mini_split(task, s, data_seed) for s in ("train", "val")]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    return mini.generate(task, split, data_seed)


def load_split(cfg: DatasetConfig, split: str, mean, std) -> TensorDataset:
    """One split of `cfg`, normalised with the backbone's `mean` and `std` (per channel)."""
    if split not in SPLITS:
        raise KeyError(f"unknown split {split!r}; valid: {list(SPLITS)}")
    if cfg.benchmark != "mini":
        raise NotImplementedError(f"dataset {cfg.name!r}: benchmark {cfg.benchmark!r} has no loader yet; "
                                  f"available: ['mini']")
    images, labels = _mini_split(cfg.task, split, cfg.data_seed)
    if labels.max() >= cfg.num_classes:
        raise ValueError(f"dataset {cfg.name!r}: label {labels.max()} out of range for {cfg.num_classes} classes")
    x = torch.from_numpy(images).float().div_(255)
    x = (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)
    return TensorDataset(x, torch.from_numpy(labels))
