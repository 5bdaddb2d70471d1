"""FGVC in the VPT JSON splits (KMnP/vpt:src/data/datasets/json_dataset.py; anchors.md 1.4 and 2).

    <root>/{train,val,test}.json      each a JSON object {relative image path: class id}

Paths are relative to `<root>/<image_dir>` (CUB and NABirds `images`, Dogs `Images`, Flowers and
Cars the root itself). Class ids are remapped to contiguous sorted order (over the three files,
so every split agrees). trainval = train.json + val.json = the official training set. The
official layouts the SSF code reads are `cub`, `nabirds`, `stanford_dogs` and, for Flowers and
Cars, `class_folders` (each its own module here).
"""
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from bench.data.errors import README, DataError
from bench.data.listing import Listing
from bench.data.roots import dataset_root, missing

JSON_FILES = {"train": ("train.json",), "val": ("val.json",), "trainval": ("train.json", "val.json"),
              "test": ("test.json",)}
JSON_EXPECTED = "train.json, val.json, test.json ({relative image path: class id}) and the images they list"


def _read_json(cfg, path: Path) -> dict:
    if not path.is_file():
        raise missing(cfg, path, JSON_EXPECTED)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"dataset {cfg.name!r}: {path}:{e.lineno}: not valid JSON ({e.msg}); see {README}") from None
    if not isinstance(data, dict):
        raise DataError(f"dataset {cfg.name!r}: {path}: expected a JSON object {{image path: class id}}, "
                        f"got {type(data).__name__}; see {README}")
    for key, value in data.items():
        if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).lstrip("-").isdigit():
            raise DataError(f"dataset {cfg.name!r}: {path}: entry {key!r}: class id {value!r} is not an integer; "
                            f"see {README}")
    return data


def list_splits(cfg, splits) -> Iterator[tuple[str, Listing]]:
    """(split, listing) of each split, from one parse of the three files (the class ids are remapped over all)."""
    root = dataset_root(cfg)
    if not root.is_dir():
        raise missing(cfg, root, JSON_EXPECTED)
    files = {name: _read_json(cfg, root / name) for name in ("train.json", "val.json", "test.json")}
    ids = sorted({int(v) for d in files.values() for v in d.values()})
    if len(ids) > cfg.num_classes:
        raise DataError(f"dataset {cfg.name!r}: {root}/{{train,val,test}}.json hold {len(ids)} distinct class ids, "
                        f"expected {cfg.num_classes}; label out of range; see {README}")
    contiguous = {c: i for i, c in enumerate(ids)}
    base = root / cfg.image_dir
    for split in splits:
        paths, labels, where, sources = [], [], [], []
        for name in JSON_FILES[split]:
            sources.append(root / name)
            for key, value in files[name].items():
                paths.append(str(base / key))
                labels.append(contiguous[int(value)])
                where.append(f"{root / name} entry {key!r}")
        yield split, Listing(paths, np.asarray(labels, dtype=np.int64), where, sources)
