"""Checkpoint and resume: an interrupted run, relaunched, ends with exactly the same metrics."""
import dataclasses
import json

import numpy as np
import pytest

import bench.train.loop
from bench import records
from bench.config import OPERATIONAL, DatasetConfig, RunConfig, TrainConfig, backbone_config, result_config
from bench.launch.identity import variant_from_overrides
from bench.run.runner import run
from bench.train import checkpoint


def config(tmp_path, method="ssf", **train):
    backbone = backbone_config("vit_tiny_mini")
    return RunConfig(method=method, dataset=DatasetConfig("mini/count", "mini", "count", "structured", 8, 32),
                     backbone=backbone, results_dir=str(tmp_path), deploy_iters=0,
                     train=TrainConfig(epochs=3, lr=1e-2, progress=False, **{"checkpoint_interval_s": 0} | train))


class Interrupt(Exception):
    pass


def interrupt_after_epoch_2(cfg, monkeypatch) -> None:
    """Run `cfg` until the process "dies" right after its epoch-2 checkpoint (the run's failed record stays)."""
    real_save = checkpoint.save

    def save_then_die(path, state):
        real_save(path, state)
        if state["epoch"] == 2:
            raise Interrupt()

    monkeypatch.setattr(bench.train.loop.ckpt, "save", save_then_die)
    with pytest.raises(Interrupt):
        run(cfg)
    monkeypatch.setattr(bench.train.loop.ckpt, "save", real_save)


@pytest.mark.parametrize("method,train", [
    ("ssf", {}), ("full", {"mixup": 0.8, "cutmix": 1.0, "ema_decay": 0.9}),
    # SSF's schedule semantics (held per epoch, drop_last) and NOAH's one-epoch lag with SGD
    ("ssf", {"sched_unit": "epoch", "drop_last": True, "warmup_epochs": 1, "cooldown_epochs": 1}),
    ("bias", {"sched_unit": "epoch", "sched_lag": 1, "optimizer": "sgd", "wd_policy": "vpt"}),
])
def test_interrupted_run_resumes_to_identical_metrics(tmp_path, monkeypatch, method, train):
    ref = run(config(tmp_path / "ref", method, **train))

    cfg = config(tmp_path / "cut", method, **train)
    interrupt_after_epoch_2(cfg, monkeypatch)
    run_dir = next((tmp_path / "cut").rglob("record.json")).parent
    assert json.loads((run_dir / "record.json").read_text())["status"] == "failed"
    assert (run_dir / checkpoint.CHECKPOINT).is_file() and not (run_dir / records.PREDICTIONS).exists()

    resumed = run(cfg)
    assert resumed["resumed_from_epoch"] == 2 and ref["resumed_from_epoch"] == 0
    assert resumed["history"] == ref["history"]  # losses, learning rates and val scores, bit for bit
    assert resumed["test_top1"] == ref["test_top1"] and resumed["status"] == "completed"
    assert not (run_dir / checkpoint.CHECKPOINT).exists()  # removed once the record is complete
    # the resumed run writes its predictions at its end: those of the uninterrupted run
    ref_dir = next((tmp_path / "ref").rglob("record.json")).parent
    assert np.array_equal(np.load(run_dir / records.PREDICTIONS)["pred"],
                          np.load(ref_dir / records.PREDICTIONS)["pred"])


def test_a_requeued_run_resumes_although_an_operational_setting_changed(tmp_path, monkeypatch):
    """A requeued job may get other workers, another data_root or eval batch: its checkpoint still holds."""
    cfg = config(tmp_path)
    interrupt_after_epoch_2(cfg, monkeypatch)
    requeued = dataclasses.replace(cfg, dataset=dataclasses.replace(cfg.dataset, num_workers=2),
                                   train=dataclasses.replace(cfg.train, eval_batch_size=16))
    assert run(requeued)["resumed_from_epoch"] == 2


def test_operational_keys_name_no_variant_and_leave_the_checkpoint_identity(tmp_path):
    """One list (bench.config.OPERATIONAL) for both: a setting that names no variant never discards a checkpoint."""
    assert variant_from_overrides([f"{key}=7" for key in sorted(OPERATIONAL)]) == ""
    base = dataclasses.asdict(config(tmp_path))
    changed = json.loads(json.dumps(base))
    for key in OPERATIONAL:
        *parents, leaf = key.split(".")
        node = changed
        for p in parents:
            node = node[p]
        assert leaf in node, key  # a key of the run config, spelled as its override
        node[leaf] = "changed"
    assert result_config(changed) == result_config(base)
    kept = result_config(base)
    assert kept["dataset"]["name"] == "mini/count" and "num_workers" not in kept["dataset"] and "logger" not in kept


def test_checkpoint_of_another_configuration_is_ignored(tmp_path):
    cfg = config(tmp_path)
    first = run(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=2)))
    run_dir = next(tmp_path.rglob("record.json")).parent
    checkpoint.save(run_dir / checkpoint.CHECKPOINT, {"config": {"other": 1}, "epoch": 1})
    again = run(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=2)))
    assert again["resumed_from_epoch"] == 0 and again["history"] == first["history"]  # ignored: a fresh run
    assert not (run_dir / checkpoint.CHECKPOINT).exists()


@pytest.mark.parametrize("interval,epochs_saved", [(0, [1, 2]), (3600, [])])
def test_checkpoints_are_at_least_the_interval_apart(tmp_path, monkeypatch, interval, epochs_saved):
    saved = []
    monkeypatch.setattr(bench.train.loop.ckpt, "save", lambda path, state: saved.append(state["epoch"]))
    run(config(tmp_path, "linear", checkpoint_interval_s=interval, linear_fast_path=False))
    assert saved == epochs_saved  # never after the last epoch: the record replaces the checkpoint
