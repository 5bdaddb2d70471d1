"""torch Datasets over the sources a split can come from; each yields (normalised float image, int label).

- `PixelDataset`: fixed-size uint8 pixels (cached or in memory), normalised per batch: no decoding.
- `ImageDataset`: images from a source (files, the variable-size cache, or an in-memory array),
  through a transform (random augmentation or the deterministic evaluation pipeline).

Every dataset carries `labels` (int64 array), `num_workers` (for the DataLoader that reads it)
and `bad_images` (unreadable images skipped, a counter shared with DataLoader workers).
"""
import multiprocessing
import warnings
from typing import Callable

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from bench.data.files import README, DataError
from bench.data.pipeline import normalize


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


def open_rgb(path: str) -> Image.Image:
    """Decode fully (a truncated file fails here, not later) and convert to RGB."""
    with Image.open(path) as im:
        im.load()
        return im.convert("RGB")
