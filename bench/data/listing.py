"""Split listings: the split names, the `Listing` every format produces, its line parser and its checks.

Every format (bench/data/formats/) turns its files into a `Listing` (image paths, 0-based
labels, and where each entry came from, "file:line"), so that size checks, label checks,
caching and the `check` command are written once. Every message about a broken dataset names the
file (and line), says what was expected and points to the README section on preparing data.
"""
import dataclasses
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.data.errors import README, DataError

SPLITS = ("train", "val", "trainval", "test")  # VTAB-1k's train800, val200, train800val200 and test
OFFICIAL = ("trainval", "test")  # the splits of a dataset published as training and test sets only
TRAINING = ("train", "trainval")  # the splits a run trains on (augmented, subset by dataset.train_subset)


@dataclass(frozen=True)
class Listing:
    """One split: absolute image paths, int64 labels, and where each entry was read from."""
    paths: list[str]
    labels: np.ndarray
    where: list[str] | None = None  # "file:line" per entry; None: the path itself says it
    sources: list[Path] = field(default_factory=list)  # files the listing was read from (split files)
    # (size, mtime_ns) per image, from the one `os.stat` of `stat_files`; None: not stat-ed (arrays)
    stats: list[tuple[int, int]] | None = None
    # array-backed formats (CIFAR's pickles): the file's images (N, H, W, 3); each path `file[i]` names its row
    arrays: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def origin(self, i: int) -> str:
        return self.where[i] if self.where is not None else self.paths[i]

    def rows(self) -> np.ndarray:
        """The array row of each entry of an array-backed listing (`file[i]` -> i)."""
        return np.asarray([int(p.rsplit("[", 1)[1][:-1]) for p in self.paths], dtype=np.int64)


def numbered_lines(path: Path):
    """(line number, stripped line) for every non-empty line of a text listing."""
    with open(path, encoding="utf-8") as f:
        for n, raw in enumerate(f, 1):
            line = raw.strip()
            if line:
                yield n, line


def read_split_file(cfg, path: Path, base: Path) -> Listing:
    """Parse a `<relative image path> <int label>` split file (VTAB-1k's and NOAH's lists), paths joined to
    `base`; every malformed line is an error naming the file and line."""
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


def check_labels(cfg, listing: Listing) -> None:
    """Every label in [0, num_classes); the error names the first offending entry."""
    bad = np.flatnonzero((listing.labels < 0) | (listing.labels >= cfg.num_classes))
    if len(bad):
        i = int(bad[0])
        raise DataError(f"dataset {cfg.name!r}: {listing.origin(i)}: label {int(listing.labels[i])} out of range "
                        f"for {cfg.num_classes} classes (valid: 0..{cfg.num_classes - 1}); "
                        f"{len(bad)} label(s) out of range in this split; see {README}")


def stat_files(cfg, listing: Listing) -> Listing:
    """`listing` with every image's (size, mtime_ns), from one `os.stat` each: the pixel cache's and the
    content hash's keys reuse them. A listed image that is not a file is an error naming it and its line."""
    stats = []
    for i, p in enumerate(listing.paths):
        try:
            st = os.stat(p)
        except OSError:
            st = None
        if st is None or not stat.S_ISREG(st.st_mode):
            n = sum(not os.path.isfile(q) for q in listing.paths[i:])
            raise DataError(f"dataset {cfg.name!r}: {listing.origin(i)}: image {p} not found "
                            f"({n} listed images missing); see {README}")
        stats.append((st.st_size, st.st_mtime_ns))
    return dataclasses.replace(listing, stats=stats)


def check_size(cfg, split: str, n: int, source: str) -> None:
    """The split has the number of images the config expects (a missing or 0 entry: any, but not none)."""
    expected = cfg.splits.get(split, 0)
    if n == 0 or (expected and n != expected):
        raise DataError(f"dataset {cfg.name!r}: split {split!r} ({source}) has {n} images, expected "
                        f"{expected or 'at least one'}; an incomplete copy? see {README}")


__all__ = ["OFFICIAL", "SPLITS", "TRAINING", "Listing", "check_labels", "check_size", "numbered_lines",
           "read_split_file", "stat_files"]
