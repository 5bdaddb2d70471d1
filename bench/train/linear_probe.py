"""Linear-probe fast path: run the frozen backbone once, then train the head on its features.

With a frozen backbone, no augmentation, no mixup and no drop-path, every epoch of linear
probing feeds the head the same features; computing them once gives the same head
training (same init, same batches, same optimizer) at a fraction of the cost.
"""
import torch
import torch.nn as nn
from torch.utils.data import Dataset, TensorDataset

from bench.config import RunConfig
from bench.data.batching import batches


def applies(cfg: RunConfig) -> bool:
    """Is the fast path exactly equivalent to the epoch loop for this run?"""
    t = cfg.train
    return (cfg.method == "linear" and t.linear_fast_path and t.mixup == 0 and t.cutmix == 0 and t.drop_path == 0
            and not t.tune_norms and cfg.dataset.train_aug == "none")


@torch.inference_mode()
def features(model: nn.Module, data: Dataset, batch_size: int, device: torch.device,
             amp: torch.dtype | None = None) -> TensorDataset:
    """(pre-logits features, labels) of `data` through the frozen backbone, as a CPU TensorDataset."""
    model.eval()
    feats, labels = [], []
    for x, y in batches(data, batch_size):
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            f = model.forward_head(model.forward_features(x.to(device)), pre_logits=True)  # (B, num_features)
        feats.append(f.float().cpu())
        labels.append(y.cpu())  # a split held on the GPU has its labels there too: one device for both
    return TensorDataset(torch.cat(feats), torch.cat(labels))
