"""Hardening: every bad input answered in one line (exit 2, no traceback, no record), every documented key
settable, files a lab can share (umask), checkpoints that cannot run code, and per-run memory on CPU."""
import json
import os
import pickle
import stat

import pytest

from bench import records
from bench.config import DatasetConfig, RunConfig, TrainConfig, backbone_config
from bench.train import checkpoint
from conftest import run_cli

FAST = ["train.epochs=1", "train.progress=false", "deploy_iters=0"]


@pytest.mark.parametrize("args,message", [
    (["train.lr=abc"], "error: train.lr='abc': must be a number"),
    (["train.batch_size=0"], "error: train.batch_size=0: must be > 0"),
    (["train.epochs=-3"], "error: train.epochs=-3: must be > 0"),
    (["train.amp=fp8"], "error: train.amp=fp8: valid: auto, bf16, off"),
    (["train.label_smoothing=1.5"], "error: train.label_smoothing=1.5: must be in [0, 1)"),
    (["dataset.num_workers=x"], "error: dataset.num_workers='x': must be an integer"),
    # the transforms' own choices, checked with the command line, not when the model is built
    (["dataset.interpolation=nearest"], "error: dataset.interpolation=nearest: valid: bicubic, bilinear"),
    (["protocol=foo"], "error: protocol=foo: unknown protocol; valid: val, paper, val_retrain"),
    (["method.rr=3"], "error: method.rr: unknown key; valid method keys: init_std, name"),
    (["train.lrr=3"], "error: train.lrr: unknown key; valid train keys:"),
    (["foo=1"], "error: foo: unknown key; valid top-level keys:"),
    (["method=adapter", "method.bottleneck=0"], "error: method.bottleneck=0: must be > 0"),
    (["backbone=tiny_vit", "dataset=vtab/dtd"],
     "error: dataset.image_size=224: backbone tiny_vit takes 32 x 32 images only"),
    (["-m", "train.lr=0.1,abc"], "error: train.lr='abc': must be a number (in the job"),
])
@pytest.mark.process
def test_a_bad_value_is_one_line_exit_2_and_no_record(tmp_path, args, message):
    proc = run_cli("launch.py", *FAST, *args, f"results_dir={tmp_path}", timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert message in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr + proc.stdout
    assert [line for line in proc.stderr.splitlines() if line.startswith("error:")] == \
        [proc.stderr.strip().splitlines()[-1]]  # one line
    assert not list(tmp_path.rglob(records.RECORD))


@pytest.mark.process
def test_a_run_that_fails_after_it_started_records_it_and_says_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_DATA_ROOT", str(tmp_path / "nowhere"))
    args = ["method=linear", "dataset=vtab/kitti", "backbone=tiny_vit", "dataset.image_size=32", *FAST,
            f"results_dir={tmp_path / 'r'}"]
    proc = run_cli("launch.py", *args, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr + proc.stdout
    assert "error: the run failed (DataError); its record says why" in proc.stderr
    (path,) = (tmp_path / "r").rglob(records.RECORD)
    rec = json.loads(path.read_text())
    assert rec["status"] == "failed" and "Traceback" in rec["error"]["traceback"]  # kept in the record
    debug = run_cli("launch.py", "--debug", *args, timeout=120)
    assert debug.returncode == 1 and "Traceback" in debug.stderr  # --debug shows it


@pytest.mark.process
def test_every_dataclass_key_is_settable_plainly(tmp_path):
    proc = run_cli("launch.py", "method=lora", "dataset.num_workers=0", "dataset.norm=imagenet", "train.head_init=vpt",
                   "method.alpha=null", *FAST, f"results_dir={tmp_path}", timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (path,) = tmp_path.rglob(records.RECORD)
    rec = json.loads(path.read_text())
    assert rec["config"]["dataset"]["norm"] == "imagenet" and rec["config"]["train"]["head_init"] == "vpt"
    assert rec["config"]["method_args"]["alpha"] is None and rec["normalization"]["std"][0] == pytest.approx(0.229)


@pytest.mark.process
def test_check_set_takes_dotted_keys(tmp_path):
    from fixtures_data import vtab_tree

    vtab_tree(tmp_path, "dtd", classes=3)
    proc = run_cli("-m", "bench.data", "check", "vtab/dtd", "--data-root", str(tmp_path), "--set", "splits.train=6",
                   "--set", "splits.val=2", "--set", "splits.trainval=8", "--set", "splits.test=5", "--set", "num_classes=3",
                   timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith("ok    vtab/dtd"), proc.stdout + proc.stderr
    wrong = run_cli("-m", "bench.data", "check", "vtab/dtd", "--data-root", str(tmp_path), "--set", "splits.train=6",
                    "--set", "splits.val=2", "--set", "splits.trainval=8", "--set", "splits.test=300",
                    "--set", "num_classes=3", timeout=120)
    assert wrong.returncode == 1 and "split 'test'" in wrong.stdout and "300" in wrong.stdout, wrong.stdout


@pytest.mark.parametrize("mask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_files_keep_the_umask_permissions(tmp_path, mask, mode):
    old = os.umask(mask)
    try:
        records.write_json_atomic(tmp_path / "r.json", {"a": 1})
        with records.atomic_file(tmp_path / "t.bin") as tmp:
            tmp.write_bytes(b"x")
    finally:
        os.umask(old)
    for name in ("r.json", "t.bin"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode


def _config(tmp_path, method="ssf", **train):
    return RunConfig(method=method, dataset=DatasetConfig("mini/count", "mini", "count", "structured", 8, 32),
                     backbone=backbone_config("vit_tiny_mini"), results_dir=str(tmp_path), deploy_iters=0,
                     train=TrainConfig(epochs=2, progress=False, checkpoint_interval_s=0, **train))


def test_a_results_folder_written_under_umask_0022_is_world_readable(tmp_path):
    from bench.run.runner import run

    old = os.umask(0o022)
    try:
        rec = run(_config(tmp_path))
    finally:
        os.umask(old)
    run_dir = next(tmp_path.rglob(records.RECORD)).parent
    assert rec["status"] == "completed"
    for f in run_dir.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) & 0o044 == 0o044, f  # group and others can read


class _Planted:
    """Unpickling this calls open(marker, "w"): what a planted checkpoint could run instead."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_planted_checkpoint_is_refused_never_executed(tmp_path, capsys):
    import torch

    from bench.run.runner import run

    cfg = _config(tmp_path)
    ref = run(cfg)
    run_dir = next(tmp_path.rglob(records.RECORD)).parent
    marker = tmp_path / "pwned"
    with open(run_dir / checkpoint.CHECKPOINT, "wb") as f:
        pickle.dump({"config": "x", "payload": _Planted(str(marker))}, f)
    assert checkpoint.load(run_dir / checkpoint.CHECKPOINT, {}) is None
    assert not marker.exists() and "refusing" in capsys.readouterr().out
    torch.save({"config": "x", "payload": _Planted(str(marker))}, run_dir / checkpoint.CHECKPOINT)  # torch's format too
    again = run(cfg)  # a relaunch over the planted file: refused, trained from scratch, same result
    assert not marker.exists()
    assert again["resumed_from_epoch"] == 0 and again["history"] == ref["history"]


def test_our_own_checkpoints_load_with_weights_only(tmp_path):
    import torch

    state = {"config": {"a": [1, None, "x"]}, "epoch": 1, "rng": checkpoint.rng_state(torch.Generator()),
             "optimizer": torch.optim.SGD([torch.nn.Parameter(torch.ones(2))], lr=0.1, momentum=0.9).state_dict()}
    checkpoint.save(tmp_path / "c.pt", state)
    loaded = checkpoint.load(tmp_path / "c.pt", {"a": [1, None, "x"]})
    assert loaded is not None and loaded["epoch"] == 1
    checkpoint.set_rng_state(loaded["rng"], torch.Generator())  # numpy's state round-trips


@pytest.mark.process
def test_per_run_memory_in_a_two_run_sweep(tmp_path):
    """Full fine-tuning first, then linear probing, in one process: the second run's peak is its own."""
    proc = run_cli("launch.py", "-m", "method=full,linear", "dataset=mini/count", "train.batch_size=512", *FAST,
                   "hydra/launcher=basic", f"results_dir={tmp_path}", timeout=300)  # (the default: a process per run)
    assert proc.returncode == 0, proc.stderr[-2000:]
    recs = {r["method"]: r for r in (json.loads(p.read_text()) for p in tmp_path.rglob(records.RECORD))}
    assert {r["peak_memory_kind"] for r in recs.values()} == {"run_peak_rss"}
    # a process-wide peak would give linear at least full's; its own is lower (full: batch-512 activations)
    assert recs["linear"]["peak_memory_mb"] < recs["full"]["peak_memory_mb"] - 20
    assert recs["linear"]["memory_at_start_mb"] <= recs["linear"]["peak_memory_mb"]


def test_the_cost_table_shows_memory_only_where_it_is_per_run():
    import pandas as pd

    from bench.analysis.tables import cost_table

    base = {"status": "completed", "dataset": "mini/count", "benchmark": "mini", "protocol": "val", "backbone": "b",
            "variant": "", "train_images_per_s": 1.0}
    df = pd.DataFrame([base | {"method": "full", "peak_memory_mb": 900.0, "peak_memory_kind": "run_peak_rss"},
                       base | {"method": "linear", "peak_memory_mb": 950.0, "peak_memory_kind": "process_peak_rss"}])
    cost = cost_table(df)
    assert cost.loc[("mini", "val", "b", "full"), "peak_memory_mb"] == 900.0
    assert pd.isna(cost.loc[("mini", "val", "b", "linear"), "peak_memory_mb"])  # a process-wide peak: not shown
