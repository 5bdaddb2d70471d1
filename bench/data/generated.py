"""The mini benchmark's splits (bench/data/mini.py) as a run reads them: generated in memory once per
process and task, so a sweep that runs many methods on one task generates it once."""
import functools

import numpy as np
import torch

from bench.data import mini
from bench.data.fingerprint import fingerprint, generated_ids
from bench.data.torch_datasets import Tensors


@functools.lru_cache(maxsize=16)
def arrays(task: str, split: str, data_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images, int64 labels) of one split; trainval (VTAB's train800val200) is train, then val."""
    if split == "trainval":
        parts = [arrays(task, s, data_seed) for s in ("train", "val")]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    return mini.generate(task, split, data_seed)


def split_fingerprint(cfg, split: str) -> str:
    """The fingerprint (bench/data/fingerprint.py) of a generated split, in its order (trainval: train, then val)."""
    parts = ("train", "val") if split == "trainval" else (split,)
    ids, labels = [], []
    for s in parts:
        y = arrays(cfg.task, s, cfg.data_seed)[1]
        ids += generated_ids(cfg.task, s, cfg.data_seed, len(y))
        labels += y.tolist()
    return fingerprint(ids, labels)


def dataset(cfg, split: str, mean, std) -> Tensors:
    """The split as normalised float images and int64 labels (no augmentation: the mini benchmark has none)."""
    images, labels = arrays(cfg.task, split, cfg.data_seed)
    if labels.max() >= cfg.num_classes:
        raise ValueError(f"dataset {cfg.name!r}: label {labels.max()} out of range for {cfg.num_classes} classes")
    x = torch.from_numpy(images).float().div_(255)
    x = (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)
    return Tensors(x, torch.from_numpy(labels))


__all__ = ["arrays", "dataset", "split_fingerprint"]
