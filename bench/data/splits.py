"""A run's splits: listed and checked once, then read as torch datasets, each with its record entry.

`list_splits(cfg, names)` is the one place splits are read and validated (split present in the
format, size as configured, labels in range, every listed image a file, stat-ed once); a run
calls it before building the model, so a broken dataset stops the run before training, and hands
its listings to `load_splits`, which picks each split's pixel source: the decode cache for
deterministic pixels (VTAB-1k, FGVC evaluation), the variable-size cache or the files for
augmented training, or with `batch_aug` the fixed-size cache, augmented a batch at a time. The
`check` command and the sweeper's data version go through `list_splits` too, so a broken
dataset fails the same way everywhere.
"""
import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from bench.data import cache, generated, jpeg, subset, version
from bench.data.fingerprint import fingerprint, relative_ids
from bench.data.formats import get_format, require_split, vtab_txt
from bench.data.listing import SPLITS, TRAINING, Listing, check_labels, check_size, stat_files
from bench.data.on_device import as_batches
from bench.data.roots import dataset_root
from bench.data.errors import BAD_IMAGE_MODES, DataError
from bench.data.torch_datasets import ArrayImages, FileImages, FlatImages, ImageDataset, Origins, PixelDataset
from bench.data.transforms import eval_pixels, eval_transform, to_uint8, train_transform, validate

MANIFEST = "manifest.json"  # written by `python -m bench.data prepare` (bench/data/prepare.py) beside the splits
# A cached, un-augmented split up to this many bytes of uint8 pixels is read into memory as one
# tensor and normalised per batch (bench/data/on_device.py: the same bits as normalising up front, at
# a quarter of the memory: VTAB-1k's train800val200 at 224 x 224 is 150 MB), so training and
# evaluation slice batches out of it; larger splits (most VTAB test sets) stay memory-mapped.
IN_MEMORY_BYTES = 2**29


@dataclass(frozen=True)
class Split:
    """One split as a run reads it: its torch dataset and its entry in the record's `data.splits`."""
    name: str
    dataset: Dataset
    # images, fingerprint; for data on disk also the files it was listed from, a sha1 of the listing,
    # its content hash, image types and pixel format (bench.data.describe)
    info: dict

    @property
    def bad_images(self) -> int:
        """Unreadable images skipped so far (on_bad_image=skip), counted by the dataset as it is read."""
        return self.dataset.bad_images


def list_splits(cfg, names, check_files: bool = True) -> dict[str, Listing]:
    """The validated listing of each split in `names` (each listed once, however often it is named).

    Raises:
        DataError: missing files, malformed lines, labels out of range, a wrong split size or a
            missing image, each naming the file (and line).
    """
    names = list(dict.fromkeys(names))
    if cfg.benchmark == "mini" or not names:  # generated in memory: nothing on disk to list
        return {}
    fmt = get_format(cfg)
    for split in names:
        require_split(cfg, split)
    out = {}
    for split, lst in fmt.list(cfg, names):  # each checked before the next is listed
        check_size(cfg, split, len(lst), ", ".join(map(str, lst.sources)) or str(dataset_root(cfg)))
        lst = subset.apply(cfg, split, lst)  # dataset.train_subset: after the size check, which is the full split's
        check_labels(cfg, lst)
        out[split] = stat_files(cfg, lst) if check_files and not fmt.arrays else lst
    return out


def listing(cfg, split: str, check_files: bool = True) -> Listing:
    """The validated listing of one split (`list_splits` for one)."""
    return list_splits(cfg, [split], check_files)[split]


def split_identity(cfg, lst: Listing) -> dict:
    """A split's fingerprint (images and labels) and content hash (their bytes), both blind to where the data lies."""
    root = dataset_root(cfg)
    return {"fingerprint": fingerprint(relative_ids(lst.paths, root), lst.labels),
            "content": version.split_content(cfg, lst, root, cache.cache_dir(cfg))}


def current_version(cfg, names) -> str | None:
    """The data version (bench/data/version.py) a run of `cfg` reading splits `names` would record now,
    or None when the data cannot be listed (a missing dataset: the run itself will say what is wrong).

    Used by the sweeper to tell whether a completed run was scored on the data there now.
    """
    names = sorted(set(names))
    if cfg.benchmark == "mini":
        return version.version({s: {"fingerprint": generated.split_fingerprint(cfg, s)} for s in names})
    try:
        return version.version({s: split_identity(cfg, lst) for s, lst in list_splits(cfg, names).items()})
    except (DataError, OSError, ValueError):
        return None


def manifest(lst: Listing) -> str:
    """sha1 of the split's listing (paths relative to nothing: as listed, with labels) for the record."""
    h = hashlib.sha1()
    for p, y in zip(lst.paths, lst.labels.tolist()):
        h.update(f"{p}\0{y}\n".encode())
    return h.hexdigest()


def _info(cfg, split: str, lst: Listing) -> dict:
    """The split's entry in the record: computed once per run, from the listing."""
    arrays = lst.arrays is not None
    suffixes = Counter(os.path.splitext(q)[1].lower() for q in lst.paths) if not arrays else {}
    return {"split": split, "images": len(lst), "sources": [str(s) for s in lst.sources], "sha1": manifest(lst),
            **split_identity(cfg, lst),
            "image_types": dict(suffixes),  # JPEG vs PNG changes results (anchors.md 0, 5)
            "pixels": jpeg.pixel_format(lst.paths) if not arrays else {"format": "array"}}


def _shrink(img: Image.Image, short: int) -> np.ndarray:
    """(H, W, 3) uint8 with the shorter side reduced to `short` (never enlarged)."""
    w, h = img.size
    if min(w, h) > short:
        scale = short / min(w, h)
        img = img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BICUBIC)
    return np.asarray(img, dtype=np.uint8)


def _dataset(cfg, split: str, lst: Listing, mean, std, augment: bool) -> Dataset:
    """The torch dataset of one listed split: its pixel source chosen as the module docstring says."""
    desc = f"{cfg.name} {split}"
    images = lst.arrays
    # a subset of the arrays (dataset.train_subset): each listed "file[i]" names its row
    source = ArrayImages(images, lst.rows()) if images is not None else FileImages(lst.paths)
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

    if augment and cfg.batch_aug:  # fixed-size pixels, augmented a batch at a time (bench/data/on_device.py)
        if cfg.train_aug != "simple" or cfg.cache == "none":
            raise ValueError(f"dataset {cfg.name!r}: batch_aug=true needs train_aug=simple (got {cfg.train_aug!r}) "
                             f"and a pixel cache, cache=memory or disk (got {cfg.cache!r})")
        return as_batches(cached_pixels(), augment="simple")
    if not augment:
        if cfg.cache == "none":
            return ImageDataset(source, lst.labels, eval_transform(cfg, mean, std), Origins(lst), cfg.name, skip,
                                cfg.num_workers)
        ds = cached_pixels()
        return as_batches(ds) if len(ds) * int(np.prod(ds.pixels.shape[1:])) <= IN_MEMORY_BYTES else ds
    if cfg.cache != "none" and cfg.cache_short_side > 0 and images is None:
        flat, offsets, shapes, ok = cache.variable(
            cfg, lst, lambda i: _shrink(source(i), cfg.cache_short_side),
            settings | {"short_side": cfg.cache_short_side}, desc)
        keep = np.flatnonzero(ok)
        return ImageDataset(FlatImages(flat, offsets, shapes, keep), lst.labels[keep], train_transform(cfg, mean, std),
                            Origins(lst, keep), cfg.name, skip, cfg.num_workers, int((~ok).sum()))
    return ImageDataset(source, lst.labels, train_transform(cfg, mean, std), Origins(lst), cfg.name, skip,
                        cfg.num_workers)


def load_splits(cfg, names, mean, std, *, listed: dict[str, Listing] | None = None,
                train: bool | None = None) -> dict[str, Split]:
    """Each split in `names`, normalised with the backbone's `mean` and `std` (per channel).

    Args:
        listed: the splits' listings from `list_splits` (a run lists them before building the model);
            any not given are listed here.
        train: apply the dataset's training augmentation; default: for the training splits
            (`train`, `trainval`). The mini benchmark has none.

    Raises:
        DataError: the dataset on disk is missing, incomplete or malformed (the message names the
            file and line, and points to the README section on preparing data).
    """
    names = list(dict.fromkeys(names))
    unknown = [s for s in names if s not in SPLITS]
    if unknown:
        raise KeyError(f"unknown split {unknown[0]!r}; valid: {list(SPLITS)}")
    if cfg.benchmark == "mini":
        return {s: Split(s, d, {"images": len(d), "fingerprint": generated.split_fingerprint(cfg, s)})
                for s, d in ((s, generated.dataset(cfg, s, mean, std)) for s in names)}
    validate(cfg)
    for key, valid in (("cache", cache.CACHE_MODES), ("on_bad_image", BAD_IMAGE_MODES)):
        if getattr(cfg, key) not in valid:
            raise ValueError(f"dataset {cfg.name!r}: {key}={getattr(cfg, key)!r}; valid: {list(valid)}")
    listed = dict(listed or {})
    todo = [s for s in names if s not in listed]
    if todo:
        listed |= list_splits(cfg, todo)
    out = {}
    for s in names:
        augment = (s in TRAINING if train is None else train) and cfg.train_aug != "none"
        out[s] = Split(s, _dataset(cfg, s, listed[s], mean, std, augment), _info(cfg, s, listed[s]))
    return out


def load_split(cfg, split: str, mean, std, *, train: bool | None = None) -> Dataset:
    """One split's torch dataset (`load_splits` for one split)."""
    return load_splits(cfg, [split], mean, std, train=train)[split].dataset


def describe(cfg, splits: dict[str, Split]) -> dict:
    """What a run read, for its record: format, root, pixel format and JPEG quality, the data version
    (bench/data/version.py), the prepared copy's source (its manifest.json) where there is one, per split
    the image count, the files it was listed from, a sha1 of the listing, its fingerprint and content
    hash, and how many unreadable images were skipped."""
    info = {s: dict(v.info) for s, v in splits.items()}
    skipped = sum(v.bad_images for v in splits.values())
    if cfg.benchmark == "mini":
        return {"format": "generated", "root": None, "bad_images_skipped": skipped, "pixel_format": "generated",
                "version": version.version(info), "splits": info}
    formats = {(d.get("pixels") or {}).get("format") for d in info.values()} - {None}
    qualities = sorted({(d.get("pixels") or {}).get("jpeg_quality") for d in info.values()} - {None})
    return {"format": cfg.format, "root": str(dataset_root(cfg)) if cfg.format != "generated" else None,
            "pixel_format": "/".join(sorted(formats)) or None, "jpeg_quality": qualities[0] if len(qualities) == 1
            else qualities or None, "version": version.version(info), "manifest": prepared_source(cfg),
            "splits": info, "bad_images_skipped": skipped}


def prepared_source(cfg) -> dict | None:
    """The source and converter `python -m bench.data prepare` recorded in the dataset's manifest.json, if any."""
    root = vtab_txt.task_root(cfg) if cfg.format == "vtab_txt" else dataset_root(cfg)
    try:
        m = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return {k: m.get(k) for k in ("source", "converter", "pixel_format", "jpeg_quality")} if isinstance(m, dict) else None


__all__ = ["IN_MEMORY_BYTES", "MANIFEST", "Split", "current_version", "describe", "list_splits", "listing", "load_split",
           "load_splits", "prepared_source", "split_identity"]
