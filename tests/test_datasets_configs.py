"""The 26 dataset configs and their recipes: composed by Hydra exactly as anchors.md 1.3 tabulates them."""
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from bench import CONF
from bench.analysis.benchmarks import BENCHMARK_TASKS, VTAB_GROUPS
from bench.launch.cli import expand_group_args, group_options
from bench.launch.identity import to_run_config

SWIN, CONVNEXT, VIT = "swin_base_patch4_window7_224.ms_in22k", "convnext_base.fb_in22k", "vit_base_patch16_224.augreg_in21k"
REAL = [o for o in group_options("dataset") if o.split("/")[0] in ("vtab", "fgvc", "cifar100", "imagenet")]  # the SSF paper's 26
# task: (classes, lr, weight decay, drop-path) -- SSF's VTAB-1k table (anchors.md 1.3)
VTAB = {"cifar": (100, 5e-3, 5e-5, 0), "caltech101": (102, 1e-3, 5e-2, 0.1), "dtd": (47, 5e-3, 5e-5, 0),
        "oxford_flowers102": (102, 5e-3, 5e-5, 0), "oxford_iiit_pet": (37, 5e-3, 5e-5, 0), "svhn": (10, 1e-2, 5e-5, 0),
        "sun397": (397, 5e-3, 5e-5, 0), "patch_camelyon": (2, 5e-3, 5e-5, 0), "eurosat": (10, 3e-3, 5e-2, 0.2),
        "resisc45": (45, 2e-3, 5e-5, 0.1), "diabetic_retinopathy": (5, 5e-3, 5e-5, 0.2),
        "clevr_count": (8, 2e-3, 5e-2, 0.1), "clevr_dist": (6, 5e-2, 5e-2, 0.1), "dmlab": (6, 5e-3, 5e-5, 0.1),
        "kitti": (4, 1e-2, 5e-5, 0), "dsprites_loc": (16, 1e-2, 5e-5, 0), "dsprites_ori": (16, 5e-3, 5e-5, 0.2),
        "smallnorb_azi": (18, 2e-2, 5e-5, 0.1), "smallnorb_ele": (9, 5e-3, 5e-2, 0.2)}
# name: (classes, lr, drop-path, EMA decay) -- SSF's FGVC table (anchors.md 1.3)
FGVC = {"cub": (200, 1e-2, 0, 0.9998), "nabirds": (555, 2e-4, 0.1, 0.9998), "oxford_flowers": (102, 1e-2, 0.1, 0.999),
        "stanford_cars": (196, 2e-2, 0, 0.9998), "stanford_dogs": (120, 2.5e-4, 0, 0.9998)}


def run_config(*overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose("config", overrides=list(overrides))
    return to_run_config(OmegaConf.to_container(cfg, resolve=True), list(overrides))


def test_26_dataset_configs_mirror_the_benchmark_lists():
    expected = [t for b in ("vtab", "fgvc", "cifar100", "imagenet") for t in BENCHMARK_TASKS[b]]
    assert sorted(REAL) == sorted(expected) and len(REAL) == 26


def test_vtab_glob_expands_to_the_19_tasks():
    (arg,) = expand_group_args(["dataset=vtab/*"])
    assert sorted(arg.removeprefix("dataset=").split(",")) == sorted(f"vtab/{t}" for t in VTAB)


@pytest.mark.parametrize("name", REAL)
def test_every_dataset_config_composes(name):
    rc = run_config(f"dataset={name}")
    d = rc.dataset
    assert d.name == name and d.benchmark == name.split("/")[0] and d.task == name.split("/")[1]
    assert d.image_size == 224 and d.format != "generated" and d.root and d.splits
    assert d.data_root == "data"  # config.yaml: ${oc.env:BENCH_DATA_ROOT,data}


@pytest.mark.parametrize("task", sorted(VTAB))
def test_vtab_recipe_is_ssf_table(task):
    classes, lr, wd, dp = VTAB[task]
    rc = run_config(f"dataset=vtab/{task}")
    d, t = rc.dataset, rc.train
    group = next(g for g, ts in VTAB_GROUPS.items() if task in ts)
    assert (d.num_classes, d.group, d.format, d.root) == (classes, group, "vtab_txt", f"vtab-1k/{task}")
    assert {k: v for k, v in d.splits.items() if k != "test"} == {"train": 800, "val": 200, "trainval": 1000}
    assert (t.lr, t.weight_decay, t.drop_path) == (lr, wd, dp)
    assert (t.epochs, t.cooldown_epochs, t.warmup_epochs, t.warmup_lr, t.min_lr, t.batch_size) == (100, 10, 10, 1e-7, 1e-8, 64)
    assert (t.mixup, t.cutmix, t.label_smoothing, t.ema_decay) == (0, 0, 0, 0)
    assert (d.resize, d.interpolation, d.train_aug, d.cache) == ("squash", "bicubic", "none", "disk")


@pytest.mark.parametrize("name", sorted(FGVC))
def test_fgvc_recipe_is_ssf_table(name):
    classes, lr, dp, ema = FGVC[name]
    rc = run_config(f"dataset=fgvc/{name}")
    d, t = rc.dataset, rc.train
    assert (d.num_classes, d.format, t.lr, t.weight_decay, t.drop_path, t.ema_decay) == (classes, "fgvc_json", lr, 5e-2, dp, ema)
    assert (t.mixup, t.cutmix, t.label_smoothing, t.epochs, t.cooldown_epochs) == (0.8, 1.0, 0.1, 100, 10)
    assert (d.train_aug, d.resize, d.crop_pct) == ("simple", "crop", 0.9)
    assert d.splits["train"] + d.splits["val"] == d.splits["trainval"]  # VPT's train + val = the official train set


@pytest.mark.parametrize("dataset, backbone, method, expected", [
    # (lr, drop-path, warmup_lr, min_lr, EMA) -- SSF's CIFAR-100 / ImageNet-1k table (anchors.md 1.3)
    ("cifar100/cifar100", VIT, "ssf", (1e-3, 0, 1e-7, 1e-8, 0.99992)),
    ("cifar100/cifar100", VIT, "full", (5e-5, 0, 1e-7, 1e-8, 0.99992)),
    ("cifar100/cifar100", SWIN, "full", (5e-5, 0.1, 5e-7, 5e-8, 0)),
    ("cifar100/cifar100", SWIN, "ssf", (5e-3, 0, 5e-7, 5e-8, 0)),
    ("cifar100/cifar100", CONVNEXT, "full", (5e-5, 0.2, 5e-7, 5e-8, 0.99992)),
    ("cifar100/cifar100", CONVNEXT, "ssf", (1e-3, 0, 1e-7, 1e-8, 0.99992)),
    ("imagenet/imagenet", VIT, "ssf", (1e-3, 0.1, 1e-7, 1e-8, 0.99992)),
    ("imagenet/imagenet", VIT, "linear", (1e-4, 0.1, 1e-7, 1e-8, 0.99992)),
    ("imagenet/imagenet", SWIN, "linear", (5e-3, 0.1, 5e-7, 5e-8, 0)),
    ("imagenet/imagenet", CONVNEXT, "full", (5e-5, 0.2, 5e-7, 5e-8, 0.99992)),
])
def test_per_method_and_per_backbone_recipes(dataset, backbone, method, expected):
    t = run_config(f"dataset={dataset}", f"backbone={backbone}", f"method={method}").train
    assert (t.lr, t.drop_path, t.warmup_lr, t.min_lr, t.ema_decay) == expected


def test_imagenet_recipe_and_robustness_sets():
    rc = run_config("dataset=imagenet/imagenet")
    t, d = rc.train, rc.dataset
    assert (t.epochs, t.warmup_epochs, t.cooldown_epochs, t.batch_size) == (30, 5, 10, 256)
    assert (d.train_aug, d.auto_augment, d.re_prob, d.cache) == ("timm", "rand-m9-mstd0.5-inc1", 0.25, "none")
    assert sorted(d.robustness) == ["imagenet_a", "imagenet_c", "imagenet_r"]


def test_command_line_wins_over_every_recipe_layer():
    rc = run_config("dataset=cifar100/cifar100", f"backbone={SWIN}", "method=full", "train.lr=0.123")
    assert rc.train.lr == 0.123 and rc.train.drop_path == 0.1


@pytest.mark.parametrize("method, lr", [("full", 2e-3), ("linear", 1e-1), ("bias", 3e-2), ("adapter", 3e-2),
                                        ("vpt", 3e-2), ("vpt_shallow", 1e-1), ("lora", 1e-2), ("ssf", 3e-2)])
def test_mini_learning_rates_are_unchanged(method, lr):
    for task in ("mini/digits", "mini/count"):
        t = run_config(f"dataset={task}", f"method={method}").train
        assert t.lr == lr and t.weight_decay == (0.05 if method == "full" else 1e-4) and t.epochs == 8  # conf/recipe/base/mini


def test_data_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("BENCH_DATA_ROOT", str(tmp_path))
    assert run_config("dataset=vtab/dtd").dataset.data_root == str(tmp_path)
