"""recipe=adapter_plus: visinf/adapter_plus's VTAB-1k settings as its code runs them, and its learning rate at
every epoch against its LinearWarmupCosineAnnealingLR written out (modeling/lr_scheduler.py's closed form)."""
import math

import pytest
import torch

from bench import recipes
from bench.train.optim import make_schedule, schedule_epoch
from test_recipes import composed

LR = 1e-3


def official_lr(epoch: int) -> float:
    """The rate epoch `epoch` trains at: Lightning steps `scheduler.step(epoch=e)` after epoch e, so epoch e
    runs at the closed form's value at e - 1 (epoch 0 at the constructor's, the value at 0)."""
    v = max(epoch - 1, 0)
    start, eta = LR / 100, LR / 1000  # lr_start_factor 100, lr_factor 1000
    if v < 10:
        return start + v * (LR - start) / 9  # warmup_epochs - 1 steps: lr at v = 9
    return eta + 0.5 * (LR - eta) * (1 + math.cos(math.pi * (v - 10) / 90))


def test_settings_as_its_code_runs_them():
    rc = composed("dataset=vtab/dtd", "method=adapter_plus", "recipe=adapter_plus")
    t = rc.train
    assert (t.epochs, t.batch_size, t.lr, t.weight_decay, t.optimizer, t.wd_policy, t.drop_path, t.drop_last,
            t.label_smoothing, t.head_init) == (100, 64, 1e-3, 1e-4, "adamw", "timm", 0.1, True, 0.0, "timm")
    assert (rc.dataset.resize, rc.dataset.interpolation, rc.dataset.train_aug, rc.dataset.norm) == \
        ("squash", "bilinear", "none", "backbone")
    assert rc.method_args == {"bottleneck": 8, "position": "post", "scaling": "channel", "scale": 1.0,
                              "init": "houlsby", "norm": False, "bias": True, "dropout": 0.0, "branch_drop_path": 0.1}
    assert rc.recipe.retrain_seeds == [18, 45, 25] and rc.recipe.checkpoint == "vit_base_patch16_224.orig_in21k"
    assert rc.variant == "adapter_plus" and rc.recipe.differences
    # its baselines: finetune.yaml at lr 1e-4, classifier.yaml with the shared settings (drop path on: no fast path)
    assert composed("dataset=vtab/dtd", "method=full", "recipe=adapter_plus").train.lr == 1e-4
    linear = composed("dataset=vtab/dtd", "method=linear", "recipe=adapter_plus").train
    assert linear.lr == 1e-3 and linear.drop_path == 0.1
    assert recipes.covers("adapter_plus", "lora", "vtab") and not recipes.covers("adapter_plus", "lora", "fgvc")


def test_schedule_equals_the_official_one_after_the_warm_up():
    """The rules the loop steps by (bench.train.optim; tests/test_recipes.py checks the loop applies them)."""
    t = composed("dataset=vtab/dtd", "method=adapter_plus", "recipe=adapter_plus").train
    optimizer = torch.optim.AdamW([torch.zeros(1, requires_grad=True)], lr=t.lr)
    schedule = make_schedule(optimizer, t, steps=15)
    per_epoch = [schedule._get_lr(schedule_epoch(t, e + 1))[0] for e in range(t.epochs)]  # loop epochs are 1-based
    assert per_epoch[0] == per_epoch[1] == pytest.approx(official_lr(0))  # lr / 100 for two epochs
    for e in range(11, 100):  # the cosine, from the value at 10 on: equal
        assert per_epoch[e] == pytest.approx(official_lr(e), rel=1e-9), e
    for e in range(2, 11):  # the warm-up (recipe `differences`): timm's 10 steps against its 9
        assert official_lr(e) - LR / 10 <= per_epoch[e] <= official_lr(e), e
