"""The on-disk formats, one module each, named by its `dataset.format` key (conf/dataset/**).

A format says which splits it has and lists any of them (`list(cfg, splits)` yields (split,
Listing) in the order asked, one at a time, so a split is checked before the next is read): a
format whose split files share one parse (FGVC's JSON files, CUB's and NABirds' three tables)
lists every requested split from that one parse, so a run reads each file once.
"""
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Callable

from bench.data.errors import README, DataError
from bench.data.formats import (cifar100_python, class_folders, cub, fgvc_json, meta_list, nabirds, stanford_dogs,
                                vtab_txt)
from bench.data.listing import OFFICIAL, SPLITS, Listing


def each(list_split: Callable) -> Callable:
    """A format's `list` from its one-split function: the splits listed one by one."""
    def list_splits(cfg, splits) -> Iterator[tuple[str, Listing]]:
        for s in splits:
            yield s, list_split(cfg, s)
    return list_splits


@dataclass(frozen=True)
class Format:
    splits: tuple[str, ...]  # the splits this format has
    list: Callable  # (cfg, splits) -> iterator of (split, Listing)
    listed_files: bool = True  # paths come from a list file, so each must be checked to exist
    arrays: bool = False  # images come as arrays inside the listed files (`Listing.arrays`), not one file each


FORMATS = {
    "vtab_txt": Format(SPLITS, each(vtab_txt.list_split)),
    "meta_list": Format(SPLITS, each(meta_list.list_split)),  # NOAH's few-shot and domain-generalisation lists
    "fgvc_json": Format(SPLITS, fgvc_json.list_splits),
    "cub": Format(OFFICIAL, cub.list_splits),
    "nabirds": Format(OFFICIAL, nabirds.list_splits),
    "stanford_dogs": Format(OFFICIAL, each(stanford_dogs.list_split)),
    "class_folders": Format(OFFICIAL, each(class_folders.list_split), listed_files=False),
    "cifar100_python": Format(OFFICIAL, each(cifar100_python.list_split), listed_files=False, arrays=True),
}


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


__all__ = ["FORMATS", "Format", "get_format", "require_split"]
