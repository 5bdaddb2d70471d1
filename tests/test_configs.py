"""Every config composes, mirrors the code, and becomes a valid RunConfig."""

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from bench import CONF
from bench.analysis.benchmarks import BENCHMARK_TASKS
from bench.launch.cli import group_options
from bench.launch.identity import to_run_config
from methods import METHODS


METHOD_CONFIGS = group_options("method")
MINI_TASKS = [o for o in group_options("dataset") if o.startswith("mini/")]


def test_method_configs_mirror_the_registry():
    assert METHOD_CONFIGS == sorted(METHODS)
    assert set(METHOD_CONFIGS) >= {"full", "linear", "bias", "adapter", "vpt", "vpt_shallow", "lora", "ssf"}


def test_method_configs_list_every_argument_at_its_default():
    """A record holds every argument of its method (its Config, filled in); a relaunch compares it with the
    arguments composed from the method's config file (bench.config.config_key): the file must list them all."""
    import dataclasses

    import yaml

    from bench.config import config_key

    for name, method in METHODS.items():
        listed = yaml.safe_load((CONF / "method" / f"{name}.yaml").read_text())["method"]
        filled = dataclasses.asdict(method.Config(**{k: v for k, v in listed.items() if k != "name"}))
        assert set(listed) - {"name"} == set(filled), name
        assert config_key({"method_args": filled}) == config_key({"method_args": {
            k: v for k, v in listed.items() if k != "name"}}), name


def test_mini_benchmark_has_its_tasks():
    assert sorted(MINI_TASKS) == sorted(BENCHMARK_TASKS["mini"])


@pytest.mark.parametrize("method", METHOD_CONFIGS)
@pytest.mark.parametrize("dataset", MINI_TASKS)
def test_compose(method, dataset):
    overrides = [f"method={method}", f"dataset={dataset}"]
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose("config", overrides=overrides)
    rc = to_run_config(OmegaConf.to_container(cfg, resolve=True), overrides)
    assert rc.method == method  # one name: file, registry key, config, record field
    assert rc.dataset.name == dataset  # dataset name follows the config path
    assert rc.variant == ""
    assert isinstance(rc.train.lr, float) and rc.train.lr > 0
    from methods import method_config
    method_config(method, rc.method_args)  # the yaml's keys are the method's Config fields


def test_cli_overrides_win_over_method_defaults():
    overrides = ["method=ssf", "train.lr=0.5", "seed=3", "train.epochs=1"]
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose("config", overrides=overrides)
    rc = to_run_config(OmegaConf.to_container(cfg, resolve=True), overrides)
    assert (rc.train.lr, rc.seed, rc.train.epochs) == (0.5, 3, 1)
    assert rc.variant == "epochs1_lr0.5"
