"""The deployable model of a trained run: merge what folds, count what stays, time it.

Every run ends by building the model a user would ship: the method's `merge` applied to a
copy (SSF, LoRA and peft tuners fold into the backbone), or the trained model itself where
nothing folds (VPT's prompts and Adapter's modules stay). Its extra parameters are counted
against the untouched backbone with the same head, and its inference speed is measured in
the same process, on the same batch, interleaved with the untouched backbone's.
"""
import copy
import statistics
import time

import torch
import torch.nn as nn

from methods import Method


def deployable(model: nn.Module, method: Method) -> tuple[nn.Module, bool]:
    """(deployed model, merged?) — merging works on a deep copy; `model` is left as it is."""
    if method.merge is None:
        return model, False
    try:
        return method.merge(copy.deepcopy(model)), True
    except (NotImplementedError, ValueError, AttributeError):  # a peft tuner that cannot merge
        return model, False


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.inference_mode()
def images_per_s(models: dict[str, nn.Module], batch: torch.Tensor, iters: int = 5, warmup: int = 2,
                 budget_s: float = 0.0, max_iters: int = 20) -> dict:
    """Median forward throughput of each model on `batch`, measured round-robin so drift hits all alike.

    `warmup` untimed rounds and `iters` timed rounds at least; more while all rounds, the warm-up
    included, have taken under `budget_s`, up to `max_iters` timed rounds. Returns {name: images/s}
    and `rounds`: {name: images/s of each timed round}.
    """
    times: dict[str, list[float]] = {k: [] for k in models}
    for m in models.values():
        m.eval()
    spent, i = 0.0, 0
    while i < warmup + iters or (spent < budget_s and i < warmup + max_iters):
        for name, m in models.items():
            if batch.is_cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            m(batch)
            if batch.is_cuda:
                torch.cuda.synchronize()
            spent += time.perf_counter() - t0
            if i >= warmup:
                times[name].append(time.perf_counter() - t0)
        i += 1
    out: dict = {k: len(batch) / statistics.median(v) for k, v in times.items()}
    out["rounds"] = {k: [len(batch) / t for t in v] for k, v in times.items()}
    return out
