"""Top-1 evaluation under `torch.inference_mode`, batched, with an optional progress bar."""
import torch
import torch.nn as nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from bench import dist
from bench.train import batches


@torch.inference_mode()
def top1(model: nn.Module, data: Dataset, batch_size: int, device: torch.device, desc: str = "eval",
         progress: bool = True, amp: torch.dtype | None = None, shard: bool | None = None) -> float:
    """Percentage of `data` whose arg-max logit equals the label (under autocast to `amp` if given).

    With several processes (`shard`, by default when there are) each rank scores its part of
    every batch and the correct and image counts are summed: every image counts once (the
    official code pads the last shard with repeated images and averages per-batch accuracies).
    """
    shard = dist.world() > 1 if shard is None else shard
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=device)
    n = 0
    for x, y in tqdm(batches(data, batch_size, shard=shard), total=-(-len(data) // batch_size), desc=desc,
                     leave=False, disable=not progress or not dist.is_main()):
        if len(y) == 0:  # this rank's part of a last batch smaller than the world
            continue
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            correct += (model(x).argmax(-1) == y).sum()
        n += len(y)
    model.train(was_training)
    hits, n = dist.all_sum(correct.item(), n) if shard else (correct.item(), n)
    return 100.0 * hits / max(n, 1)
