"""A run's per-image test predictions: `predictions.npz` beside its record.

Confidence intervals and paired tests (two methods scored on the same images) need each image's
outcome, not only the accuracy. The file holds, in the test split's listing order (its
Dataset's index 0..N-1):
    pred, target      the arg-max class and the true class of each image (the smallest signed
                      int dtype that holds the class count)
    fingerprint       0-d unicode array: the split's fingerprint (bench/data/fingerprint.py),
                      also the record's `test_fingerprint`
and for each robustness or domain-shift target scored after training (bench/data/robustness.py)
`pred__<name>`, `target__<name>`, `fingerprint__<name>` alike. Two files can be paired exactly
where their fingerprints are equal.

Numpy only (no torch): the analysis path reads these files.
"""
from pathlib import Path

import numpy as np

from bench.records import PREDICTIONS, atomic_file

SEP = "__"  # pred__<target name>
KEYS = ("pred", "target", "fingerprint")


def int_dtype(num_classes: int) -> np.dtype:
    """The smallest signed int dtype that holds the labels 0..num_classes-1."""
    for t in (np.int8, np.int16, np.int32):
        if num_classes - 1 <= np.iinfo(t).max:
            return np.dtype(t)
    return np.dtype(np.int64)


def arrays(pred, target, fingerprint: str, num_classes: int, name: str = "") -> dict[str, np.ndarray]:
    """The file's entries for one split or target (`name` "": the test split)."""
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape or pred.ndim != 1:
        raise ValueError(f"predictions {name or 'test'}: pred {pred.shape} and target {target.shape} must be equal 1-D")
    dtype = int_dtype(num_classes)
    suffix = f"{SEP}{name}" if name else ""
    return {f"pred{suffix}": pred.astype(dtype), f"target{suffix}": target.astype(dtype),
            f"fingerprint{suffix}": np.asarray(fingerprint, dtype=np.str_)}


def save(path: Path, entries: dict[str, np.ndarray]) -> None:
    """Write `entries` (from `arrays`) compressed, atomically: a reader sees the whole file or none."""
    with atomic_file(path) as tmp, open(tmp, "wb") as f:  # a file object: savez would append ".npz" to a name
        np.savez_compressed(f, **entries)


def load(path: str | Path) -> dict[str, dict]:
    """{"test": ..., <target name>: ...}, each {"pred", "target", "fingerprint"}, from a predictions file
    (or a run folder holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / PREDICTIONS
    out: dict[str, dict] = {}
    with np.load(path, allow_pickle=False) as z:
        for key in z.files:
            kind, _, name = key.partition(SEP)
            value = z[key]
            out.setdefault(name or "test", {})[kind] = str(value) if kind == "fingerprint" else value
    return out
