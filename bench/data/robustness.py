"""Robustness of an ImageNet-1k fine-tuned model: ImageNet-A, ImageNet-R and ImageNet-C.

As the SSF code does it (dongzelian/SSF:validate_ood.py, anchors.md 1.4):
- ImageNet-A (7,500 images) and ImageNet-R (30,000), 200 classes each, are class folders named
  by WordNet id. The model's 1000-way logits are restricted to those 200 classes (the arg-max
  is taken over the 200 columns) and top-1 is scored against the 200-way label. The class
  lists come from timm's package data (`imagenet_{a,r}_synsets.txt` and `_indices.txt`), and
  an ImageNet-1k class index is the position of its WordNet id in sorted order.
- ImageNet-C is `<root>/<corruption>/<severity 1-5>/<wnid>/<image>`. The corruption error of
  corruption c is CE_c = sum_s E_{s,c} / sum_s E^AlexNet_{s,c}, and mCE is the mean of CE_c over
  the 15 standard corruptions (Hendrycks & Dietterich, ICLR 2019), in percent. The 4 extra
  corruptions are scored when present but never enter the mCE.

This module lists and checks the targets and holds the arithmetic; scoring a model on them is
evaluation's (bench/train/evaluate.py: `evaluate_robustness`).
"""
import importlib.util
from pathlib import Path

import numpy as np

from bench.data.errors import README, DataError
from bench.data.formats.class_folders import list_folder, subfolders
from bench.data.listing import Listing
from bench.data.roots import data_root

STANDARD = ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
            "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression")
EXTRA = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
SEVERITIES = (1, 2, 3, 4, 5)
# AlexNet's top-1 error on each corruption, averaged over the five severities: the normaliser
# of the mCE, from hendrycks/robustness as hard-coded in dongzelian/SSF:utils/mce_utils.py.
ALEXNET_ERR = {
    "gaussian_noise": 0.886428, "shot_noise": 0.894468, "impulse_noise": 0.922640, "defocus_blur": 0.819880,
    "glass_blur": 0.826268, "motion_blur": 0.785948, "zoom_blur": 0.798360, "snow": 0.866816, "frost": 0.826572,
    "fog": 0.819324, "brightness": 0.564592, "contrast": 0.853204, "elastic_transform": 0.646056,
    "pixelate": 0.717840, "jpeg_compression": 0.606500,
}
SUBSETS = {"imagenet_a": "imagenet_a", "imagenet_r": "imagenet_r"}  # name -> timm _info file prefix
EXPECTED_IMAGES = {"imagenet_a": 7500, "imagenet_r": 30000}  # anchors.md 3 (NOAH's val_meta.list lines)
EVALUATIONS = ("imagenet_a", "imagenet_r", "imagenet_c")


def _timm_info(name: str) -> list[str]:
    """Lines of one of timm's `data/_info` files, read without importing timm."""
    spec = importlib.util.find_spec("timm")
    path = Path(spec.submodule_search_locations[0]) / "data" / "_info" / name
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def imagenet_classes() -> list[str]:
    """The 1000 ImageNet-1k WordNet ids in class-index order (sorted)."""
    return _timm_info("imagenet_synsets.txt")


def subset_classes(name: str) -> tuple[list[str], np.ndarray]:
    """(WordNet ids, their ImageNet-1k indices) of the 200 classes of ImageNet-A or -R."""
    prefix = SUBSETS[name]
    wnids, indices = _timm_info(f"{prefix}_synsets.txt"), _timm_info(f"{prefix}_indices.txt")
    all_wnids = imagenet_classes()
    idx = np.asarray([int(i) for i in indices], dtype=np.int64)
    assert [all_wnids[i] for i in idx] == wnids, f"timm's {prefix} class files disagree"
    return wnids, idx


def target_root(cfg, name: str, kind: str = "robustness") -> Path:
    """The folder of evaluation `name` in `cfg.<kind>` (robustness, domain_shift), under the data root unless absolute."""
    folders = getattr(cfg, kind)
    if name not in folders:
        raise KeyError(f"dataset {cfg.name!r} has no {kind} evaluation {name!r}; configured: {sorted(folders)}")
    root = Path(folders[name]).expanduser()
    return root if root.is_absolute() else data_root(cfg) / root


def _missing(cfg, name: str, path: Path, expected: str) -> DataError:
    return DataError(f"robustness set {name!r} (of {cfg.name!r}): {path} not found. Expected {expected}. "
                     f"The data root is {data_root(cfg)}; see {README}")


def subset_listing(cfg, name: str) -> Listing:
    """ImageNet-A or -R: labels are 200-way (the position of the class in the subset's list)."""
    root = target_root(cfg, name)
    if not root.is_dir():
        raise _missing(cfg, name, root, "200 folders named by WordNet id (n01498041/, ...) holding the images")
    wnids, _ = subset_classes(name)
    listing, _ = list_folder(cfg, root, wnids)
    expected = cfg.splits.get(name, EXPECTED_IMAGES[name])  # dataset.splits may set it (0: any)
    if len(listing) == 0 or (expected and len(listing) != expected):
        raise DataError(f"robustness set {name!r}: {root} holds {len(listing)} images, expected {expected}; "
                        f"an incomplete copy? see {README}")
    return listing


def corruption_listing(cfg, corruption: str, severity: int) -> Listing:
    """One ImageNet-C folder; labels are ImageNet-1k indices."""
    root = target_root(cfg, "imagenet_c")
    folder = root / corruption / str(severity)
    if not folder.is_dir():
        raise _missing(cfg, "imagenet_c", folder, "<corruption>/<severity 1-5>/<wnid>/<image> for the 15 standard "
                       f"corruptions ({', '.join(STANDARD)})")
    return list_folder(cfg, folder, imagenet_classes())[0]


def corruptions_present(cfg) -> list[str]:
    root = target_root(cfg, "imagenet_c")
    if not root.is_dir():
        raise _missing(cfg, "imagenet_c", root, "<corruption>/<severity 1-5>/<wnid>/<image>")
    found = set(subfolders(root))
    absent = [c for c in STANDARD if c not in found]
    if absent:
        raise _missing(cfg, "imagenet_c", root / absent[0], f"all 15 standard corruptions; missing: {absent}")
    return [c for c in (*STANDARD, *EXTRA) if c in found]


def corruption_target(corruption: str, severity: int) -> str:
    """The name of one ImageNet-C folder as a scored target (`imagenet_c_fog_3`): in predictions files."""
    return f"imagenet_c_{corruption}_{severity}"


# --- arithmetic --------------------------------------------------------------------------------
def masked_predictions(logits, indices) -> np.ndarray:
    """Arg-max over the 1000-way logits restricted to `indices` (N, 1000) -> (N,) positions in `indices`."""
    logits = np.asarray(logits)
    return logits[:, np.asarray(indices)].argmax(axis=1)


def corruption_error(errors: dict[int, float], corruption: str) -> float:
    """CE_c = sum over severities of the model's error / sum of AlexNet's (errors in percent) -> percent."""
    if sorted(errors) != list(SEVERITIES):
        raise ValueError(f"{corruption}: errors for severities {sorted(errors)}, need {list(SEVERITIES)}")
    return 100.0 * sum(errors.values()) / (len(SEVERITIES) * 100.0 * ALEXNET_ERR[corruption])


def mce(errors: dict[str, dict[int, float]]) -> tuple[float, dict[str, float]]:
    """(mCE in percent over the 15 standard corruptions, CE per corruption) from top-1 errors in percent."""
    absent = [c for c in STANDARD if c not in errors]
    if absent:
        raise ValueError(f"mCE needs all 15 standard corruptions; missing {absent}")
    ce = {c: corruption_error(errors[c], c) for c in STANDARD}
    return float(np.mean(list(ce.values()))), ce


# --- domain generalisation: NOAH's target lists -------------------------------------------------
DOMAIN_TARGETS = ("imagenet_v2", "imagenet_sketch", "imagenet_a", "imagenet_r")


def domain_listing(cfg, name: str) -> Listing:
    """`<folder>/annotations/val_meta.list` of a domain-generalisation target, paths relative to the folder
    (NOAH's lib/datasets.py for its ImageNet-derived targets), labels ImageNet-1k indices."""
    import dataclasses

    from bench.data.formats.meta_list import read_list
    from bench.data.listing import check_labels, stat_files

    if name not in DOMAIN_TARGETS:
        raise KeyError(f"unknown domain-generalisation target {name!r}; valid: {list(DOMAIN_TARGETS)}")
    root = target_root(cfg, name, "domain_shift")
    listing = read_list(cfg, root / "annotations" / "val_meta.list", root)
    check_labels(dataclasses.replace(cfg, num_classes=1000), listing)  # ImageNet-1k labels, whatever the source's classes
    return stat_files(cfg, listing)
