"""Real datasets on disk: format registry, validated split listings, and ready-to-train Datasets.

`listing(cfg, split)` is the one place a split is read and validated (split present in the
format, size as configured, labels in range, every listed image present); `load_split` and the
`check` command both go through it, so a broken dataset fails the same way in both, before any
training starts. `load_split` then picks the pixel source: the decode cache for deterministic
pixels (VTAB-1k, FGVC evaluation), the variable-size cache or the files for augmented training,
or with `batch_aug` the fixed-size cache, augmented a batch at a time.
"""
import hashlib
import os
from collections import Counter
from dataclasses import dataclass
from functools import partial
from typing import Callable

import numpy as np
from PIL import Image

from bench.data import cache, cifar, fgvc, folders, jpeg, meta_list, subset, version, vtab
from bench.data.fingerprint import fingerprint, relative_ids
from bench.data.datasets import ImageDataset, PixelDataset, open_rgb
from bench.data.device import as_batches
from bench.data.files import (README, DataError, Listing, check_exists, check_labels, check_size, dataset_root)
from bench.data.pipeline import eval_pixels, eval_transform, to_uint8, train_transform, validate

ALL = ("train", "val", "trainval", "test")
MANIFEST = "manifest.json"  # written by `python -m bench.data prepare` (bench/data/prepare.py) beside the splits
OFFICIAL = ("trainval", "test")


@dataclass(frozen=True)
class Format:
    splits: tuple[str, ...]  # the splits this format has
    list: Callable | None  # (cfg, split) -> Listing; None: images come as arrays (CIFAR)
    listed_files: bool = True  # paths come from a list file, so each must be checked to exist


FORMATS = {
    "vtab_txt": Format(ALL, vtab.list_split),
    "meta_list": Format(ALL, meta_list.list_split),  # NOAH's few-shot and domain-generalisation lists
    "fgvc_json": Format(ALL, fgvc.list_json),
    "cub": Format(OFFICIAL, partial(fgvc.list_official, one_based=True)),
    "nabirds": Format(OFFICIAL, partial(fgvc.list_official, one_based=False)),
    "stanford_dogs": Format(OFFICIAL, fgvc.list_dogs),
    "class_folders": Format(OFFICIAL, folders.list_split, listed_files=False),
    "cifar100_python": Format(OFFICIAL, None, listed_files=False),
}
CACHE_MODES = ("none", "memory", "disk")
# A cached, un-augmented split up to this many bytes of uint8 pixels is read into memory as one
# tensor and normalised per batch (bench/data/device.py: the same bits as normalising up front, at
# a quarter of the memory: VTAB-1k's train800val200 at 224 x 224 is 150 MB), so training and
# evaluation slice batches out of it; larger splits (most VTAB test sets) stay memory-mapped.
IN_MEMORY_BYTES = 2**29
BAD_IMAGE_MODES = ("error", "skip")


def get_format(cfg) -> Format:
    if cfg.format not in FORMATS:
        raise ValueError(f"dataset {cfg.name!r}: unknown format {cfg.format!r}; valid: {sorted(FORMATS)}")
    return FORMATS[cfg.format]


def require_split(cfg, split: str) -> Format:
    fmt = get_format(cfg)
    if split not in fmt.splits:
        raise DataError(f"dataset {cfg.name!r}: format {cfg.format!r} has no {split!r} split (it has "
                        f"{list(fmt.splits)}). The `val` protocol needs train and val splits: use protocol=paper, "
                        f"or for FGVC the VPT JSON splits (dataset.format=fgvc_json); see {README}")
    return fmt


def listing(cfg, split: str, check_files: bool = True) -> Listing:
    """The validated listing of one split.

    Raises:
        DataError: missing files, malformed lines, labels out of range, a wrong split size or a
            missing image, each naming the file (and line).
    """
    fmt = require_split(cfg, split)
    if fmt.list is None:
        images, labels, path = cifar.load(cfg, split)
        lst = Listing([f"{path}[{i}]" for i in range(len(labels))], labels, None, [path])
    else:
        lst = fmt.list(cfg, split)
    check_size(cfg, split, len(lst), ", ".join(map(str, lst.sources)) or str(dataset_root(cfg)))
    lst = subset.apply(cfg, split, lst)  # dataset.train_subset: after the size check, which is the full split's
    check_labels(cfg, lst)
    if check_files and fmt.listed_files:
        check_exists(cfg, lst)
    return lst


def split_identity(cfg, lst: Listing) -> dict:
    """A split's fingerprint (images and labels) and content hash (their bytes), both blind to where the data lies."""
    root = dataset_root(cfg)
    return {"fingerprint": fingerprint(relative_ids(lst.paths, root), lst.labels),
            "content": version.split_content(cfg, lst, root, cache.cache_dir(cfg))}


def manifest(lst: Listing) -> str:
    """sha1 of the split's listing (paths relative to nothing: as listed, with labels) for the record."""
    h = hashlib.sha1()
    for p, y in zip(lst.paths, lst.labels.tolist()):
        h.update(f"{p}\0{y}\n".encode())
    return h.hexdigest()


# --- picklable pixel sources (DataLoader workers may pickle the dataset) ---------------------
class _Files:
    def __init__(self, paths: list[str]):
        self.paths = paths

    def __call__(self, i: int) -> Image.Image:
        return open_rgb(self.paths[i])


class _Arrays:
    def __init__(self, images: np.ndarray, index: np.ndarray | None = None):
        self.images, self.index = images, index

    def __call__(self, i: int) -> Image.Image:
        j = i if self.index is None else self.index[i]
        return Image.fromarray(np.asarray(self.images[j]))


class _Flat:
    def __init__(self, flat, offsets, shapes, index):
        self.flat, self.offsets, self.shapes, self.index = flat, offsets, shapes, index

    def __call__(self, i: int) -> Image.Image:
        j = self.index[i]
        h, w, c = self.shapes[j]
        return Image.fromarray(np.asarray(self.flat[self.offsets[j]:self.offsets[j] + h * w * c]).reshape(h, w, c))


class _Origin:
    def __init__(self, lst: Listing, index: np.ndarray | None = None):
        self.lst, self.index = lst, index

    def __call__(self, i: int) -> str:
        return self.lst.origin(i if self.index is None else int(self.index[i]))


def _shrink(img: Image.Image, short: int) -> np.ndarray:
    """(H, W, 3) uint8 with the shorter side reduced to `short` (never enlarged)."""
    w, h = img.size
    if min(w, h) > short:
        scale = short / min(w, h)
        img = img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BICUBIC)
    return np.asarray(img, dtype=np.uint8)


def load_split(cfg, split: str, mean, std, train: bool | None = None):
    """One split as a Dataset of (normalised float image, label); `train` (default: the train
    and trainval splits) applies the configured training augmentation."""
    validate(cfg)
    for key, valid in (("cache", CACHE_MODES), ("on_bad_image", BAD_IMAGE_MODES)):
        if getattr(cfg, key) not in valid:
            raise ValueError(f"dataset {cfg.name!r}: {key}={getattr(cfg, key)!r}; valid: {list(valid)}")
    augment = (split in ("train", "trainval") if train is None else train) and cfg.train_aug != "none"
    lst = listing(cfg, split)
    desc = f"{cfg.name} {split}"
    suffixes = Counter(os.path.splitext(q)[1].lower() for q in lst.paths) if cfg.format != "cifar100_python" else {}
    info = {"split": split, "images": len(lst), "sources": [str(s) for s in lst.sources], "sha1": manifest(lst),
            **split_identity(cfg, lst),
            "image_types": dict(suffixes),  # JPEG vs PNG changes results (anchors.md 0, 5)
            "pixels": jpeg.pixel_format(lst.paths) if cfg.format != "cifar100_python" else {"format": "array"}}
    images = cifar.load(cfg, split)[0] if cfg.format == "cifar100_python" else None
    # a subset of the CIFAR arrays (dataset.train_subset): each listed "file[i]" names its row
    rows = np.asarray([int(p.rsplit("[", 1)[1][:-1]) for p in lst.paths]) if images is not None else None
    source = _Arrays(images, rows) if images is not None else _Files(lst.paths)
    skip = cfg.on_bad_image == "skip"
    settings = {"format": cfg.format, "split": split, "image_size": cfg.image_size, "resize": cfg.resize,
                "crop_pct": cfg.crop_pct, "interpolation": cfg.interpolation}
    if images is not None:  # the arrays' file stands in for the per-image stats of the cache key
        st = lst.sources[0].stat()
        settings["source"] = [str(lst.sources[0]), st.st_size, st.st_mtime_ns]

    def cached_pixels() -> PixelDataset:
        """The split's deterministic evaluation pixels from the fixed-size cache (unreadable ones left out)."""
        to_pixels = eval_pixels(cfg)
        pixels, ok = cache.fixed(cfg, lst, lambda i: to_uint8(to_pixels(source(i))),
                                 (3, cfg.image_size, cfg.image_size), settings, desc)
        return PixelDataset(pixels, lst.labels, mean, std, np.flatnonzero(ok), cfg.num_workers, int((~ok).sum()))

    if augment and cfg.batch_aug:  # fixed-size pixels, augmented a batch at a time (bench/data/device.py)
        if cfg.train_aug != "simple" or cfg.cache == "none":
            raise ValueError(f"dataset {cfg.name!r}: batch_aug=true needs train_aug=simple (got {cfg.train_aug!r}) "
                             f"and a pixel cache, cache=memory or disk (got {cfg.cache!r})")
        ds = as_batches(cached_pixels(), augment="simple")
    elif not augment:
        if cfg.cache == "none":
            ds = ImageDataset(source, lst.labels, eval_transform(cfg, mean, std), _Origin(lst), cfg.name, skip,
                              cfg.num_workers)
        else:
            ds = cached_pixels()
            if len(ds) * int(np.prod(ds.pixels.shape[1:])) <= IN_MEMORY_BYTES:
                ds = as_batches(ds)
    elif cfg.cache != "none" and cfg.cache_short_side > 0 and images is None:
        flat, offsets, shapes, ok = cache.variable(
            cfg, lst, lambda i: _shrink(source(i), cfg.cache_short_side),
            settings | {"short_side": cfg.cache_short_side}, desc)
        keep = np.flatnonzero(ok)
        ds = ImageDataset(_Flat(flat, offsets, shapes, keep), lst.labels[keep], train_transform(cfg, mean, std),
                          _Origin(lst, keep), cfg.name, skip, cfg.num_workers, int((~ok).sum()))
    else:
        ds = ImageDataset(source, lst.labels, train_transform(cfg, mean, std), _Origin(lst), cfg.name, skip,
                          cfg.num_workers)
    ds.info = info
    return ds


def describe(cfg, datasets: dict) -> dict:
    """What a run read, for its record: format, root, pixel format and JPEG quality, the data version
    (bench/data/version.py), the prepared copy's source (its manifest.json) where there is one, per split
    the image count, the files it was listed from, a sha1 of the listing, its fingerprint and content
    hash, and how many unreadable images were skipped."""
    splits = {s: dict(getattr(d, "info", {"images": len(d)})) for s, d in datasets.items()}
    formats = {(d.get("pixels") or {}).get("format") for d in splits.values()} - {None}
    qualities = sorted({(d.get("pixels") or {}).get("jpeg_quality") for d in splits.values()} - {None})
    return {"format": cfg.format, "root": str(dataset_root(cfg)) if cfg.format != "generated" else None,
            "pixel_format": "/".join(sorted(formats)) or None, "jpeg_quality": qualities[0] if len(qualities) == 1
            else qualities or None, "version": version.version(splits), "manifest": prepared_source(cfg),
            "splits": splits, "bad_images_skipped": sum(getattr(d, "bad_images", 0) for d in datasets.values())}


def prepared_source(cfg) -> dict | None:
    """The source and converter `python -m bench.data prepare` recorded in the dataset's manifest.json, if any."""
    import json

    root = vtab.task_root(cfg) if cfg.format == "vtab_txt" else dataset_root(cfg)
    try:
        m = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return {k: m.get(k) for k in ("source", "converter", "pixel_format", "jpeg_quality")} if isinstance(m, dict) else None


__all__ = ["FORMATS", "DataError", "describe", "listing", "load_split"]
