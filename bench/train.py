"""The training loop: one readable function.

AdamW with timm's weight-decay param groups (no decay on biases, norms and other 1-D
parameters, as the SSF code does), linear warm-up then cosine annealing from timm's
scheduler, stepped per optimizer step. Only parameters with `requires_grad` are optimised,
so a frozen backbone never gets weight gradients computed.
"""
import math
import time
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.optim import param_groups_weight_decay
from timm.scheduler import CosineLRScheduler
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from bench.config import TrainConfig


def train(model: nn.Module, data: Dataset, cfg: TrainConfig, *, seed: int, device: torch.device,
          on_epoch: Callable[[int], dict] | None = None, desc: str = "train") -> dict:
    """Train `model` in place on `data` for `cfg.epochs` epochs.

    Args:
        on_epoch: called after each epoch with the epoch number (1-based); the dict it
            returns (for example val top-1) is merged into that epoch's history entry.

    Returns:
        dict with `history` (one entry per epoch: train_loss, lr, and on_epoch's keys),
        `train_seconds` (time in optimizer steps, evaluation excluded) and `images_seen`.
    """
    # --- optimizer and schedule -----------------------------------------------------------
    groups = param_groups_weight_decay(model, cfg.weight_decay)
    if not any(p.requires_grad for g in groups for p in g["params"]):
        raise ValueError("no trainable parameters: the method froze everything")
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr)
    loader = DataLoader(data, batch_size=cfg.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    steps_per_epoch = len(loader)
    scheduler = CosineLRScheduler(optimizer, t_initial=cfg.epochs * steps_per_epoch, lr_min=cfg.min_lr,
                                  warmup_t=math.ceil(cfg.warmup_epochs * steps_per_epoch),
                                  warmup_lr_init=cfg.warmup_lr, t_in_epochs=False)

    # --- loop -------------------------------------------------------------------------------
    history, step, train_seconds, images = [], 0, 0.0, 0
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        loss_sum = torch.zeros((), device=device)  # summed on device: no host sync per step
        t0 = time.perf_counter()
        for x, y in tqdm(loader, desc=f"{desc} epoch {epoch}/{cfg.epochs}", leave=False, disable=not cfg.progress):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = F.cross_entropy(model(x), y, label_smoothing=cfg.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            scheduler.step_update(step)
            loss_sum += loss.detach() * len(y)
            images += len(y)
        entry = {"epoch": epoch, "train_loss": loss_sum.item() / len(data),  # .item() syncs once per epoch
                 "lr": optimizer.param_groups[0]["lr"]}
        train_seconds += time.perf_counter() - t0
        if on_epoch is not None:
            entry.update(on_epoch(epoch))
        history.append(entry)
    return {"history": history, "train_seconds": train_seconds, "images_seen": images}
