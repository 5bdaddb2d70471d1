"""A split's batches as training and evaluation read them, in one process or cut across several.

In-memory splits (TensorDatasets, on the CPU or held on the device: bench/data/on_device.py) are
sliced a batch at a time; anything else goes through a DataLoader. With several processes
every rank reads its contiguous part of each of one process's batches, so the batches themselves
(order and size) do not depend on the number of processes. The caller says which part: `shard` is
(rank, world), from bench/train/dist.py (`dist.shard()`), so the data layer never asks
torch.distributed itself.
"""
import math

import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

Shard = tuple[int, int]  # (this process's rank, number of processes)


def n_batches(n: int, batch_size: int, drop_last: bool) -> int:
    return n // batch_size if drop_last else math.ceil(n / batch_size)


def batches(data: Dataset, batch_size: int, generator: torch.Generator | None = None, drop_last: bool = False,
            shard: Shard | None = None):
    """(x, y) batches of `data`, shuffled with `generator` when given.

    In-memory TensorDatasets (on the CPU or on the device) are sliced directly (one gather per
    batch instead of a Python call and a collate per image), then passed through the dataset's
    `batch_transform(x, generator)` when it has one (bench/data/on_device.py); anything else goes
    through a DataLoader. `shard` = (rank, world) (several processes): this rank's contiguous
    part of every batch, the batches themselves (order and size) being those of one process.
    """
    if not isinstance(data, TensorDataset):
        if shard:
            yield from DataLoader(data, batch_sampler=_ShardedBatches(len(data), batch_size, generator, drop_last, shard),
                                  num_workers=getattr(data, "num_workers", 0), pin_memory=torch.cuda.is_available())
            return
        yield from DataLoader(data, batch_size=batch_size, shuffle=generator is not None, drop_last=drop_last,
                              generator=generator, num_workers=getattr(data, "num_workers", 0),
                              pin_memory=torch.cuda.is_available())
        return
    n = len(data)
    where = data.tensors[0].device  # the split may be held on the GPU (bench/data/on_device.py)
    order = torch.randperm(n, generator=generator).to(where) if generator is not None else None
    augment = generator
    if shard and generator is not None and getattr(data, "augment", "none") != "none":
        # per-batch augmentation draws differ by rank, the next epoch's permutation must not: the ranks
        # augment from their own generators, seeded alike from the shared one
        seed = int(torch.randint(2**62, (1,), generator=generator))
        augment = torch.Generator().manual_seed(seed + shard[0])
    for a, b in spans(n, batch_size, drop_last, shard):
        if order is None:
            x, *rest = (t[a:b] for t in data.tensors)
        else:  # index_select: several times faster than t[idx] on the CPU (one-off timing: 22 vs 130 us, 64 x 32 px)
            idx = order[a:b]
            x, *rest = (t.index_select(0, idx) for t in data.tensors)
        if hasattr(data, "batch_transform"):  # uint8 pixels: normalised (and augmented) per batch, where they are
            x = data.batch_transform(x, augment)
        yield (x, *rest)


def spans(n: int, batch_size: int, drop_last: bool, shard: Shard | None):
    """[start, stop) of each batch of an epoch's order of `n` items; with `shard` = (rank, world), this
    rank's part of it (bench.train.evaluate reads these to put the ranks' predictions back in the
    split's order)."""
    for i in range(0, n_batches(n, batch_size, drop_last) * batch_size, batch_size):
        a, b = i, min(i + batch_size, n)
        if shard:
            lo, hi = part(b - a, *shard)
            a, b = a + lo, a + hi
        yield a, b


def part(n: int, rank: int, world: int) -> tuple[int, int]:
    """[start, stop) of `rank`'s contiguous part of n items (the first n % world ranks get one more)."""
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)


class _ShardedBatches:
    """Batch sampler: one process's batches (a permutation from `generator`, or in order), each cut to this rank's part."""

    def __init__(self, n: int, batch_size: int, generator: torch.Generator | None, drop_last: bool, shard: Shard):
        self.n, self.batch_size, self.generator, self.drop_last, self.shard = n, batch_size, generator, drop_last, shard

    def __len__(self) -> int:
        return n_batches(self.n, self.batch_size, self.drop_last)

    def __iter__(self):
        order = torch.randperm(self.n, generator=self.generator).tolist() if self.generator is not None \
            else list(range(self.n))
        for a, b in spans(self.n, self.batch_size, self.drop_last, self.shard):
            yield order[a:b]


__all__ = ["Shard", "batches", "n_batches", "part", "spans"]
