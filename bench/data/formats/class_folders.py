"""Class-folder datasets: ImageNet-1k, and Oxford Flowers / Stanford Cars as the SSF code reads them.

    <root>/train/<class>/<image>      trained on (trainval)
    <root>/val/<class>/<image>        evaluated on (test)

Labels are the class folder's index in sorted order, as timm's and torchvision's folder
datasets assign them, so ImageNet's labels are the standard 1000-way indices (sorted WordNet
ids). SSF evaluates Flowers and Cars on the `val` folder and ImageNet on `val/` (anchors.md 1.3-1.4).
The robustness sets (bench/data/robustness.py) are class folders too.
"""
import os
from pathlib import Path

import numpy as np

from bench.data.errors import README, DataError
from bench.data.listing import Listing
from bench.data.roots import dataset_root, missing, require

SPLIT_FOLDERS = {"trainval": "train", "test": "val"}
EXPECTED = "train/<class>/<image> and val/<class>/<image>"
# What timm's and torchvision's folder datasets accept (lower-cased suffixes).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def subfolders(folder: Path) -> list[str]:
    """Names of the visible sub-folders of `folder`, sorted."""
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))


def list_folder(cfg, folder: Path, classes: list[str] | None = None) -> tuple[Listing, list[str]]:
    """Images in `folder/<class>/...` (any depth), labels = index of the class in sorted order.

    Args:
        classes: the class list to use (e.g. from the training folder); a folder not in it is an error.

    Returns:
        (listing, classes)
    """
    require(cfg, folder, "one sub-folder per class holding its images")
    found = subfolders(folder)
    if classes is None:
        classes = found
    index = {c: i for i, c in enumerate(classes)}
    unknown = [c for c in found if c not in index]
    if unknown:
        raise DataError(f"dataset {cfg.name!r}: {folder}: class folder(s) {unknown[:5]} are not among the "
                        f"{len(classes)} training classes; see {README}")
    paths, labels = [], []
    for c in found:
        for dirpath, dirnames, filenames in os.walk(folder / c):
            dirnames.sort()
            for f in sorted(filenames):
                if f.lower().endswith(IMAGE_EXTENSIONS):
                    paths.append(os.path.join(dirpath, f))
                    labels.append(index[c])
    return Listing(paths, np.asarray(labels, dtype=np.int64)), classes


def list_split(cfg, split: str) -> Listing:
    root = dataset_root(cfg)
    train = root / SPLIT_FOLDERS["trainval"]
    if not train.is_dir():
        raise missing(cfg, train, EXPECTED)
    classes = subfolders(train)  # the class list comes from the training folder, whatever the split
    if len(classes) != cfg.num_classes:
        raise DataError(f"dataset {cfg.name!r}: {train} has {len(classes)} class folders, expected "
                        f"{cfg.num_classes}; see {README}")
    folder = root / SPLIT_FOLDERS[split]
    if not folder.is_dir():
        raise missing(cfg, folder, EXPECTED)
    return list_folder(cfg, folder, classes)[0]
