"""VTAB-1k in the NOAH/SSF image+txt format (anchors.md sections 1.4 and 3).

    <vtab-1k>/<task>/train800.txt, val200.txt, train800val200.txt, test.txt
    <vtab-1k>/<task>/images/<split>/000123.jpg        (NOAH's converter; any relative path works)

Each line is `<relative image path> <int label>`, joined to the task folder. The task folders
are NOAH's names (`cifar`, `oxford_flowers102`, ...); V-PETL Bench names CIFAR-100's `cifar100`
(anchors.md section 4), which is accepted too.
"""
from pathlib import Path

import numpy as np

from bench.data.files import README, DataError, Listing, dataset_root, missing, numbered_lines

SPLIT_FILES = {"train": "train800.txt", "val": "val200.txt", "trainval": "train800val200.txt", "test": "test.txt"}
FOLDER_ALIASES = {"cifar": ("cifar100",)}  # our (NOAH's) folder name -> other names in the wild
EXPECTED = ", ".join(SPLIT_FILES.values()) + " (lines '<image path> <label>') and the images they list"


def task_root(cfg) -> Path:
    """The task folder, or its alias (`cifar100` for `cifar`) when only that one exists."""
    root = dataset_root(cfg)
    if not root.exists():
        for alias in FOLDER_ALIASES.get(root.name, ()):
            if (root.parent / alias).exists():
                return root.parent / alias
    return root


def read_split_file(cfg, path: Path, base: Path) -> Listing:
    """Parse one split file; every malformed line is an error naming the file and line."""
    paths, labels, where = [], [], []
    for n, line in numbered_lines(path):
        rel, sep, label = line.rpartition(" ")
        if not sep or not rel.strip():
            raise DataError(f"dataset {cfg.name!r}: {path}:{n}: malformed line {line!r}; expected "
                            f"'<relative image path> <integer label>'; see {README}")
        try:
            y = int(label)
        except ValueError:
            raise DataError(f"dataset {cfg.name!r}: {path}:{n}: label {label!r} is not an integer "
                            f"(line {line!r}); see {README}") from None
        paths.append(str(base / rel.strip()))
        labels.append(y)
        where.append(f"{path}:{n}")
    return Listing(paths, np.asarray(labels, dtype=np.int64), where, [path])


def list_split(cfg, split: str) -> Listing:
    root = task_root(cfg)
    if not root.is_dir():
        raise missing(cfg, root, EXPECTED)
    path = root / SPLIT_FILES[split]
    if not path.is_file():
        raise missing(cfg, path, EXPECTED)
    return read_split_file(cfg, path, root)
