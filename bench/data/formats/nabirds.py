"""NABirds in its official layout: CUB's files (bench/data/formats/cub.py), with the 555 class ids it
uses remapped to sorted order instead of CUB's 1-based labels."""
from collections.abc import Iterator

from bench.data.formats import cub
from bench.data.listing import Listing


def list_splits(cfg, splits) -> Iterator[tuple[str, Listing]]:
    return cub.list_splits(cfg, splits, one_based=False)
