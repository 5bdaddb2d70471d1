"""VTAB-1k in the NOAH/SSF image+txt format (anchors.md sections 1.4 and 3).

    <vtab-1k>/<task>/train800.txt, val200.txt, train800val200.txt, test.txt
    <vtab-1k>/<task>/images/<split>/000123.jpg        (NOAH's converter; any relative path works)

Each line is `<relative image path> <int label>`, joined to the task folder. The task folders
are NOAH's names (`cifar`, `oxford_flowers102`, ...); V-PETL Bench names CIFAR-100's `cifar100`
(anchors.md section 4), which is accepted too.
"""
from pathlib import Path

from bench.data.listing import Listing, read_split_file
from bench.data.roots import dataset_root, missing

SPLIT_FILES = {"train": "train800.txt", "val": "val200.txt", "trainval": "train800val200.txt", "test": "test.txt"}
WRITTEN = ("train", "val", "test")  # the splits a converter writes images for; trainval lists train's, then val's
FOLDER_ALIASES = {"cifar": ("cifar100",)}  # our (NOAH's) folder name -> other names in the wild
EXPECTED = ", ".join(SPLIT_FILES.values()) + " (lines '<image path> <label>') and the images they list"


def stem(split: str) -> str:
    """A split's file name without `.txt` (`train800`): the converters' name for it and its image folder."""
    return SPLIT_FILES[split].removesuffix(".txt")


def task_root(cfg) -> Path:
    """The task folder, or its alias (`cifar100` for `cifar`) when only that one exists."""
    root = dataset_root(cfg)
    if not root.exists():
        for alias in FOLDER_ALIASES.get(root.name, ()):
            if (root.parent / alias).exists():
                return root.parent / alias
    return root


def list_split(cfg, split: str) -> Listing:
    """One split file of the task folder."""
    root = task_root(cfg)
    if not root.is_dir():
        raise missing(cfg, root, EXPECTED)
    path = root / SPLIT_FILES[split]
    if not path.is_file():
        raise missing(cfg, path, EXPECTED)
    return read_split_file(cfg, path, root)
