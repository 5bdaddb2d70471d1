"""Fingerprints of a split: which images, in which order, with which labels.

Two runs are scored on the same test images exactly when their test fingerprints are equal, so
paired comparisons (bench's significance tables) and data-version checks key on this, never on
paths: moving a dataset to another `data_root` keeps its fingerprint. An identifier is the
image's path relative to the dataset's own folder (posix separators), or for generated and
array-backed data a name that says where the image came from.
"""
import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

PREFIX = "sha256:"


def fingerprint(ids: Iterable[str], labels: Iterable[int]) -> str:
    """`sha256:<32 hex>` over the ordered (identifier, label) pairs."""
    h = hashlib.sha256()
    for i, y in zip(ids, labels, strict=True):
        h.update(f"{i}\0{int(y)}\n".encode())
    return PREFIX + h.hexdigest()[:32]


def relative_ids(paths: Iterable[str], root: Path) -> list[str]:
    """Each path relative to `root` (posix), or as given where it lies outside `root`."""
    root = os.path.abspath(root)
    out = []
    for p in paths:
        rel = os.path.relpath(os.path.abspath(p), root) if os.path.isabs(p) else p
        out.append(p if rel.startswith("..") else Path(rel).as_posix())
    return out


def generated_ids(task: str, split: str, data_seed: int, n: int) -> list[str]:
    """Identifiers of a generated (mini benchmark) split: the generator's inputs and the index."""
    return [f"mini/{task}/seed{data_seed}/{split}/{i}" for i in range(n)]


__all__ = ["PREFIX", "fingerprint", "generated_ids", "relative_ids"]
