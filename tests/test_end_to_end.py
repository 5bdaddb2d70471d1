"""The whole path through the CLI: a Hydra multirun of all eight method configs, then analyze.py."""
import json

import pandas as pd
import pytest
import torch

from bench.launch.cli import group_options
from conftest import run_cli

EIGHT = ["adapter", "bias", "full", "linear", "lora", "ssf", "vpt", "vpt_shallow"]

pytestmark = pytest.mark.process


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    proc = run_cli("launch.py", "-m", "method=*", "dataset=mini/count", "train.epochs=1",
                   "train.progress=false", "hydra.launcher.n_jobs=1", f"results_dir={results}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return results, proc


@pytest.mark.xdist_group("end_to_end_sweep")
def test_multirun_writes_one_completed_record_per_method(sweep):
    results, proc = sweep
    paths = sorted(results.rglob("record.json"))
    assert len(paths) == len(group_options("method")) >= 8
    recs = [json.loads(p.read_text()) for p in paths]
    assert sorted(r["method"] for r in recs) == sorted(group_options("method"))
    for r, p in zip(recs, paths):
        assert r["status"] == "completed", r.get("error")
        assert p.parent == results / "runs" / "vit_tiny_mini" / "mini" / "count" / f"{r['method']}-epochs1" / "val-seed0"
        assert len(r["history"]) == 1 and 0 <= r["history"][0]["val_top1"] <= 100
        assert 0 <= r["test_top1"] <= 100 and r["val_top1"] == r["history"][-1]["val_top1"]
        assert 0 < r["tunable_params"] <= r["total_params"]
        assert r["config"]["train"]["epochs"] == 1 and r["config"]["method_args"] is not None
        assert r["env"]["torch"] and "dirty" in r["git"] and r["hardware"]["device"] == "cpu"
        assert r["hardware"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
        assert r["train_images_per_s"] > 0 and r["peak_memory_mb"] > 0 and r["wall_time_s"] > 0
    assert proc.stdout.count("[completed]") == len(paths)  # one summary line per run


@pytest.mark.xdist_group("end_to_end_sweep")
def test_analyze_writes_leaderboard_and_plot(sweep, tmp_path):
    results, _ = sweep
    proc = run_cli("analyze.py", str(results), "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(tmp_path / "leaderboard_mini_val.csv")
    assert sorted(table["method"]) == sorted(f"{m}-epochs1" for m in group_options("method"))
    assert len(table) >= 8 and set(EIGHT) <= {m.split("-")[0] for m in table["method"]}
    assert table["mini/count"].notna().all() and table["tasks"].eq("1/5").all()
    assert table["mean"].isna().all()  # four tasks missing: no mean over what exists
    png = tmp_path / "accuracy_vs_params_mini_val.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| vit_tiny_mini | ssf-epochs1 |" in proc.stdout


def test_failed_run_records_its_failure(tmp_path):
    proc = run_cli("launch.py", "method=linear", "dataset=mini/count", "backbone.file=/nonexistent/w.safetensors",
                   f"results_dir={tmp_path}", timeout=120)
    assert proc.returncode != 0
    (path,) = tmp_path.rglob("record.json")
    rec = json.loads(path.read_text())
    assert rec["status"] == "failed" and rec["error"]["type"] == "FileNotFoundError"
    assert "/nonexistent/w.safetensors" in rec["error"]["message"]
    assert "test_top1" not in rec and "history" not in rec  # nothing it did not measure


def test_analyze_rejects_missing_or_empty_folder(tmp_path):
    proc = run_cli("analyze.py", str(tmp_path / "nope"))
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    proc = run_cli("analyze.py", str(tmp_path))
    assert proc.returncode == 2 and "no readable record.json" in proc.stderr
