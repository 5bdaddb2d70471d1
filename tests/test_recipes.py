"""Recipes: the official schedules (hand-computed), batches per epoch, composition per recipe x method x
backbone, validation before any record, and the loop's learning rate at every optimizer step."""
import math

import pytest
import torch
import torch.nn as nn
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from torch.utils.data import TensorDataset

from bench import CONF, recipes
from bench.config import TrainConfig
from bench.launch.identity import to_run_config
from bench.train.loop import steps_per_epoch, train
from bench.train.optim import make_optimizer, param_groups
from conftest import run_cli


def composed(*overrides: str):
    """launch.py's RunConfig for `overrides`, composed by Hydra as a job would be."""
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose("config", overrides=list(overrides))
    return to_run_config(OmegaConf.to_container(cfg, resolve=True), list(overrides))


def official_ssf_lr(epoch: int, lr: float, warmup_lr=1e-7, min_lr=1e-8, warmup=10, epochs=100) -> float:
    """timm 0.6.5 CosineLRScheduler._get_lr(t) for SSF's arguments, written out (anchors.md 8)."""
    if epoch < warmup:
        return warmup_lr + epoch * (lr - warmup_lr) / warmup
    if epoch >= epochs:  # past one cycle: the cooldown epochs at min_lr
        return min_lr
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * epoch / epochs))


def lrs_per_step(cfg: TrainConfig, n: int = 1000) -> list[float]:
    """The learning rate of every optimizer step our loop takes on `n` images (a tiny linear model)."""
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    data = TensorDataset(torch.randn(n, 4), torch.randint(0, 3, (n,)))
    seen = []
    orig = torch.optim.AdamW.step if cfg.optimizer == "adamw" else torch.optim.SGD.step

    def spy(self, *a, **k):
        seen.append(self.param_groups[0]["lr"])
        return orig(self, *a, **k)

    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.SGD
    cls.step = spy
    try:
        train(model, data, cfg, num_classes=3, seed=0, device=torch.device("cpu"))
    finally:
        cls.step = orig
    return seen


def test_ssf_dtd_schedule_equals_the_official_one_at_every_step():
    rc = composed("dataset=vtab/dtd", "method=ssf")
    cfg = rc.train
    assert (cfg.lr, cfg.sched_unit, cfg.sched_lag, cfg.drop_last, cfg.epochs, cfg.cooldown_epochs) == \
        (5e-3, "epoch", 0, True, 100, 10)
    import dataclasses
    cfg = dataclasses.replace(cfg, progress=False, checkpoint_every=0)
    lrs = lrs_per_step(cfg)
    assert len(lrs) == 1650  # 15 steps (1,000 // 64, the partial batch dropped) x 110 epochs
    expected = [official_ssf_lr(e, 5e-3) for e in range(110) for _ in range(15)]
    assert lrs == pytest.approx(expected, rel=1e-12, abs=1e-15)
    # hand-computed points (epochs 0-based as the official loop counts them)
    by_epoch = {e: lrs[e * 15] for e in (0, 1, 9, 10, 50, 99, 100, 109)}
    assert by_epoch[0] == pytest.approx(1e-7)  # the whole first epoch at warmup_lr
    assert by_epoch[1] == pytest.approx(1e-7 + (5e-3 - 1e-7) / 10)  # 5.0009e-4
    assert by_epoch[9] == pytest.approx(1e-7 + 9 * (5e-3 - 1e-7) / 10)
    assert by_epoch[10] == pytest.approx(1e-8 + 0.5 * (5e-3 - 1e-8) * (1 + math.cos(math.pi * 0.1)))
    assert by_epoch[50] == pytest.approx(1e-8 + 0.5 * (5e-3 - 1e-8))  # half-way: cos(pi / 2) = 0
    assert by_epoch[99] == pytest.approx(1e-8 + 0.5 * (5e-3 - 1e-8) * (1 + math.cos(math.pi * 0.99)))
    assert by_epoch[100] == by_epoch[109] == pytest.approx(1e-8)  # cooldown
    assert len(set(lrs[15:30])) == 1  # held within an epoch


def test_noah_and_vpt_schedules():
    noah = composed("dataset=vtab/dtd", "method=lora", "recipe=noah").train
    import dataclasses
    lrs = lrs_per_step(dataclasses.replace(noah, progress=False, checkpoint_every=0))
    assert len(lrs) == 100 * 15  # no cooldown run, drop_last
    per_epoch = lrs[::15]
    # lr_scheduler.step(epoch) after epoch `epoch`: epoch e trains at the value at e - 1
    assert per_epoch[0] == per_epoch[1] == pytest.approx(1e-6)
    assert per_epoch[2] == pytest.approx(1e-6 + (1e-3 - 1e-6) / 10)
    assert per_epoch[11] == pytest.approx(1e-5 + 0.5 * (1e-3 - 1e-5) * (1 + math.cos(math.pi * 10 / 100)))
    vpt = composed("dataset=vtab/dtd", "method=vpt", "recipe=vpt").train
    assert vpt.optimizer == "sgd" and vpt.batch_size == 128 and not vpt.drop_last
    lrs = lrs_per_step(dataclasses.replace(vpt, progress=False, checkpoint_every=0))
    assert len(lrs) == 100 * 8  # ceil(1000 / 128): the partial batch kept (one GPU)
    base = 1e-2 * 128 / 256  # VPT scales the grid's lr by batch / 256
    per_epoch = lrs[::8]
    # WarmupCosineSchedule: base * e / 10, then 0.5 (1 + cos(pi (e - 10) / 90))
    for e in (0, 1, 5, 10, 55, 99):
        want = base * e / 10 if e < 10 else base * 0.5 * (1 + math.cos(math.pi * (e - 10) / 90))
        assert per_epoch[e] == pytest.approx(want, abs=1e-15)


def test_steps_per_epoch_with_and_without_drop_last():
    cfg = TrainConfig(batch_size=64)
    assert steps_per_epoch(1000, cfg, drop_last=True) == 15
    assert steps_per_epoch(1000, cfg, drop_last=False) == 16
    assert steps_per_epoch(960, cfg, drop_last=True) == steps_per_epoch(960, cfg, drop_last=False) == 15
    data = TensorDataset(torch.randn(10, 4), torch.randint(0, 3, (10,)))
    with pytest.raises(ValueError, match="batch_size=64 is larger than the 10 training images"):
        train(nn.Linear(4, 3), data, TrainConfig(batch_size=64, drop_last=True, progress=False, epochs=1),
              num_classes=3, seed=0, device=torch.device("cpu"))


def test_weight_decay_policies(tiny_vit):
    from methods import get_method, method_config

    model = get_method("bias").apply(tiny_vit(), method_config("bias", {}))
    head_bias = model.get_classifier().bias
    decayed = lambda policy: {id(p) for g in param_groups(model, TrainConfig(wd_policy=policy, weight_decay=0.1))
                              if g["weight_decay"] > 0 for p in g["params"]}
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert decayed("timm") == {id(model.get_classifier().weight)}  # biases never decayed
    assert decayed("all") == trainable
    assert decayed("vpt") == trainable - {id(head_bias)}
    assert isinstance(make_optimizer(model, TrainConfig(optimizer="sgd", momentum=0.9), torch.device("cpu")),
                      torch.optim.SGD)


@pytest.mark.parametrize("recipe,method,backbone,expect", [
    ("ssf", "ssf", "vit_base_patch16_224.augreg_in21k", {"lr": 5e-3, "wd_policy": "timm"}),
    ("noah", "adapter", "vit_base_patch16_224.orig_in21k", {"lr": 1e-3, "drop_path": 0.1, "sched_lag": 1}),
    ("vpt", "linear", "tiny_vit", {"batch_size": 1024, "optimizer": "sgd", "head_init": "vpt"}),
    ("vpt", "full", "tiny_vit", {"batch_size": 384, "optimizer": "adamw", "warmup_epochs": 5}),
    ("petl_vision", "lora", "tiny_vit", {"wd_policy": "all", "drop_path": 0.1, "min_lr": 1e-5}),
])
def test_recipe_composition_per_method_and_backbone(recipe, method, backbone, expect):
    rc = composed("dataset=vtab/dtd", f"method={method}", f"backbone={backbone}", f"recipe={recipe}")
    assert rc.recipe.name == recipe
    assert {k: getattr(rc.train, k) for k in expect} == expect
    assert rc.variant == ("" if recipe == "ssf" else recipe)  # the default recipe adds nothing to the name


def test_recipe_method_arguments_and_the_command_line_wins():
    adapter = composed("dataset=vtab/dtd", "method=adapter", "recipe=noah")
    assert adapter.method_args == {"bottleneck": 8, "scale": 1.0, "init": "trunc_normal", "act": "quick_gelu",
                                   "dropout": 0.1, "drop_path": "sublayer"}  # as NOAH's runs trained it
    assert adapter.dataset.norm == "imagenet"
    assert composed("dataset=vtab/dtd", "method=vpt", "recipe=noah").dataset.norm == "inception"  # --inception
    lora = composed("dataset=vtab/dtd", "method=lora", "recipe=petl_vision", "method.r=16", "train.lr=0.01")
    assert (lora.method_args["r"], lora.method_args["alpha"], lora.method_args["dropout"]) == (16, None, 0.1)
    assert lora.train.lr == 0.01 and lora.variant == "petl_vision_r16_lr0.01"
    mini = composed("dataset=mini/count", "method=lora")
    assert mini.recipe.name == "mini" and mini.train.sched_unit == "step" and mini.method_args["r"] == 4
    cifar = composed("dataset=cifar100/cifar100", "method=full", "backbone=swin_base_patch4_window7_224.ms_in22k")
    assert (cifar.train.lr, cifar.train.drop_path, cifar.train.sched_unit) == (5e-5, 0.1, "epoch")


def test_noah_adapter_init_and_quick_gelu():
    from methods._bottleneck import Bottleneck, QuickGELU
    from methods.adapter import INIT

    torch.manual_seed(0)
    a = Bottleneck(96, 8, 1.0, init=INIT["noah"], act="quick_gelu")
    assert isinstance(a.act, QuickGELU) and a.up.weight.abs().sum() > 0  # not zero-initialised
    bound = math.sqrt(6 / (96 + 8))  # Xavier-uniform
    assert a.down.weight.abs().max() <= bound and a.up.weight.abs().max() <= bound
    assert a.up.bias.abs().max() < 1e-5 and a.down.bias.std() > 0
    x = torch.randn(5)
    assert torch.allclose(a.act(x), x * torch.sigmoid(1.702 * x))


def test_every_recipe_names_what_it_defines():
    for name in recipes.names():
        r = recipes.info(name)
        assert r["name"] == name and r["source"] and r["selection"] and r["benchmarks"] and r["methods"]
    assert recipes.default_for("vtab") == recipes.default_for("fgvc") == "ssf"
    assert recipes.default_for("mini") == "mini"
    with pytest.raises(ValueError, match="recipe 'noah' does not define method 'ssf'"):
        recipes.check(["noah"], ["ssf"], ["vtab/dtd"])
    with pytest.raises(ValueError, match="does not define benchmark 'fgvc'"):
        recipes.check(["petl_vision"], ["vpt"], ["fgvc/cub"])
    recipes.check(["vpt"], ["vpt", "linear", "full", "bias"], ["fgvc/cub"])  # VPT's FGVC rows
    recipes.check([], ["ssf"], ["vtab/dtd", "mini/count"])  # the defaults cover every method


@pytest.mark.parametrize("args,message", [
    (["recipe=noah", "method=ssf", "dataset=vtab/dtd"], "recipe 'noah' does not define method 'ssf'"),
    (["recipe=nope"], "option 'nope' matches no option of config group 'recipe'"),
])
@pytest.mark.process
def test_a_bad_recipe_stops_before_any_record(tmp_path, args, message):
    proc = run_cli("launch.py", *args, f"results_dir={tmp_path}", timeout=120)
    assert proc.returncode == 2 and message in proc.stderr
    assert "noah: vtab (adapter, lora, vpt)" in proc.stderr or "valid options: adapter_plus, mini, noah" in proc.stderr
    assert "Traceback" not in proc.stderr and not list(tmp_path.rglob("record.json"))


@pytest.mark.process
def test_noah_sweep_composes_57_runs_named_by_the_recipe(tmp_path):
    proc = run_cli("launch.py", "--status", "-m", "method=adapter,lora,vpt", "dataset=vtab/*", "recipe=noah",
                   f"results_dir={tmp_path}", timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "57 runs in the grid" in proc.stdout and proc.stdout.strip().splitlines()[-1].split()[1:] == \
        ["0", "0", "0", "57", "0"]


@pytest.mark.process
def test_grid_config_sweeps_the_method_knobs(tmp_path):
    proc = run_cli("launch.py", "--status", "-m", "method=lora", "dataset=vtab/dtd", "recipe=petl_vision",
                   "grid=petl_vision/lora", f"results_dir={tmp_path}", timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "16 runs in the grid" in proc.stdout  # 2 lr x 2 wd x 4 ranks
