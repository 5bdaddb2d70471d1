"""Periodic checkpoints for preemption-safe runs: one fixed file name, used by save and resume.

A checkpoint holds what a resumed run needs to continue exactly where it stopped: the
trainable parameters, the optimizer state, the EMA weights, the step and epoch, the history
so far, and every random number generator state (torch, the shuffling generator, numpy,
Python). It is written atomically (temporary file, then rename), so a run killed at any
moment leaves either the previous checkpoint or the new one, never half of one.
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
    """The checkpoint at `path` if it exists and was written by a run with the same `config`."""
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("config") != config:
        print(f"[checkpoint] ignoring {path}: written by a run with a different configuration", flush=True)
        return None
    return state


def rng_state(generator: torch.Generator) -> dict:
    return {"torch": torch.get_rng_state(), "shuffle": generator.get_state(), "numpy": np.random.get_state(),
            "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state: dict, generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    generator.set_state(state["shuffle"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
