"""CUB-200-2011 in its official layout, as the SSF code reads it (anchors.md 1.4 and 2); NABirds shares it.

    <root>/images.txt, image_class_labels.txt, train_test_split.txt   `<image id> <value>` per line
    <root>/images/<relative path>

Labels are 1-based in CUB (`one_based`); NABirds' class ids are remapped to sorted order
(bench/data/formats/nabirds.py). Only train/test exist: trainval = the official training set.
"""
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from bench.data.errors import README, DataError
from bench.data.listing import Listing, numbered_lines
from bench.data.roots import dataset_root, missing

OFFICIAL_FILES = ("images.txt", "image_class_labels.txt", "train_test_split.txt")
OFFICIAL_EXPECTED = ", ".join(OFFICIAL_FILES) + " and images/"


def _read_pairs(cfg, path: Path) -> dict[str, tuple[str, int]]:
    """`<id> <value>` per line -> {id: (value, line number)}; a malformed line is an error."""
    if not path.is_file():
        raise missing(cfg, path, OFFICIAL_EXPECTED)
    out = {}
    for n, line in numbered_lines(path):
        key, sep, value = line.partition(" ")
        if not sep or not value.strip():
            raise DataError(f"dataset {cfg.name!r}: {path}:{n}: malformed line {line!r}; expected "
                            f"'<image id> <value>'; see {README}")
        out[key] = (value.strip(), n)
    return out


def _int(cfg, path: Path, value: str, n: int) -> int:
    try:
        return int(value)
    except ValueError:
        raise DataError(f"dataset {cfg.name!r}: {path}:{n}: {value!r} is not an integer; see {README}") from None


def list_splits(cfg, splits, one_based: bool = True) -> Iterator[tuple[str, Listing]]:
    """CUB (`one_based`: labels 1..C) or NABirds (class ids remapped to sorted order): (split, listing) of
    each split, from one parse of the three files."""
    root = dataset_root(cfg)
    if not root.is_dir():
        raise missing(cfg, root, OFFICIAL_EXPECTED)
    files = [root / f for f in OFFICIAL_FILES]
    images, classes, is_train = (_read_pairs(cfg, f) for f in files)
    for f, table in ((files[1], classes), (files[2], is_train)):
        absent = [k for k in images if k not in table]
        if absent:
            raise DataError(f"dataset {cfg.name!r}: {f}: no line for image id {absent[0]!r} "
                            f"({files[0]}:{images[absent[0]][1]}); {len(absent)} ids missing; see {README}")
    label_of = {k: _int(cfg, files[1], v, n) for k, (v, n) in classes.items()}
    if one_based:
        contiguous = {c: c - 1 for c in set(label_of.values())}
    else:
        used = sorted({label_of[k] for k in images})
        if len(used) > cfg.num_classes:
            raise DataError(f"dataset {cfg.name!r}: {files[1]} uses {len(used)} class ids, expected "
                            f"{cfg.num_classes}; see {README}")
        contiguous = {c: i for i, c in enumerate(used)}
    for split in splits:
        want = 1 if split == "trainval" else 0
        paths, labels, where = [], [], []
        for key, (rel, n) in images.items():
            flag, fn = is_train[key]
            flag = _int(cfg, files[2], flag, fn)
            if flag not in (0, 1):
                raise DataError(f"dataset {cfg.name!r}: {files[2]}:{fn}: split flag {flag} is not 0 (test) or 1 "
                                f"(train); see {README}")
            if flag == want:
                paths.append(str(root / "images" / rel))
                labels.append(contiguous[label_of[key]])
                where.append(f"{files[0]}:{n} ({files[1]}:{classes[key][1]})")
        yield split, Listing(paths, np.asarray(labels, dtype=np.int64), where, files)
