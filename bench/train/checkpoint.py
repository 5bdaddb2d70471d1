"""Periodic checkpoints for preemption-safe runs: one fixed file name, used by save and resume.

A checkpoint holds what a resumed run needs to continue exactly where it stopped: the
trainable parameters, the optimizer state, the EMA weights, the step and epoch, the history
so far, and every random number generator state (torch, the shuffling generator, numpy,
Python). It is written atomically (temporary file, then rename), so a run killed at any
moment leaves either the previous checkpoint or the new one, never half of one.

Nothing in it needs arbitrary classes: tensors, numbers, strings, lists, tuples and dicts only
(numpy's RNG state is stored as a tensor), and it is read with `torch.load(weights_only=True)`.
A checkpoint that needs anything else (a file planted in a shared results folder to run code
when the next relaunch unpickles it) is refused with a message, never executed, and the run
starts from scratch.
"""
import random
from pathlib import Path

import numpy as np
import torch

from bench.records import CHECKPOINT, atomic_file  # noqa: F401  (CHECKPOINT: the one name, readable torch-free)


def save(path: Path, state: dict) -> None:
    with atomic_file(path) as tmp:
        torch.save(state, tmp)


def load(path: Path, config: dict) -> dict | None:
    """The checkpoint at `path` if it exists, holds only plain data, and was written with the same `config`."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle.UnpicklingError for anything but plain data; never retried unsafely
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"[checkpoint] refusing {path}: it does not load as plain data (code to run, or a corrupt or "
              f"older file: {reason[:200]}); starting from scratch (remove the file if nobody here wrote it)",
              flush=True)
        return None
    if not isinstance(state, dict) or state.get("config") != config:
        print(f"[checkpoint] ignoring {path}: written by a run with a different configuration", flush=True)
        return None
    return state


def rng_state(generator: torch.Generator) -> dict:
    name, keys, pos, has_gauss, cached = np.random.get_state()  # keys: uint32[624], stored as int64 tensor
    return {"torch": torch.get_rng_state(), "shuffle": generator.get_state(),
            "numpy": (name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)),
            "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state: dict, generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    generator.set_state(state["shuffle"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(state["python"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
