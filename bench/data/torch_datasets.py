"""torch Datasets over the sources a split can come from; each yields (normalised float image, int label).

- `PixelDataset`: fixed-size uint8 pixels (cached or in memory), normalised per batch: no decoding.
- `ImageDataset`: images from a source (files, the variable-size cache, or an in-memory array),
  through a transform (random augmentation or the deterministic evaluation pipeline).
- `Tensors`: float images already in memory (the generated mini benchmark), or moved to the device.

The sources (`FileImages`, `ArrayImages`, `FlatImages`) and `Origins` are classes, not closures:
DataLoader workers may pickle the dataset.

Every dataset carries `labels` (int64 array), `num_workers` (for the DataLoader that reads it)
and `bad_images` (unreadable images skipped, a counter shared with DataLoader workers).
"""
import multiprocessing
import warnings
from typing import Callable

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, TensorDataset

from bench.data.errors import README, DataError
from bench.data.listing import Listing
from bench.data.transforms import normalize


class _Base(Dataset):
    def __init__(self, labels: np.ndarray, num_workers: int, skipped: int = 0):
        self.labels = np.asarray(labels, dtype=np.int64)
        self.num_workers = num_workers
        self._bad = multiprocessing.Value("q", skipped)  # shared with forked DataLoader workers

    @property
    def bad_images(self) -> int:
        return int(self._bad.value)

    def __len__(self) -> int:
        return len(self.labels)


class PixelDataset(_Base):
    """Fixed-size uint8 pixels (N, 3, S, S), possibly memory-mapped; `index` selects the readable ones."""

    def __init__(self, pixels: np.ndarray, labels: np.ndarray, mean, std, index: np.ndarray | None = None,
                 num_workers: int = 0, skipped: int = 0):
        self.index = np.arange(len(labels)) if index is None else np.asarray(index)
        super().__init__(np.asarray(labels)[self.index], num_workers, skipped)
        self.pixels, self.mean, self.std = pixels, tuple(mean), tuple(std)

    def __getitem__(self, i: int):
        x = torch.from_numpy(np.array(self.pixels[self.index[i]]))  # copy out of the memory map
        return normalize(x, self.mean, self.std), int(self.labels[i])

    def __getitems__(self, indices: list[int]) -> list:
        """A whole batch at once (DataLoader uses this when present): one gather, one normalisation."""
        rows = self.index[np.asarray(indices)]
        order = np.argsort(rows, kind="stable")  # read the memory map front to back
        x = np.empty((len(rows), *self.pixels.shape[1:]), dtype=np.uint8)
        x[order] = self.pixels[rows[order]]
        xs = normalize(torch.from_numpy(x), self.mean, self.std)
        return list(zip(xs.unbind(0), self.labels[np.asarray(indices)].tolist()))


class ImageDataset(_Base):
    """`load(i)` -> PIL image, then `transform`; an unreadable image raises, or is skipped when allowed.

    Args:
        origin: `origin(i)` names where entry i was listed (file:line), for error messages.
        skip_bad: replace an unreadable image by the next readable one, warn, and count it
            (large datasets such as ImageNet, where decoding everything up front is too slow).
    """

    def __init__(self, load: Callable[[int], Image.Image], labels: np.ndarray, transform, origin: Callable[[int], str],
                 name: str, skip_bad: bool = False, num_workers: int = 0, skipped: int = 0):
        super().__init__(labels, num_workers, skipped)
        self.load, self.transform, self.origin, self.name, self.skip_bad = load, transform, origin, name, skip_bad

    def __getitem__(self, i: int):
        for k in range(len(self)):
            j = (i + k) % len(self)
            try:
                img = self.load(j)
            except Exception as e:  # PIL raises many types for broken files
                if not self.skip_bad:
                    raise DataError(f"dataset {self.name!r}: {self.origin(j)}: unreadable image "
                                    f"({type(e).__name__}: {e}); see {README}") from e
                with self._bad.get_lock():
                    self._bad.value += 1
                warnings.warn(f"dataset {self.name!r}: skipped unreadable image {self.origin(j)}: {e}", stacklevel=2)
                continue
            return self.transform(img), int(self.labels[j])
        raise DataError(f"dataset {self.name!r}: no readable image at all; see {README}")


class Tensors(TensorDataset):
    """Normalised float images and labels held as tensors: nothing is decoded, so nothing is skipped."""
    bad_images = 0


def open_rgb(path: str) -> Image.Image:
    """Decode fully (a truncated file fails here, not later) and convert to RGB."""
    with Image.open(path) as im:
        im.load()
        return im.convert("RGB")


class FileImages:
    """Image i of a listing, decoded from its file."""

    def __init__(self, paths: list[str]):
        self.paths = paths

    def __call__(self, i: int) -> Image.Image:
        return open_rgb(self.paths[i])


class ArrayImages:
    """Image i from (N, H, W, 3) arrays, through `index` (a subset's rows) when given."""

    def __init__(self, images: np.ndarray, index: np.ndarray | None = None):
        self.images, self.index = images, index

    def __call__(self, i: int) -> Image.Image:
        j = i if self.index is None else self.index[i]
        return Image.fromarray(np.asarray(self.images[j]))


class FlatImages:
    """Image i of the variable-size cache (bench/data/cache.py): one flat array, offsets and shapes."""

    def __init__(self, flat, offsets, shapes, index):
        self.flat, self.offsets, self.shapes, self.index = flat, offsets, shapes, index

    def __call__(self, i: int) -> Image.Image:
        j = self.index[i]
        h, w, c = self.shapes[j]
        return Image.fromarray(np.asarray(self.flat[self.offsets[j]:self.offsets[j] + h * w * c]).reshape(h, w, c))


class Origins:
    """Where entry i was listed (file:line), through `index` when the dataset keeps a part of the listing."""

    def __init__(self, lst: Listing, index: np.ndarray | None = None):
        self.lst, self.index = lst, index

    def __call__(self, i: int) -> str:
        return self.lst.origin(i if self.index is None else int(self.index[i]))
