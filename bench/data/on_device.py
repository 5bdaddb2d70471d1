"""Splits held as tensors where the model runs, normalised and augmented a whole batch at a time.

A small cached split fits on any GPU: VTAB-1k's 1,000 training images at 224 px are 150 MB as
uint8. Held there, a training step gathers its batch on the device instead of copying a float
batch from host memory (64 x 3 x 224 x 224 x 4 bytes = 38.5 MB per step), the uint8 -> float
normalisation runs on the device, and `train_aug=simple` (random-resized crop + horizontal
flip) runs for the whole batch in one `roi_align` call with per-image random boxes, so the
loader cannot become the bottleneck of a small dataset.

`BatchDataset` is a TensorDataset (the training loop slices it like any in-memory split) whose
`batch_transform` turns a gathered uint8 batch into normalised floats; `to_device` moves the
splits a run uses to its device when they fit.
"""
import dataclasses
import math

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset
from torchvision.ops import roi_align

from bench.data.torch_datasets import PixelDataset, Tensors

AUGMENTS = ("none", "simple")
SCALE, RATIO = (0.08, 1.0), (3 / 4, 4 / 3)  # torchvision's RandomResizedCrop defaults, as SSF's --simple-aug
ATTEMPTS = 10  # as torchvision: ten tries at a box inside the image, then a centre crop


class BatchDataset(TensorDataset):
    """uint8 pixels (N, 3, S, S) and int64 labels, normalised (and augmented) per batch.

    Args:
        augment: `none`, or `simple`: random-resized crop (scale 0.08-1, ratio 3/4-4/3,
            resampled to S x S bilinearly by roi_align; a crop is never larger than S x S, so
            this only enlarges) then a flip with probability 0.5, per image. Random numbers come
            from the loop's generator (on the CPU), so a run is reproducible and resumes exactly.
    """

    def __init__(self, pixels: torch.Tensor, labels: torch.Tensor, mean, std, augment: str = "none",
                 num_workers: int = 0, bad_images: int = 0):
        if augment not in AUGMENTS:
            raise ValueError(f"batch augmentation {augment!r}; valid: {list(AUGMENTS)}")
        super().__init__(pixels, labels)
        self.mean, self.std, self.augment = tuple(mean), tuple(std), augment
        # (1, 3, 1, 1) on the pixels' device, made once: a tensor built per batch from a list would be
        # a blocking host-to-device copy, a GPU sync every step
        self._mean = torch.tensor(self.mean, device=pixels.device).view(1, -1, 1, 1)
        self._std = torch.tensor(self.std, device=pixels.device).view(1, -1, 1, 1)
        self._shift, self._scale = self._mean * 255, self._std * 255
        self.labels, self.num_workers, self._bad = labels.cpu().numpy(), num_workers, bad_images

    @property
    def bad_images(self) -> int:
        return self._bad

    def __getitem__(self, i: int):
        """(normalised float image, int label), as every dataset yields; batches are sliced, not indexed."""
        return self.batch_transform(self.tensors[0][i:i + 1], None)[0], int(self.tensors[1][i])

    def to(self, device: torch.device) -> "BatchDataset":
        return BatchDataset(self.tensors[0].to(device), self.tensors[1].to(device), self.mean, self.std, self.augment,
                            self.num_workers, self._bad)

    def batch_transform(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """uint8 (B, 3, S, S) -> normalised float (B, 3, S, S); augmented when training (a generator given).

        No host-device synchronisation: the random boxes and flips are drawn on the CPU and
        copied with non_blocking, everything else stays on the pixels' device.

        Unaugmented batches take exactly `bench.data.transforms.normalize`'s arithmetic (/255, minus
        the mean, over the std), so a split held as uint8 gives the same bits as one normalised
        up front or by the loader; augmented ones keep the one-division form they always had."""
        if self.augment == "simple" and generator is not None:
            x = random_resized_crop_flip(x.float(), generator)
            return (x - self._shift) / self._scale  # as ToTensor (/255) then Normalize
        return (x.float().div_(255) - self._mean) / self._std


def crop_boxes(n: int, h: int, w: int, generator: torch.Generator) -> torch.Tensor:
    """(n, 4) boxes x1, y1, x2, y2 in pixels, drawn as torchvision's RandomResizedCrop.get_params."""
    area = h * w * torch.empty(n, ATTEMPTS).uniform_(*SCALE, generator=generator)
    log_r = torch.empty(n, ATTEMPTS).uniform_(math.log(RATIO[0]), math.log(RATIO[1]), generator=generator)
    ratio = log_r.exp()
    cw, ch = (area * ratio).sqrt().round(), (area / ratio).sqrt().round()
    fits = (cw > 0) & (cw <= w) & (ch > 0) & (ch <= h)
    first = fits.float().argmax(1)  # the first attempt that fits
    pick = torch.arange(n)
    cw, ch, ok = cw[pick, first], ch[pick, first], fits.any(1)
    # no attempt fits: a centre crop of the whole image at the nearest allowed ratio (torchvision's fallback)
    fw, fh = w, h
    if w / h < RATIO[0]:
        fh = round(w / RATIO[0])
    elif w / h > RATIO[1]:
        fw = round(h * RATIO[1])
    cw = torch.where(ok, cw, torch.full_like(cw, fw))
    ch = torch.where(ok, ch, torch.full_like(ch, fh))
    u = torch.rand(n, 2, generator=generator)
    x1 = torch.where(ok, (u[:, 0] * (w - cw + 1)).floor(), ((w - cw) / 2).round())
    y1 = torch.where(ok, (u[:, 1] * (h - ch + 1)).floor(), ((h - ch) / 2).round())
    return torch.stack([x1, y1, x1 + cw, y1 + ch], 1)


def random_resized_crop_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """float (B, C, H, W) -> (B, C, H, W): per-image random-resized crop back to H x W, then flip w.p. 0.5."""
    b, _, h, w = x.shape
    boxes = crop_boxes(b, h, w, generator)
    flip = torch.rand(b, generator=generator) < 0.5
    out = resample(x, boxes)
    return torch.where(flip.to(x.device, non_blocking=True).view(-1, 1, 1, 1), out.flip(-1), out)


def resample(x: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Crop box i (x1, y1, x2, y2 in pixels) of image i and resize it bilinearly to the image's size."""
    b, _, h, w = x.shape
    # (B, 5): image index, box; drawn on the CPU, copied without waiting for the GPU
    rois = torch.cat([torch.arange(b, dtype=x.dtype)[:, None], boxes.to(x.dtype)], 1).to(x.device, non_blocking=True)
    # aligned=True: pixel i covers [i, i + 1), so the box (0, 0, W, H) is the whole image; one sample
    # per output pixel, at its centre: plain bilinear interpolation (a crop is never larger than
    # the output, so nothing is shrunk and nothing aliases)
    return roi_align(x, rois, output_size=(h, w), spatial_scale=1.0, sampling_ratio=1, aligned=True)


def as_batches(ds: PixelDataset, augment: str = "none") -> BatchDataset:
    """A fixed-size pixel split (memory-mapped or in memory) read into one uint8 tensor."""
    pixels = torch.from_numpy(np.ascontiguousarray(ds.pixels[ds.index]))
    return BatchDataset(pixels, torch.from_numpy(ds.labels.copy()), ds.mean, ds.std, augment, ds.num_workers,
                        ds.bad_images)


def nbytes(ds: Dataset) -> int | None:
    """Bytes the split takes as device tensors; None: it cannot be held there (decoded per image)."""
    if isinstance(ds, PixelDataset):
        return len(ds) * int(np.prod(ds.pixels.shape[1:])) + 8 * len(ds)
    if isinstance(ds, TensorDataset):
        return sum(t.numel() * t.element_size() for t in ds.tensors)
    return None


def within(sizes: dict[str, int], budget: int) -> list[str]:
    """The splits to hold on the device: smallest first, while their bytes add up to at most `budget`."""
    chosen, total = [], 0
    for s in sorted(sizes, key=sizes.get):
        if total + sizes[s] <= budget:
            chosen.append(s)
            total += sizes[s]
    return chosen


def to_device(splits: dict, device: torch.device, mode: str) -> dict:
    """The splits a run uses, moved to `device` where they can be held there.

    mode: `auto` moves them on CUDA, smallest first (the training and validation splits, read
    every epoch, before a large test split read once), while together they take at most a
    quarter of the free device memory, leaving the rest to training; `on` moves every one (on
    the CPU: memory-mapped caches are read into memory); `off` none.

    Args:
        splits: name -> `bench.data.Split`; each moved one comes back with its dataset replaced.
    """
    if mode not in ("auto", "on", "off"):
        raise ValueError(f"train.data_on_device={mode!r}; valid: auto, on, off")
    sizes = {s: nbytes(d.dataset) for s, d in splits.items()}
    movable = [s for s, n in sizes.items() if n is not None]
    if mode == "off" or not movable or (mode == "auto" and device.type != "cuda"):
        return splits
    if mode == "auto":
        movable = within({s: sizes[s] for s in movable}, torch.cuda.mem_get_info(device)[0] // 4)
    out = dict(splits)
    for s in movable:
        d = splits[s].dataset
        d = as_batches(d) if isinstance(d, PixelDataset) else d
        # a BatchDataset, or an in-memory float split (the mini benchmark)
        moved = d.to(device) if isinstance(d, BatchDataset) else Tensors(*(t.to(device) for t in d.tensors))
        out[s] = dataclasses.replace(splits[s], dataset=moved)
    return out


__all__ = ["AUGMENTS", "BatchDataset", "as_batches", "crop_boxes", "nbytes", "random_resized_crop_flip", "resample",
           "to_device", "within"]
