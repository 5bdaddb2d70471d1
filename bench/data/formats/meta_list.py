"""NOAH's list-file format: few-shot, domain-generalisation and ImageNet lists
(ZhangYuanhan-AI/NOAH: lib/datasets.py; data/few-shot/, data/domain-generalization/).

    <dataset folder>/annotations/train_meta.list.num_shot_<k>.seed_<s>   training lists (k shots per class)
    <dataset folder>/annotations/val_meta.list, test_meta.list
    <dataset folder>/images/<relative path>                           the images the lists name

Each line is `<path relative to the image folder> <0-based label>`; the image folder is
`dataset.image_dir` (NOAH: `images/`; the dataset folder itself for Stanford Cars, whose lists
start with cars_train/ or cars_test/, and for the domain-generalisation targets), or per split
`dataset.split_dirs` (few-shot ImageNet: train/ for training, val/ for evaluation). Training reads the shots/seed list
(`dataset.shots`, `dataset.fewshot_seed`; `shots: 0` reads `train_meta.list`), `val` reads
`val_meta.list`, `test` reads `test_meta.list`. NOAH trains on the whole shots list and scores
`test_meta.list`, so `trainval` is the training list too. The list seed picks which images were
drawn; it is independent of the run's seed.
"""
from pathlib import Path

from bench.data.errors import README, DataError
from bench.data.listing import TRAINING, Listing, read_split_file
from bench.data.roots import dataset_root, missing

EXPECTED = ("annotations/train_meta.list.num_shot_<k>.seed_<s>, val_meta.list and test_meta.list "
            "(lines '<path under images/> <label>') and images/ holding what they list")


def list_name(cfg, split: str) -> str:
    if split in cfg.split_lists:  # e.g. few-shot ImageNet scores val_meta.list as its test split
        return cfg.split_lists[split]
    if split in TRAINING:
        return f"train_meta.list.num_shot_{cfg.shots}.seed_{cfg.fewshot_seed}" if cfg.shots else "train_meta.list"
    return f"{split}_meta.list"


def available(folder: Path) -> str:
    """The shots/seed lists present, for an error message: `k=1 seeds 0,1,2; k=2 ...`."""
    found: dict[int, list[int]] = {}
    for p in folder.glob("train_meta.list.num_shot_*.seed_*"):
        try:
            k, s = p.name.removeprefix("train_meta.list.num_shot_").split(".seed_")
            found.setdefault(int(k), []).append(int(s))
        except ValueError:
            continue
    return "; ".join(f"shots {k}: seeds {','.join(map(str, sorted(v)))}" for k, v in sorted(found.items())) or "none"


def list_split(cfg, split: str) -> Listing:
    root = dataset_root(cfg)
    if not root.is_dir():
        raise missing(cfg, root, EXPECTED)
    path = root / "annotations" / list_name(cfg, split)
    if not path.is_file():
        if split in TRAINING and cfg.shots:
            raise DataError(f"dataset {cfg.name!r}: no list for dataset.shots={cfg.shots} dataset.fewshot_seed="
                            f"{cfg.fewshot_seed}: {path} not found; lists present: {available(path.parent)}; "
                            f"see {README}")
        raise missing(cfg, path, EXPECTED)
    return read_split_file(cfg, path, root / cfg.split_dirs.get(split, cfg.image_dir))


def read_list(cfg, path: Path, images: Path) -> Listing:
    """Any NOAH list (the domain-generalisation targets' `val_meta.list`), paths under `images`."""
    if not path.is_file():
        raise DataError(f"dataset {cfg.name!r}: {path} not found; expected a NOAH list ('<path under images/> "
                        f"<label>' per line); see {README}")
    return read_split_file(cfg, path, images)
