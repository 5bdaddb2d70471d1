"""The whole path through the CLI: a Hydra multirun of every method config (conftest.family_sweep, shared with
tests/test_families.py), then analyze.py."""
import json

import pandas as pd
import pytest
import torch

from bench.launch.cli import group_options
from conftest import SWEEP_BACKBONES, SWEEP_TASK, SWEEP_VARIANT, run_cli

EIGHT = ["adapter", "bias", "full", "linear", "lora", "ssf", "vpt", "vpt_shallow"]

pytestmark = pytest.mark.process
BACKBONE = SWEEP_BACKBONES[0]  # the default backbone (conf/config.yaml)


@pytest.mark.xdist_group("family_sweep")
def test_multirun_writes_one_completed_record_per_method(family_sweep):
    """conftest.family_sweep's runs on the default backbone (the mini ViT, pretrained weights): every method config."""
    paths = sorted(family_sweep.results.joinpath("runs", BACKBONE).rglob("record.json"))
    assert len(paths) == len(group_options("method")) >= 8
    recs = [json.loads(p.read_text()) for p in paths]
    assert sorted(r["method"] for r in recs) == sorted(group_options("method"))
    for r, p in zip(recs, paths):
        assert r["status"] == "completed", r.get("error")
        assert p.parent == family_sweep.results / "runs" / BACKBONE / SWEEP_TASK / f"{r['method']}-{SWEEP_VARIANT}" / \
            "val-seed0"
        assert len(r["history"]) == 1 and 0 <= r["history"][0]["val_top1"] <= 100
        assert 0 <= r["test_top1"] <= 100 and r["val_top1"] == r["history"][-1]["val_top1"]
        assert 0 < r["tunable_params"] <= r["total_params"]
        assert r["config"]["train"]["epochs"] == 1 and r["config"]["method_args"] is not None
        assert r["env"]["torch"] and "dirty" in r["git"] and r["hardware"]["device"] == "cpu"
        assert r["hardware"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
        assert r["train_images_per_s"] > 0 and r["peak_memory_mb"] > 0 and r["wall_time_s"] > 0
    every = [json.loads(p.read_text()) for p in family_sweep.results.rglob("record.json")]
    lines = family_sweep.stdout.splitlines()
    for status in ("completed", "unsupported"):  # one summary line per run
        assert sum(f"[{status}]" in ln for ln in lines) == sum(r["status"] == status for r in every), status


@pytest.mark.xdist_group("family_sweep")
def test_analyze_writes_leaderboard_and_plot(family_sweep, tmp_path):
    proc = run_cli("analyze.py", str(family_sweep.results), "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(tmp_path / "leaderboard_mini_val.csv")
    table = table[table["backbone"] == BACKBONE]
    assert sorted(table["method"]) == sorted(f"{m}-{SWEEP_VARIANT}" for m in group_options("method"))
    assert len(table) >= 8 and set(EIGHT) <= {m.split("-")[0] for m in table["method"]}
    assert table[SWEEP_TASK].notna().all() and table["tasks"].eq("1/5").all()
    assert table["mean"].isna().all()  # four tasks missing: no mean over what exists
    png = tmp_path / "accuracy_vs_params_mini_val.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"| {BACKBONE} | ssf-{SWEEP_VARIANT} |" in proc.stdout


def test_failed_run_records_its_failure(tmp_path):
    proc = run_cli("launch.py", "method=linear", "dataset=mini/count", "backbone.file=/nonexistent/w.safetensors",
                   f"results_dir={tmp_path}", timeout=120)
    assert proc.returncode != 0
    (path,) = tmp_path.rglob("record.json")
    rec = json.loads(path.read_text())
    assert rec["status"] == "failed" and rec["error"]["type"] == "FileNotFoundError"
    assert "/nonexistent/w.safetensors" in rec["error"]["message"]
    assert "test_top1" not in rec and "history" not in rec  # nothing it did not measure
