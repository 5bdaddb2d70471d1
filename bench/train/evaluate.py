"""Top-1 evaluation under `torch.inference_mode`, batched, with an optional progress bar.

`predict` is the one evaluation pass: it returns every image's arg-max class and label in the
split's order, so a run keeps the per-image predictions behind its score (bench/predictions.py)
without scoring the split a second time; `top1` is `accuracy` over `predict`.
"""
import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from bench.data.batching import batches, spans
from bench.train import dist


@torch.inference_mode()
def predict(model: nn.Module, data: Dataset, batch_size: int, device: torch.device, desc: str = "eval",
            progress: bool = True, amp: torch.dtype | None = None,
            shard: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(arg-max class, label) of every image of `data`, as int64 arrays in the dataset's order.

    With several processes (`shard`, by default when there are) each rank predicts its part of
    every batch and the parts are gathered, so that every rank holds every image's prediction
    exactly once, in order (the official code pads the last shard with repeated images and
    averages per-batch accuracies).
    """
    shard = dist.world() > 1 if shard is None else shard
    was_training = model.training
    model.eval()
    preds, labels = [], []  # kept on the device: one transfer at the end, no host sync per batch
    for x, y in tqdm(batches(data, batch_size, shard=shard), total=-(-len(data) // batch_size), desc=desc,
                     leave=False, disable=not progress or not dist.is_main()):
        if len(y) == 0:  # this rank's part of a last batch smaller than the world
            continue
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            preds.append(model(x).argmax(-1))
        labels.append(y)
    model.train(was_training)
    pred, target = (torch.cat(t).cpu().numpy().astype(np.int64) if t else np.zeros(0, np.int64)
                    for t in (preds, labels))
    if not shard or dist.world() == 1:
        return pred, target
    # each rank's images are its parts of the batches, in batch order (bench.data.batching.spans): their
    # positions in the split put the gathered parts back in the split's order
    mine = np.concatenate([np.arange(a, b) for a, b in spans(len(data), batch_size, False, True)] or [[]])
    out_pred, out_target = np.full(len(data), -1, np.int64), np.full(len(data), -1, np.int64)
    seen = 0
    for where, p, t in dist.gather((mine.astype(np.int64), pred, target)):
        out_pred[where], out_target[where] = p, t
        seen += len(where)
    assert seen == len(data) and (out_target >= 0).all(), "sharded evaluation missed or repeated an image"
    return out_pred, out_target


def accuracy(pred: np.ndarray, target: np.ndarray) -> float:
    """Top-1 in percent: 100 * mean(pred == target) (0 for no images)."""
    return 100.0 * float(np.mean(pred == target)) if len(target) else 0.0


def top1(model: nn.Module, data: Dataset, batch_size: int, device: torch.device, desc: str = "eval",
         progress: bool = True, amp: torch.dtype | None = None, shard: bool | None = None) -> float:
    """Percentage of `data` whose arg-max logit equals the label (under autocast to `amp` if given);
    sharded over processes as `predict` is, every image counted once."""
    return accuracy(*predict(model, data, batch_size, device, desc, progress, amp, shard))
