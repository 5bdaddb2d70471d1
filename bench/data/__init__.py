"""Datasets as ready-to-train tensors.

`load_split` returns a Dataset of normalised float images and int64 labels. The mini
benchmark is generated in memory (about a second per task) and cached per process, so a
sweep that runs many methods on one task generates it once. Real datasets (VTAB-1k, FGVC,
CIFAR-100, ImageNet) are read from disk by `bench.data.real`, validated first, and their
decoded pixels cached (bench/data/cache.py); robustness sets are in `bench.data.robustness`.
"""
import functools

import numpy as np
import torch
from torch.utils.data import TensorDataset

from bench.config import DatasetConfig
from bench.data import mini
from bench.data.files import DataError
from bench.data.fingerprint import fingerprint, generated_ids

SPLITS = ("train", "val", "trainval", "test")


@functools.lru_cache(maxsize=16)
def _mini_split(task: str, split: str, data_seed: int) -> tuple[np.ndarray, np.ndarray]:
    if split == "trainval":  # VTAB's train800val200: the union of the two splits
        parts = [_mini_split(task, s, data_seed) for s in ("train", "val")]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    return mini.generate(task, split, data_seed)


def load_split(cfg: DatasetConfig, split: str, mean, std, *, train: bool | None = None):
    """One split of `cfg`, normalised with the backbone's `mean` and `std` (per channel).

    Args:
        train: apply the dataset's training augmentation; default: for the `train` and
            `trainval` splits. The mini benchmark has none.

    Raises:
        DataError: the dataset on disk is missing, incomplete or malformed (the message names
            the file and line, and points to docs/datasets.md, section on preparing data).
    """
    if split not in SPLITS:
        raise KeyError(f"unknown split {split!r}; valid: {list(SPLITS)}")
    if cfg.benchmark != "mini":
        from bench.data import real

        return real.load_split(cfg, split, mean, std, train=train)
    images, labels = _mini_split(cfg.task, split, cfg.data_seed)
    if labels.max() >= cfg.num_classes:
        raise ValueError(f"dataset {cfg.name!r}: label {labels.max()} out of range for {cfg.num_classes} classes")
    x = torch.from_numpy(images).float().div_(255)
    x = (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)
    return TensorDataset(x, torch.from_numpy(labels))


def preflight(cfg: DatasetConfig, splits) -> None:
    """Validate the listed splits on disk (presence, sizes, labels, every image present) without
    decoding; call before building the model so a broken dataset stops the run before training.

    Raises:
        DataError: as `load_split`.
    """
    if cfg.benchmark == "mini":
        return
    from bench.data import real

    for split in dict.fromkeys(splits):
        real.listing(cfg, split)


def mini_fingerprint(cfg: DatasetConfig, split: str) -> str:
    """The fingerprint (bench/data/fingerprint.py) of a generated split, in its order (trainval: train, then val)."""
    parts = ("train", "val") if split == "trainval" else (split,)
    ids, labels = [], []
    for s in parts:
        y = _mini_split(cfg.task, s, cfg.data_seed)[1]
        ids += generated_ids(cfg.task, s, cfg.data_seed, len(y))
        labels += y.tolist()
    return fingerprint(ids, labels)


def describe(cfg: DatasetConfig, datasets: dict) -> dict:
    """What a run read, for its record (format, root, images per split, listing sha1, skipped images)."""
    from bench.data import real

    if cfg.benchmark == "mini":
        from bench.data.version import version

        splits = {s: {"images": len(d), "fingerprint": mini_fingerprint(cfg, s)} for s, d in datasets.items()}
        return {"format": "generated", "root": None, "bad_images_skipped": 0, "pixel_format": "generated",
                "version": version(splits), "splits": splits}
    return real.describe(cfg, datasets)


__all__ = ["SPLITS", "DataError", "describe", "load_split", "preflight"]
