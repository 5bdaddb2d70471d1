"""Shared pieces of the real-data loaders: the error type, where data lives, split listings.

Every loader turns its on-disk format into a `Listing` (image paths, 0-based labels, and
where each entry came from, "file:line"), so that size checks, label checks, caching and the
`check` command are written once. Every message about a broken dataset names the file (and
line), says what was expected and points to the docs section on preparing data (docs/datasets.md).
"""
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

README = "docs/datasets.md, section 'Preparing the datasets'"
ENV_DATA_ROOT = "BENCH_DATA_ROOT"
ENV_CACHE_DIR = "BENCH_CACHE_DIR"
# What timm's and torchvision's folder datasets accept (lower-cased suffixes).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


class DataError(ValueError):
    """A dataset on disk is missing or malformed. The message names the file (and line)."""


def numbered_lines(path: Path):
    """(line number, stripped line) for every non-empty line of a text listing."""
    with open(path, encoding="utf-8") as f:
        for n, raw in enumerate(f, 1):
            line = raw.strip()
            if line:
                yield n, line


@dataclass
class Listing:
    """One split: absolute image paths, int64 labels, and where each entry was read from."""
    paths: list[str]
    labels: np.ndarray
    where: list[str] | None = None  # "file:line" per entry; None: the path itself says it
    sources: list[Path] = field(default_factory=list)  # files the listing was read from (split files)

    def __len__(self) -> int:
        return len(self.paths)

    def origin(self, i: int) -> str:
        return self.where[i] if self.where is not None else self.paths[i]


def data_root(cfg) -> Path:
    """`cfg.data_root`, else $BENCH_DATA_ROOT, else ./data (relative paths from the current folder)."""
    root = cfg.data_root or os.environ.get(ENV_DATA_ROOT) or "data"
    return Path(root).expanduser().absolute()


def dataset_root(cfg) -> Path:
    """The dataset's own folder: `cfg.root` under the data root (or `cfg.root` itself when absolute)."""
    root = Path(cfg.root).expanduser()
    return root if root.is_absolute() else data_root(cfg) / root


def missing(cfg, what: Path, expected: str) -> DataError:
    """The error for a dataset (or one of its files) that is not where it should be."""
    return DataError(
        f"dataset {cfg.name!r}: {what} not found. Expected under {dataset_root(cfg)}: {expected} "
        f"(format {cfg.format!r}). The data root is {data_root(cfg)} (set dataset.data_root or "
        f"${ENV_DATA_ROOT}); see {README}.")


def require(cfg, path: Path, expected: str) -> Path:
    if not path.exists():
        raise missing(cfg, path, expected)
    return path


def check_labels(cfg, listing: Listing) -> None:
    """Every label in [0, num_classes); the error names the first offending entry."""
    bad = np.flatnonzero((listing.labels < 0) | (listing.labels >= cfg.num_classes))
    if len(bad):
        i = int(bad[0])
        raise DataError(f"dataset {cfg.name!r}: {listing.origin(i)}: label {int(listing.labels[i])} out of range "
                        f"for {cfg.num_classes} classes (valid: 0..{cfg.num_classes - 1}); "
                        f"{len(bad)} label(s) out of range in this split; see {README}")


def check_exists(cfg, listing: Listing) -> None:
    """Every listed image exists; the error names the first missing one and the line listing it."""
    for i, p in enumerate(listing.paths):
        if not os.path.isfile(p):
            n = sum(not os.path.isfile(q) for q in listing.paths[i:])
            raise DataError(f"dataset {cfg.name!r}: {listing.origin(i)}: image {p} not found "
                            f"({n} listed images missing); see {README}")


def check_size(cfg, split: str, n: int, source: str) -> None:
    """The split has the number of images the config expects (a missing or 0 entry: any, but not none)."""
    expected = cfg.splits.get(split, 0)
    if n == 0 or (expected and n != expected):
        raise DataError(f"dataset {cfg.name!r}: split {split!r} ({source}) has {n} images, expected "
                        f"{expected or 'at least one'}; an incomplete copy? see {README}")


def subfolders(folder: Path) -> list[str]:
    """Names of the visible sub-folders of `folder`, sorted."""
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))


def class_folders(cfg, folder: Path, classes: list[str] | None = None) -> tuple[Listing, list[str]]:
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
