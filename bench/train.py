"""The training loop: one readable function.

AdamW with timm's weight-decay param groups (no decay on biases, norms and other 1-D
parameters, as the SSF code does), linear warm-up then cosine annealing from timm's
scheduler, stepped per optimizer step, then `cooldown_epochs` at the minimum rate. Only
parameters with `requires_grad` are optimised, so a frozen backbone never gets weight
gradients computed. Mixup/cutmix (with label smoothing) and model EMA come from timm.

Speed: bf16 autocast and TF32 on CUDA, fused AdamW (CUDA and CPU), optional channels-last and
torch.compile; the loss is summed on the device and read once per epoch, so the inner loop
never waits for the host.
"""
import math
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.data import Mixup
from timm.loss import SoftTargetCrossEntropy
from timm.optim import param_groups_weight_decay
from timm.scheduler import CosineLRScheduler
from timm.utils import ModelEmaV3
from torch.utils.data import DataLoader, Dataset, TensorDataset
from tqdm.auto import tqdm

from bench import checkpoint as ckpt
from bench.config import TrainConfig


def autocast_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `cfg.amp` on `device` (None: full precision)."""
    if cfg.amp not in ("auto", "bf16", "off"):
        raise ValueError(f"train.amp={cfg.amp!r}; valid: auto, bf16, off")
    if cfg.amp == "off" or (cfg.amp == "auto" and device.type != "cuda"):
        return None
    return torch.bfloat16


def train(model: nn.Module, data: Dataset, cfg: TrainConfig, *, num_classes: int, seed: int,
          device: torch.device, on_epoch: Callable[[int, nn.Module], dict] | None = None,
          desc: str = "train", channels_last: bool = False, checkpoint: Path | None = None,
          checkpoint_config: dict | None = None) -> dict:
    """Train `model` in place on `data` for `cfg.epochs + cfg.cooldown_epochs` epochs.

    Args:
        on_epoch: called after each epoch with the epoch number (1-based) and the model to
            evaluate (the EMA when enabled); the dict it returns (for example val top-1) is
            merged into that epoch's history entry.
        checkpoint: file to resume from when it exists (and was written with the same
            `checkpoint_config`), and to write every `cfg.checkpoint_every` epochs.

    Returns:
        dict with `history` (one entry per epoch: train_loss, lr, and on_epoch's keys),
        `eval_model` (the EMA copy when enabled, else `model`), `train_seconds` (time in
        optimizer steps, evaluation excluded), `images_seen` and `resumed_from_epoch` (0: fresh).
    """
    # --- optimizer and schedule -----------------------------------------------------------
    groups = param_groups_weight_decay(model, cfg.weight_decay)
    if not any(p.requires_grad for g in groups for p in g["params"]):
        raise ValueError("no trainable parameters: the method froze everything")
    # fused AdamW: one kernel per parameter group; on the CPU it was 3-12 % faster per step than
    # the per-tensor default on the tiny backbones (a one-off timing on this project's machine)
    fused = cfg.fused_adamw if cfg.fused_adamw is not None else (device.type in ("cuda", "cpu") or None)
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, fused=fused)
    amp = autocast_dtype(cfg, device)
    if device.type == "cuda" and cfg.tf32:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    if channels_last:
        model.to(memory_format=torch.channels_last)
    step_model = torch.compile(model) if cfg.compile else model
    mixup = None
    if cfg.mixup > 0 or cfg.cutmix > 0:
        mixup = Mixup(mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, label_smoothing=cfg.label_smoothing,
                      num_classes=num_classes)
    soft_ce = SoftTargetCrossEntropy()
    generator = torch.Generator().manual_seed(seed)
    drop_last = mixup is not None  # mixup pairs need even batches
    steps_per_epoch = len(data) // cfg.batch_size if drop_last else math.ceil(len(data) / cfg.batch_size)
    scheduler = CosineLRScheduler(optimizer, t_initial=cfg.epochs * steps_per_epoch, lr_min=cfg.min_lr,
                                  warmup_t=math.ceil(cfg.warmup_epochs * steps_per_epoch),
                                  warmup_lr_init=cfg.warmup_lr, t_in_epochs=False)

    ema = ModelEmaV3(model, decay=cfg.ema_decay) if cfg.ema_decay > 0 else None

    # --- resume --------------------------------------------------------------------------
    history, step, train_seconds, images, start = [], 0, 0.0, 0, 1
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    state = ckpt.load(checkpoint, checkpoint_config) if checkpoint is not None else None
    if state is not None:
        with torch.no_grad():
            for n, p in trainable.items():
                p.copy_(state["params"][n])
        optimizer.load_state_dict(state["optimizer"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        history, step, train_seconds, images = state["history"], state["step"], state["train_seconds"], state["images"]
        start = state["epoch"] + 1
        scheduler.step_update(step)
        ckpt.set_rng_state(state["rng"], generator)
        print(f"[checkpoint] {desc}: resumed after epoch {state['epoch']} from {checkpoint}", flush=True)

    # --- loop -------------------------------------------------------------------------------
    total_epochs = cfg.epochs + cfg.cooldown_epochs
    saved_at = time.perf_counter()  # checkpoints: every checkpoint_every epochs, checkpoint_interval_s apart
    for epoch in range(start, total_epochs + 1):
        model.train()
        loss_sum, seen = torch.zeros((), device=device), 0  # loss summed on device: no host sync per step
        t0 = time.perf_counter()
        for x, y in tqdm(batches(data, cfg.batch_size, generator, drop_last), total=steps_per_epoch,
                         desc=f"{desc} epoch {epoch}/{total_epochs}", leave=False, disable=not cfg.progress):
            x = x.to(device, non_blocking=True, memory_format=memory_format)
            y = y.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
                if mixup is not None:
                    x, soft = mixup(x, y)  # soft: (B, num_classes) mixed, smoothed targets
                    loss = soft_ce(step_model(x), soft)
                else:
                    loss = F.cross_entropy(step_model(x), y, label_smoothing=cfg.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            scheduler.step_update(step)
            if ema is not None:
                ema.update(model, step=step)
            loss_sum += loss.detach() * len(y)
            seen += len(y)
        images += seen
        entry = {"epoch": epoch, "train_loss": loss_sum.item() / max(seen, 1),  # .item() syncs once per epoch
                 "lr": optimizer.param_groups[0]["lr"]}
        train_seconds += time.perf_counter() - t0
        if on_epoch is not None:
            entry.update(on_epoch(epoch, ema.module if ema is not None else model))
        history.append(entry)
        if checkpoint is not None and cfg.checkpoint_every > 0 and epoch % cfg.checkpoint_every == 0 \
                and epoch < total_epochs and time.perf_counter() - saved_at >= cfg.checkpoint_interval_s:
            saved_at = time.perf_counter()
            ckpt.save(checkpoint, {
                "config": checkpoint_config, "epoch": epoch, "step": step, "history": history,
                "train_seconds": train_seconds, "images": images, "rng": ckpt.rng_state(generator),
                "params": {n: p.detach().cpu() for n, p in trainable.items()},
                "optimizer": optimizer.state_dict(), "ema": ema.state_dict() if ema is not None else None})
    return {"history": history, "eval_model": ema.module if ema is not None else model,
            "train_seconds": train_seconds, "images_seen": images, "resumed_from_epoch": start - 1}


def batches(data: Dataset, batch_size: int, generator: torch.Generator | None = None, drop_last: bool = False):
    """(x, y) batches of `data`, shuffled with `generator` when given.

    In-memory TensorDatasets (on the CPU or on the device) are sliced directly (one gather per
    batch instead of a Python call and a collate per image), then passed through the dataset's
    `batch_transform(x, generator)` when it has one (bench/data/device.py); anything else goes
    through a DataLoader.
    """
    if not isinstance(data, TensorDataset):
        yield from DataLoader(data, batch_size=batch_size, shuffle=generator is not None, drop_last=drop_last,
                              generator=generator, num_workers=getattr(data, "num_workers", 0),
                              pin_memory=torch.cuda.is_available())
        return
    n = len(data)
    where = data.tensors[0].device  # the split may be held on the GPU (bench/data/device.py)
    order = torch.randperm(n, generator=generator).to(where) if generator is not None else None
    stop = n - n % batch_size if drop_last else n
    for i in range(0, stop, batch_size):
        if order is None:
            x, *rest = (t[i:i + batch_size] for t in data.tensors)
        else:  # index_select: several times faster than t[idx] on the CPU (one-off timing: 22 vs 130 us, 64 x 32 px)
            idx = order[i:i + batch_size]
            x, *rest = (t.index_select(0, idx) for t in data.tensors)
        if hasattr(data, "batch_transform"):  # uint8 pixels: normalised (and augmented) per batch, where they are
            x = data.batch_transform(x, generator)
        yield (x, *rest)

