"""FGVC: the VPT JSON splits and the official layouts the SSF code reads (anchors.md 1.4 and 2).

`fgvc_json` (VPT, KMnP/vpt:src/data/datasets/json_dataset.py): `<root>/{train,val,test}.json`,
each a JSON object {relative image path: class id}, paths relative to `<root>/<image_dir>`
(CUB and NABirds `images`, Dogs `Images`, Flowers and Cars the root itself). Class ids are
remapped to contiguous sorted order (over the three files, so every split agrees). trainval =
train.json + val.json = the official training set.

Official layouts (train/test only; trainval = the official training set):
- `cub`: CUB_200_2011/{images.txt, image_class_labels.txt, train_test_split.txt, images/}, labels 1-based.
- `nabirds`: nabirds/{images.txt, image_class_labels.txt, train_test_split.txt, images/}; the
  555 class ids used are remapped to sorted order.
- `stanford_dogs`: {train_list.mat, test_list.mat, Images/}, labels 1-based.
Flowers and Cars in the SSF layout are class folders (bench/data/folders.py).
"""
import json
from pathlib import Path

import numpy as np

from bench.data.files import README, DataError, Listing, dataset_root, missing, numbered_lines

JSON_FILES = {"train": ("train.json",), "val": ("val.json",), "trainval": ("train.json", "val.json"),
              "test": ("test.json",)}
JSON_EXPECTED = "train.json, val.json, test.json ({relative image path: class id}) and the images they list"
OFFICIAL_FILES = ("images.txt", "image_class_labels.txt", "train_test_split.txt")
OFFICIAL_EXPECTED = ", ".join(OFFICIAL_FILES) + " and images/"
DOGS_FILES = {"trainval": "train_list.mat", "test": "test_list.mat"}
DOGS_EXPECTED = "train_list.mat, test_list.mat and Images/"


# --- VPT JSON --------------------------------------------------------------------------------
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


def list_json(cfg, split: str) -> Listing:
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
    paths, labels, where, sources = [], [], [], []
    for name in JSON_FILES[split]:
        sources.append(root / name)
        for key, value in files[name].items():
            paths.append(str(base / key))
            labels.append(contiguous[int(value)])
            where.append(f"{root / name} entry {key!r}")
    return Listing(paths, np.asarray(labels, dtype=np.int64), where, sources)


# --- official CUB-200-2011 and NABirds ------------------------------------------------------
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


def list_official(cfg, split: str, one_based: bool) -> Listing:
    """CUB (`one_based`: labels 1..C) or NABirds (class ids remapped to sorted order)."""
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
    want = 1 if split == "trainval" else 0
    paths, labels, where = [], [], []
    for key, (rel, n) in images.items():
        flag, fn = is_train[key]
        flag = _int(cfg, files[2], flag, fn)
        if flag not in (0, 1):
            raise DataError(f"dataset {cfg.name!r}: {files[2]}:{fn}: split flag {flag} is not 0 (test) or 1 (train); "
                            f"see {README}")
        if flag == want:
            paths.append(str(root / "images" / rel))
            labels.append(contiguous[label_of[key]])
            where.append(f"{files[0]}:{n} ({files[1]}:{classes[key][1]})")
    return Listing(paths, np.asarray(labels, dtype=np.int64), where, files)


# --- official Stanford Dogs -----------------------------------------------------------------
def list_dogs(cfg, split: str) -> Listing:
    from scipy.io import loadmat

    root = dataset_root(cfg)
    path = root / DOGS_FILES[split]
    if not path.is_file():
        raise missing(cfg, path, DOGS_EXPECTED)
    try:
        mat = loadmat(str(path))
        files = [str(np.asarray(f).ravel()[0]) for f in np.asarray(mat["file_list"]).ravel()]
        labels = np.asarray(mat["labels"]).ravel().astype(np.int64) - 1  # 1-based in the .mat lists
    except (KeyError, ValueError, IndexError, OSError) as e:
        raise DataError(f"dataset {cfg.name!r}: {path}: not a Stanford Dogs list with 'file_list' and 'labels' "
                        f"({type(e).__name__}: {e}); see {README}") from None
    if len(files) != len(labels):
        raise DataError(f"dataset {cfg.name!r}: {path}: {len(files)} files but {len(labels)} labels; see {README}")
    where = [f"{path} entry {i + 1}" for i in range(len(files))]
    return Listing([str(root / "Images" / f) for f in files], labels, where, [path])
