"""Datasets as ready-to-train tensors, by role:

- `formats/`: one module per on-disk format (`dataset.format`), each listing its splits;
  `listing.py`: the split names, the `Listing` they produce, its line parser and checks;
  `roots.py`, `errors.py`: where data lives, and the error a broken dataset raises;
- `splits.py`: a run's splits listed and checked once (`list_splits`), then read as torch
  datasets with their record entries (`load_splits` -> {split: `Split`}, `describe`);
- `transforms.py` (pixel pipelines), `torch_datasets.py`, `cache.py` (decoded pixels),
  `on_device.py` (splits held on the GPU, augmented per batch), `batching.py` (the batches
  training and evaluation read);
- `generated.py` (the mini benchmark, bench/data/mini.py, as splits), `robustness.py`,
  `check.py` and `prepare.py` (`python -m bench.data check|prepare`), `version.py` and
  `fingerprint.py` (what a run read).

The names below load their module on first use: bench/config.py reads `choices.py` when it
checks a command line, before torch loads, and that must not import the rest.
"""
import importlib

_EXPORTS = {"DataError": "bench.data.errors", "SPLITS": "bench.data.listing", "Split": "bench.data.splits",
            "describe": "bench.data.splits", "list_splits": "bench.data.splits", "load_split": "bench.data.splits",
            "load_splits": "bench.data.splits"}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'bench.data' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
