"""The mini benchmark's splits (bench/data/mini.py) as a run reads them.

A split is generated once per sweep, not once per run: the first run to need it writes it to
`<cache_dir>/mini/<task>-<split>-seed<k>-<generator>.npz` (cache_dir as for decoded pixels,
bench/data/cache.py: `dataset.cache_dir`, $BENCH_CACHE_DIR, else `<data_root>/.cache`) and every
later run, in any process, reads it back (a millisecond against about a second to draw it). The
name holds a hash of the generator's source and numpy's version, so an edited generator never
reads an old file. The file is read with `allow_pickle=False` and checked; a truncated or foreign
one is drawn again and replaced. Within a process the arrays are also kept in memory.
"""
import functools
import hashlib
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch

from bench.data import cache, mini, subset
from bench.data.fingerprint import fingerprint, generated_ids
from bench.data.torch_datasets import Tensors
from bench.records import atomic_file

GENERATOR_SOURCES = ("mini.py", "render.py")  # what draws the images (bench/data/): their bytes name the files


@functools.lru_cache(maxsize=1)
def generator_hash() -> str:
    h = hashlib.sha256(np.__version__.encode())
    for name in GENERATOR_SOURCES:
        h.update((Path(__file__).with_name(name)).read_bytes())
    return h.hexdigest()[:12]


def cache_file(folder: str, task: str, split: str, data_seed: int) -> Path:
    return Path(folder) / "mini" / f"{task}-{split}-seed{data_seed}-{generator_hash()}.npz"


def _read(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """The stored split, or None when there is none or it is not one this code wrote (then it is rebuilt)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            images, labels = z["images"], z["labels"]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        warnings.warn(f"mini task cache {path} is unreadable ({type(e).__name__}); drawing the split again", stacklevel=3)
        return None
    if images.dtype != np.uint8 or images.shape[1:] != (3, 32, 32) or labels.dtype != np.int64 \
            or labels.shape != images.shape[:1]:
        warnings.warn(f"mini task cache {path} holds other arrays; drawing the split again", stacklevel=3)
        return None
    return images, labels


def _write(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """Through the project's atomic writer: runs side by side may write the same split."""
    try:
        with atomic_file(path) as tmp, open(tmp, "wb") as f:  # a file object: savez would append ".npz"
            np.savez(f, images=images, labels=labels)
    except OSError:  # a read-only cache folder only costs drawing the split again next time
        pass


@functools.lru_cache(maxsize=16)
def arrays(task: str, split: str, data_seed: int, folder: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images, int64 labels) of one split; trainval (VTAB's train800val200) is train, then val.

    `folder`: the cache folder shared by a sweep's runs (None: draw in memory only)."""
    if split == "trainval":
        parts = [arrays(task, s, data_seed, folder) for s in ("train", "val")]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    path = cache_file(folder, task, split, data_seed) if folder else None
    stored = _read(path) if path else None
    if stored is not None:
        return stored
    images, labels = mini.generate(task, split, data_seed)
    if path:
        _write(path, images, labels)
    return images, labels


def split_arrays(cfg, split: str) -> tuple[np.ndarray, np.ndarray]:
    """One split of the mini task `cfg` names, through the sweep's shared cache."""
    return arrays(cfg.task, split, cfg.data_seed, str(cache.cache_dir(cfg)))


def split_fingerprint(cfg, split: str) -> str:
    """The fingerprint (bench/data/fingerprint.py) of a generated split, in its order (trainval: train, then val)."""
    parts = ("train", "val") if split == "trainval" else (split,)
    ids, labels = [], []
    for s in parts:
        y = split_arrays(cfg, s)[1]
        ids += generated_ids(cfg.task, s, cfg.data_seed, len(y))
        labels += y.tolist()
    keep = subset.indices(cfg, split, np.asarray(labels, dtype=np.int64))
    if keep is not None:
        ids, labels = [ids[i] for i in keep], [labels[i] for i in keep]
    return fingerprint(ids, labels)


def dataset(cfg, split: str, mean, std) -> Tensors:
    """The split as normalised float images and int64 labels (no augmentation: the mini benchmark has none),
    cut to `dataset.train_subset` images as a listed split is (bench/data/subset.py)."""
    images, labels = split_arrays(cfg, split)
    keep = subset.indices(cfg, split, labels)
    if keep is not None:
        images, labels = images[keep], labels[keep]
    if labels.max() >= cfg.num_classes:
        raise ValueError(f"dataset {cfg.name!r}: label {labels.max()} out of range for {cfg.num_classes} classes")
    x = torch.from_numpy(images).float().div_(255)
    x = (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)
    return Tensors(x, torch.from_numpy(labels))


__all__ = ["arrays", "cache_file", "dataset", "split_arrays", "split_fingerprint"]
