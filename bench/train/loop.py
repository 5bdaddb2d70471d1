"""The training loop: one readable function.

The optimizer (AdamW or SGD), which parameters get weight decay (`wd_policy`), and the
schedule are the recipe's (docs/recipes.md). The schedule is timm's warm-up + cosine
(`CosineLRScheduler`), then `cooldown_epochs` at the minimum rate, and it moves either every
optimizer step (`sched_unit=step`, the mini benchmark) or once per epoch, held within it
(`sched_unit=epoch`: timm's `t_in_epochs`, as the official SSF, NOAH, VPT and PETL_Vision
loops step it; `sched_lag` says at which epoch boundary). Only parameters with
`requires_grad` are optimised, so a frozen backbone never gets weight gradients computed.
Mixup/cutmix (with label smoothing) and model EMA come from timm.

Speed: bf16 autocast and TF32 on CUDA, fused AdamW (CUDA and CPU), optional channels-last and
torch.compile; the loss is summed on the device and read once per epoch, so the inner loop
never waits for the host.

Several processes (bench/train/dist.py): the model is wrapped in DistributedDataParallel, each rank
trains on its part of every global batch (`batch_size` is the global batch), with its loss
scaled so the averaged gradient is the global batch's mean, exactly as one process; mixup
mixes within a rank's part, as timm's and the SSF code's distributed training do.
"""
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.data import Mixup
from timm.loss import SoftTargetCrossEntropy
from timm.utils import ModelEmaV3
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from bench.config import TrainConfig
from bench.data.batching import batches, n_batches
from bench.train import checkpoint as ckpt
from bench.train import dist
from bench.train.optim import make_optimizer, make_schedule, schedule_epoch


def autocast_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `cfg.amp` on `device` (None: full precision)."""
    if cfg.amp not in ("auto", "bf16", "off"):
        raise ValueError(f"train.amp={cfg.amp!r}; valid: auto, bf16, off")
    if cfg.amp == "off" or (cfg.amp == "auto" and device.type != "cuda"):
        return None
    return torch.bfloat16


def steps_per_epoch(n: int, cfg: TrainConfig, drop_last: bool) -> int:
    """Optimizer steps in one epoch of `n` images (1,000 at batch 64: 15 with drop_last, 16 without)."""
    return n_batches(n, cfg.batch_size, drop_last)




def train(model: nn.Module, data: Dataset, cfg: TrainConfig, *, num_classes: int, seed: int,
          device: torch.device, on_epoch: Callable[[int, nn.Module], dict] | None = None,
          desc: str = "train", channels_last: bool = False, checkpoint: Path | None = None,
          checkpoint_config: dict | None = None, tracker=None) -> dict:
    """Train `model` in place on `data` for `cfg.epochs + cfg.cooldown_epochs` epochs.

    Args:
        on_epoch: called after each epoch with the epoch number (1-based) and the model to
            evaluate (the EMA when enabled); the dict it returns (for example val top-1) is
            merged into that epoch's history entry; `"pruned": True` among them stops training after it.
        checkpoint: file to resume from when it exists (and was written with the same
            `checkpoint_config`), and to write every `cfg.checkpoint_every` epochs.
        tracker: experiment trackers (bench.trackers.Trackers): started once the loop knows whether it
            resumed (a resumed run continues its tracker run), then told each step and epoch.

    Returns:
        dict with `history` (one entry per epoch: train_loss, lr, and on_epoch's keys),
        `eval_model` (the EMA copy when enabled, else `model`), `train_seconds` (time in
        optimizer steps, evaluation excluded), `images_seen`, `steps` (optimizer steps in all)
        and `resumed_from_epoch` (0: fresh).
    """
    # --- optimizer and schedule -----------------------------------------------------------
    optimizer = make_optimizer(model, cfg, device)
    amp = autocast_dtype(cfg, device)
    if device.type == "cuda" and cfg.tf32:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    if channels_last:
        model.to(memory_format=torch.channels_last)
    mixup, world = None, dist.world()
    if cfg.batch_size % world:
        raise ValueError(f"train.batch_size={cfg.batch_size} (the global batch) does not divide over {world} processes")
    if cfg.mixup > 0 or cfg.cutmix > 0:
        if (cfg.batch_size // world) % 2:  # timm's Mixup mixes each image with its mirror in the (rank's) batch
            raise ValueError(f"train.batch_size={cfg.batch_size} must be even per process ({world} processes) with "
                             f"train.mixup={cfg.mixup} / train.cutmix={cfg.cutmix} (timm's Mixup pairs a batch's images)")
        mixup = Mixup(mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, label_smoothing=cfg.label_smoothing,
                      num_classes=num_classes)
    if world > 1:  # frozen parameters never enter DDP's buckets (it reduces only those that require grad)
        step_model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    else:
        step_model = model
    step_model = torch.compile(step_model) if cfg.compile else step_model
    soft_ce = SoftTargetCrossEntropy()
    generator = torch.Generator().manual_seed(seed)
    drop_last = cfg.drop_last or mixup is not None  # mixup pairs need even batches
    n_steps = steps_per_epoch(len(data), cfg, drop_last)
    if n_steps == 0:
        raise ValueError(f"train.batch_size={cfg.batch_size} is larger than the {len(data)} training images "
                         "with train.drop_last=true: no optimizer step would run")
    scheduler = make_schedule(optimizer, cfg, n_steps)
    per_epoch = cfg.sched_unit == "epoch"

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
        if not per_epoch:
            scheduler.step_update(step)
        ckpt.set_rng_state(state["rng"], generator)
        print(f"[checkpoint] {desc}: resumed after epoch {state['epoch']} from {checkpoint}", flush=True)
    if tracker is not None:
        tracker.start(start - 1, step)

    # --- loop -------------------------------------------------------------------------------
    total_epochs = cfg.epochs + cfg.cooldown_epochs
    saved_at = time.perf_counter()  # checkpoints: every checkpoint_every epochs, checkpoint_interval_s apart
    for epoch in range(start, total_epochs + 1):
        if per_epoch:
            scheduler.step(schedule_epoch(cfg, epoch))  # held for the whole epoch
        model.train()
        loss_sum, seen = torch.zeros((), device=device), 0  # loss summed on device: no host sync per step
        t0 = time.perf_counter()
        for i, (x, y) in enumerate(tqdm(batches(data, cfg.batch_size, generator, drop_last, shard=dist.shard()),
                                        total=n_steps, desc=f"{desc} epoch {epoch}/{total_epochs}", leave=False,
                                        disable=not cfg.progress or not dist.is_main())):
            x = x.to(device, non_blocking=True, memory_format=memory_format)
            y = y.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
                if mixup is not None:
                    x, soft = mixup(x, y)  # soft: (B, num_classes) mixed, smoothed targets
                    loss = soft_ce(step_model(x), soft) if world == 1 else \
                        torch.sum(-soft * F.log_softmax(step_model(x), dim=-1), dim=-1).sum()
                else:
                    loss = F.cross_entropy(step_model(x), y, label_smoothing=cfg.label_smoothing,
                                           reduction="mean" if world == 1 else "sum")
            optimizer.zero_grad(set_to_none=True)
            if world > 1:  # this rank's summed loss over the global batch, times the world DDP divides by
                n_global = min(cfg.batch_size, len(data) - i * cfg.batch_size)
                (loss * (world / n_global)).backward()
            else:
                loss.backward()
            optimizer.step()
            step += 1
            if not per_epoch:
                scheduler.step_update(step)
            if ema is not None:
                ema.update(model, step=step)
            if tracker:  # its every_n_steps decides; the loss is read (a host sync) only on a step it logs
                tracker.log_step(step, loss.detach() if world == 1 else loss.detach() / len(y),
                                 optimizer.param_groups[0]["lr"])
            loss_sum += loss.detach() * len(y) if world == 1 else loss.detach()
            seen += len(y)
        total, seen = dist.all_sum(loss_sum.item(), seen)  # .item() syncs once per epoch; summed over ranks
        seen = int(seen)
        images += seen
        entry = {"epoch": epoch, "train_loss": total / max(seen, 1),
                 "lr": optimizer.param_groups[0]["lr"]}
        epoch_s = time.perf_counter() - t0
        train_seconds += epoch_s
        if on_epoch is not None:
            entry.update(on_epoch(epoch, ema.module if ema is not None else model))
        history.append(entry)
        if tracker is not None:
            tracker.log_epoch(epoch, step, entry | {"epoch_time_s": epoch_s, "images_per_s": seen / max(epoch_s, 1e-9)})
        if entry.get("pruned"):  # on_epoch's pruner stopped this trial (bench/prune.py): no further epoch
            break
        if checkpoint is not None and cfg.checkpoint_every > 0 and epoch % cfg.checkpoint_every == 0 \
                and epoch < total_epochs and time.perf_counter() - saved_at >= cfg.checkpoint_interval_s:
            saved_at = time.perf_counter()
            if dist.is_main():  # one writer; every rank resumes from it
                ckpt.save(checkpoint, {
                    "config": checkpoint_config, "epoch": epoch, "step": step, "history": history,
                    "train_seconds": train_seconds, "images": images, "rng": ckpt.rng_state(generator),
                    "params": {n: p.detach().cpu() for n, p in trainable.items()},
                    "optimizer": optimizer.state_dict(), "ema": ema.state_dict() if ema is not None else None})
    return {"history": history, "eval_model": ema.module if ema is not None else model,
            "train_seconds": train_seconds, "images_seen": images, "steps": step, "resumed_from_epoch": start - 1}
