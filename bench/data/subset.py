"""A stratified, deterministic subset of a training split: the points of a many-shot curve
(PETL_Vision's CIFAR-100 at 500, 1k, 5k, 10k images and full; anchors.md section 9).

Each class gets its share of `n` by largest remainder (floor(n * n_c / N), the leftover images
to the classes with the largest fractional parts, ties to the lower class index), and its
images are drawn by a permutation seeded with `seed` alone, so a subset depends on the split,
`n` and `seed`, never on the run's seed; the kept entries stay in the split's order.
"""
import dataclasses

import numpy as np

from bench.data.errors import README, DataError
from bench.data.listing import TRAINING, Listing


def stratified(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted indices of a class-stratified subset of `n` of `labels`."""
    classes, counts = np.unique(labels, return_counts=True)
    share = n * counts / len(labels)
    take = np.floor(share).astype(np.int64)
    left = n - int(take.sum())
    order = np.lexsort((np.arange(len(classes)), -(share - take)))  # largest remainder first, then class index
    take[order[:left]] += 1
    rng = np.random.default_rng(seed)
    keep = []
    for c, k in zip(classes, take):
        members = np.flatnonzero(labels == c)
        keep.append(members[rng.permutation(len(members))[:k]])
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=np.int64)


def indices(cfg, split: str, labels: np.ndarray) -> np.ndarray | None:
    """Sorted indices of the `cfg.train_subset` images a run keeps of a split with `labels`, or None
    for the whole split (no subset, or not a training split); larger than the split: an error.

    The one selection rule for listed splits (`apply`) and the generated mini tasks
    (bench/data/generated.py)."""
    n = cfg.train_subset
    if not n or split not in TRAINING:
        return None
    if n > len(labels):
        raise DataError(f"dataset {cfg.name!r}: dataset.train_subset={n} is larger than the {split!r} split "
                        f"({len(labels)} images); use at most {len(labels)}, or 0 for the whole split; see {README}")
    return stratified(labels, n, cfg.subset_seed)


def apply(cfg, split: str, lst: Listing) -> Listing:
    """`lst` cut to `cfg.train_subset` images (`indices`)."""
    keep = indices(cfg, split, lst.labels)
    if keep is None:
        return lst
    where = [lst.where[i] for i in keep] if lst.where is not None else None
    return dataclasses.replace(lst, paths=[lst.paths[i] for i in keep], labels=lst.labels[keep], where=where,
                               stats=[lst.stats[i] for i in keep] if lst.stats is not None else None)
