"""The optimizer and its learning-rate schedule, as the recipe says (README: Recipes).

Apart from the loop so that the recipe checks (tests/test_recipes.py) and the run record's
`effective_lr` read the same rules the loop trains with, without the loop's machinery.
"""
import math

import torch
import torch.nn as nn
from timm.optim import param_groups_weight_decay
from timm.scheduler import CosineLRScheduler

from bench.config import OPTIMIZERS, SCHED_UNITS, WD_POLICIES, TrainConfig


def base_lr(cfg: TrainConfig) -> float:
    """The peak learning rate: `lr`, scaled by batch_size / lr_base_batch when that is set (VPT's rule)."""
    return cfg.lr * cfg.batch_size / cfg.lr_base_batch if cfg.lr_base_batch > 0 else cfg.lr


def param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict]:
    """The trainable parameters in weight-decay groups, as `cfg.wd_policy` says.

    timm: no decay on biases, norms and other 1-D parameters (timm's `param_groups_weight_decay`,
    which the SSF and NOAH code use); all: one group, everything decayed (PETL_Vision's plain
    AdamW); vpt: everything decayed except the classifier's bias (VPT's SGD groups).
    """
    if cfg.wd_policy not in WD_POLICIES:
        raise ValueError(f"train.wd_policy={cfg.wd_policy!r}; valid: {', '.join(WD_POLICIES)}")
    if cfg.wd_policy == "timm":
        return param_groups_weight_decay(model, cfg.weight_decay)
    trainable = [p for p in model.parameters() if p.requires_grad]
    if cfg.wd_policy == "all":
        return [{"params": trainable, "weight_decay": cfg.weight_decay}]
    head = model.get_classifier() if hasattr(model, "get_classifier") else model  # the fast path trains the head alone
    spare = {id(head.bias)} if getattr(head, "bias", None) is not None else set()
    return [{"params": [p for p in trainable if id(p) not in spare], "weight_decay": cfg.weight_decay},
            {"params": [p for p in trainable if id(p) in spare], "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg)
    if not any(p.requires_grad for g in groups for p in g["params"]):
        raise ValueError("no trainable parameters: the method froze everything")
    groups = [g for g in groups if g["params"]]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=base_lr(cfg), momentum=cfg.momentum)
    if cfg.optimizer != "adamw":
        raise ValueError(f"train.optimizer={cfg.optimizer!r}; valid: {', '.join(OPTIMIZERS)}")
    # fused AdamW: one kernel per parameter group; on the CPU it was 3-12 % faster per step than
    # the per-tensor default on the tiny backbones (a one-off timing on this project's machine)
    fused = cfg.fused_adamw if cfg.fused_adamw is not None else (device.type in ("cuda", "cpu") or None)
    return torch.optim.AdamW(groups, lr=base_lr(cfg), fused=fused)


def make_schedule(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps: int) -> CosineLRScheduler:
    """timm's warm-up + cosine schedule in the recipe's unit (optimizer steps or epochs).

    With `sched_unit=epoch` the loop calls `scheduler.step(t)` at the start of every epoch and
    never per step, so the rate is constant within an epoch, as in the official loops (timm's
    `t_in_epochs=True`): SSF's epoch 0 runs entirely at warmup_lr. Past `epochs` (cooldown) the
    rate is `min_lr`. `warmup_prefix` starts the cosine after the warm-up (VPT's schedule:
    linear from 0, cosine over the remaining epochs).
    """
    if cfg.sched_unit not in SCHED_UNITS:
        raise ValueError(f"train.sched_unit={cfg.sched_unit!r}; valid: {', '.join(SCHED_UNITS)}")
    per_step = cfg.sched_unit == "step"
    t_initial = cfg.epochs * steps if per_step else cfg.epochs
    warmup = math.ceil(cfg.warmup_epochs * steps) if per_step else cfg.warmup_epochs
    if cfg.warmup_prefix:
        t_initial -= warmup
    return CosineLRScheduler(optimizer, t_initial=max(t_initial, 1), lr_min=cfg.min_lr, warmup_t=warmup,
                             warmup_lr_init=cfg.warmup_lr, warmup_prefix=cfg.warmup_prefix, t_in_epochs=not per_step)


def schedule_epoch(cfg: TrainConfig, epoch: int) -> int:
    """The schedule's epoch for 1-based loop epoch `epoch` under `sched_unit=epoch` (see `sched_lag`)."""
    return max(epoch - 1 - cfg.sched_lag, 0)
