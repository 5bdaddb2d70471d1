"""End to end through launch.py: a run on the VTAB-1k fixture tree, and both protocols on the mini benchmark."""
import json

import pytest

from bench import CONF
from bench.launch.identity import variant_from_overrides
from conftest import run_cli
from fixtures_data import vtab_tree

ONE_EPOCH = ["train.epochs=1", "train.cooldown_epochs=0", "train.warmup_epochs=0", "train.progress=false",
             "deploy_iters=0"]


def records(root, protocol=None):
    recs = [json.loads(p.read_text()) for p in sorted(root.rglob("record.json"))]
    return [r for r in recs if protocol is None or r["protocol"] == protocol]


@pytest.mark.process
def test_one_epoch_on_the_vtab_fixture_writes_a_completed_record(tmp_path, monkeypatch):
    vtab_tree(tmp_path / "data", "dtd", classes=3)
    monkeypatch.setenv("BENCH_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    proc = run_cli("launch.py", "method=ssf", "dataset=vtab/dtd", "backbone=vit_tiny_mini", "protocol=paper", *ONE_EPOCH,
                   "dataset.image_size=32", "dataset.num_classes=3", "dataset.splits={train:6,val:2,trainval:8,test:5}", "train.batch_size=4",
                   "variant=fixture", f"results_dir={tmp_path / 'results'}", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (rec,) = records(tmp_path / "results")
    assert rec["status"] == "completed", rec.get("error")
    assert (rec["dataset"], rec["benchmark"], rec["group"], rec["protocol"]) == ("vtab/dtd", "vtab", "natural", "paper")
    assert 0 <= rec["test_top1"] <= 100 and "test_top1_best_epoch_optimistic" in rec and len(rec["history"]) == 1
    assert rec["config"]["dataset"]["format"] == "vtab_txt" and rec["config"]["train"]["lr"] == 5e-3  # SSF's dtd row
    assert any((tmp_path / "cache").iterdir())  # the decoded pixels were cached


@pytest.mark.process
def test_noah_recipe_one_epoch_on_the_vtab_fixture(tmp_path, monkeypatch):
    """A NOAH-recipe run names itself after the recipe and records what the recipe set."""
    vtab_tree(tmp_path / "data", "dtd", classes=3)
    monkeypatch.setenv("BENCH_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    proc = run_cli("launch.py", "method=adapter", "dataset=vtab/dtd", "backbone=tiny_vit", "recipe=noah",
                   "protocol=paper", *ONE_EPOCH, "dataset.image_size=32", "dataset.num_classes=3",
                   "dataset.splits={train:6,val:2,trainval:8,test:5}", "train.batch_size=4",
                   f"results_dir={tmp_path / 'results'}", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (rec,) = records(tmp_path / "results")
    assert rec["status"] == "completed", rec.get("error")
    assert rec["recipe"] == "noah" and rec["variant"].startswith("noah")
    assert rec["config"]["recipe"]["checkpoint"] == "vit_base_patch16_224.orig_in21k"
    assert rec["same_checkpoint_as_recipe"] is False  # tiny_vit is not NOAH's checkpoint: said, not hidden
    assert rec["config"]["method_args"]["init"] == "trunc_normal" and rec["config"]["train"]["sched_lag"] == 1
    assert rec["normalization"]["mean"] == pytest.approx([0.485, 0.456, 0.406])  # ImageNet's, as NOAH
    assert rec["optimizer_steps"] == 2  # 8 images at batch 4, drop_last
    assert list((tmp_path / "results").rglob("adapter-noah*/paper-seed0/record.json"))


@pytest.mark.process
def test_a_broken_dataset_stops_the_run_before_training(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_DATA_ROOT", str(tmp_path / "nowhere"))
    proc = run_cli("launch.py", "method=linear", "dataset=vtab/kitti", "backbone=tiny_vit", "dataset.image_size=32",
                   *ONE_EPOCH, f"results_dir={tmp_path}", timeout=300)
    assert proc.returncode != 0
    assert "vtab-1k/kitti" in proc.stdout and "Preparing the datasets" in proc.stdout + proc.stderr
    for rec in records(tmp_path):
        assert rec["status"] == "failed" and "history" not in rec


@pytest.mark.process
def test_paper_protocol_on_the_mini_benchmark(tmp_path):
    proc = run_cli("launch.py", "method=linear", "dataset=mini/count", "protocol=paper", *ONE_EPOCH,
                   f"results_dir={tmp_path}", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (rec,) = records(tmp_path, "paper")
    assert rec["status"] == "completed" and "val_top1" not in rec
    assert rec["test_top1"] == rec["history"][-1]["test_top1"]  # headline: the final epoch
    assert rec["test_top1_best_epoch_optimistic"] >= rec["test_top1"]  # recorded, flagged, never the headline


@pytest.mark.process
def test_val_protocol_grid_then_select_and_retrain_on_the_mini_benchmark(tmp_path):
    results = tmp_path / "results"
    grid = run_cli("launch.py", "-m", "method=linear", "dataset=mini/count", "protocol=val", *ONE_EPOCH,
                   "train.lr=0.03,0.0003", "train.weight_decay=0.0001", f"results_dir={results}", timeout=300)
    assert grid.returncode == 0, grid.stderr[-3000:]
    points = records(results, "val")
    assert len(points) == 2
    best = max(points, key=lambda r: (r["val_top1"], -r["config"]["train"]["lr"]))["config"]["train"]["lr"]
    proc = run_cli("scripts/select_and_retrain.py", "method=linear", "dataset=mini/count", *ONE_EPOCH,
                   f"results_dir={results}", "--seeds", "0,1", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (path,) = (results / "selection" / "vit_tiny_mini" / "mini" / "count").glob("linear*/val.json")
    sel = json.loads(path.read_text())
    assert sel["selected"] == {"lr": best, "weight_decay": 0.0001} and len(sel["grid"]) == 2
    retrained = records(results, "val_retrain")
    assert sorted(r["seed"] for r in retrained) == [0, 1]
    for r in retrained:
        assert r["status"] == "completed" and r["config"]["train"]["lr"] == best
        assert r["variant"] == variant_from_overrides(ONE_EPOCH)  # the grid's, without lr and weight decay
        assert r["test_top1"] == r["history"][-1]["test_top1"]
    # nothing left to select from: a clear error, not a silent no-op
    empty = run_cli("scripts/select_and_retrain.py", "method=bias", "dataset=mini/count", f"results_dir={results}",
                    "--dry-run", timeout=120)
    assert empty.returncode == 2 and "no completed `val` grid runs" in empty.stderr


@pytest.mark.process
def test_recipe_grid_file_then_select_and_retrain_on_the_vtab_fixture(tmp_path, monkeypatch):
    """grid=petl_vision/ssf sweeps PETL_Vision's 2 x 2 grid; the same grid= selects and retrains with its seed 42."""
    vtab_tree(tmp_path / "data", "dtd", classes=3)
    monkeypatch.setenv("BENCH_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    results = tmp_path / "results"
    common = ["method=ssf", "dataset=vtab/dtd", "backbone=tiny_vit", "recipe=petl_vision", *ONE_EPOCH,
              "dataset.image_size=32", "dataset.num_classes=3", "dataset.splits={train:6,val:2,trainval:8,test:5}",
              "train.batch_size=4", f"results_dir={results}"]
    grid = run_cli("launch.py", "-m", *common, "protocol=val", "grid=petl_vision/ssf", timeout=600)
    assert grid.returncode == 0, grid.stderr[-3000:]
    points = records(results, "val")
    assert sorted((r["config"]["train"]["lr"], r["config"]["train"]["weight_decay"]) for r in points) == \
        [(0.001, 0.0001), (0.001, 0.001), (0.01, 0.0001), (0.01, 0.001)]
    assert {r["recipe"] for r in points} == {"petl_vision"}
    proc = run_cli("scripts/select_and_retrain.py", *common, "grid=petl_vision/ssf", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (path,) = (results / "selection" / "tiny_vit" / "vtab" / "dtd").glob("ssf-petl_vision*/val.json")
    sel = json.loads(path.read_text())
    best = max(points, key=lambda r: (r["val_top1"], -r["config"]["train"]["lr"], -r["config"]["train"]["weight_decay"]))
    assert sel["selected"] == {"lr": best["config"]["train"]["lr"], "weight_decay": best["config"]["train"]["weight_decay"]}
    assert sel["grid_keys"] == ["train.lr", "train.weight_decay"] and sel["recipe"] == "petl_vision"
    (retrained,) = records(results, "val_retrain")
    assert retrained["seed"] == 42 and retrained["status"] == "completed"  # PETL_Vision's retrain seed
    assert retrained["variant"].startswith("petl_vision") and retrained["config"]["train"]["lr"] == sel["selected"]["lr"]


def test_select_and_retrain_reads_the_grid_keys_of_a_grid_file():
    import importlib.util

    spec = importlib.util.spec_from_file_location("sar", CONF.parent / "scripts" / "select_and_retrain.py")
    sar = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sar)
    assert sar.grid_keys("petl_vision/lora") == ("train.lr", "train.weight_decay", "method.r")
    assert sar.grid_keys(None) == ("train.lr", "train.weight_decay")
    cfg = {"train": {"lr": 0.01}, "method_args": {"r": 8}}
    assert (sar.value_of(cfg, "train.lr"), sar.value_of(cfg, "method.r")) == (0.01, 8)
    points = {(0.01, 1e-4, 8): [(0, 50.0, "a")], (0.001, 1e-4, 16): [(0, 50.0, "b")], (0.001, 1e-4, 8): [(0, 50.0, "c")]}
    assert sar.select(points) == (0.001, 1e-4, 8)  # ties: smaller lr, then smaller values of the other keys
    rec = {"method": "lora", "method_args": {"r": 16, "alpha": None}, "train": {"lr": 0.01}}
    exp = {"method": "lora", "method_args": {"r": 8, "alpha": None}, "train": {"lr": 0.001}, "dataset": {}, "backbone": {}}
    assert sar.matches(rec, exp, ("train.lr", "method.r")) and not sar.matches(rec, exp, ("train.lr",))
