"""Issue 21 end to end: a real sweep (3 methods x 2 seeds on the five mini tasks, one epoch each on 200 of
the 800 training images) writes per-image predictions that reproduce each record's score, and analyze.py turns
them into intervals, a significance table against the baseline, ranks and a critical-difference diagram."""
import json

import numpy as np
import pandas as pd
import pytest

from conftest import run_cli

METHODS = ("linear", "bias", "ssf")
VARIANT = "train_subset200_epochs1"  # what dataset.train_subset=200 and train.epochs=1 add to the method labels
TASKS = ("count", "digits", "dspr_loc", "dspr_ori", "textures")
pytestmark = [pytest.mark.process, pytest.mark.xdist_group("statistics_sweep")]  # one sweep, shared


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    proc = run_cli("launch.py", "-m", f"method={','.join(METHODS)}", "dataset=mini/*", "seed=0,1",
                   "train.epochs=1", "dataset.train_subset=200", "train.progress=false", "deploy_iters=0",
                   "hydra.launcher.n_jobs=1", f"results_dir={results}", timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return results


def test_every_run_writes_predictions_that_reproduce_its_score(sweep):
    paths = sorted(sweep.rglob("record.json"))
    assert len(paths) == len(METHODS) * len(TASKS) * 2
    for p in paths:
        rec = json.loads(p.read_text())
        assert rec["status"] == "completed", rec.get("error")
        assert rec["data"]["splits"]["train"]["images"] == 200
        assert rec["optimizer_steps"] == -(-200 // rec["config"]["train"]["batch_size"])  # one epoch of the subset
        with np.load(p.parent / rec["predictions"]) as z:
            pred, target, fp = z["pred"], z["target"], str(z["fingerprint"])
        assert len(pred) == len(target) == rec["predictions_images"] > 0
        assert 100.0 * np.mean(pred == target) == rec["test_top1"]
        assert fp == rec["test_fingerprint"] == rec["data"]["splits"]["test"]["fingerprint"]


def test_analyze_writes_intervals_significance_and_the_diagram(sweep, tmp_path):
    proc = run_cli("analyze.py", str(sweep), "--out", str(tmp_path), "--baseline", f"linear-{VARIANT}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    board = pd.read_csv(tmp_path / "leaderboard_mini_val.csv")
    assert len(board) == len(METHODS)
    for t in TASKS:  # every cell has an interval around its mean
        low, high = board[f"mini/{t}_ci_low"], board[f"mini/{t}_ci_high"]
        assert (low <= board[f"mini/{t}"]).all() and (board[f"mini/{t}"] <= high).all() and (high > low).any()
    sig = pd.read_csv(tmp_path / "significance_mini_val.csv")
    assert {"backbone", "method", "baseline", "dataset", "diff", "ci_low", "ci_high", "p_value", "p_adjusted",
            "verdict", "n_images", "seeds"} <= set(sig.columns)
    assert set(sig["baseline"]) == {f"linear-{VARIANT}"}
    assert set(sig["method"]) == {f"bias-{VARIANT}", f"ssf-{VARIANT}"}
    assert set(sig["verdict"]) <= {"better", "worse", "not distinguishable"}
    assert ((sig["p_value"] <= sig["p_adjusted"]) & (sig["p_adjusted"] <= 1)).all()
    assert (tmp_path / "critical_difference_mini_val.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (tmp_path / "report.html").read_text()
    assert "critical-difference diagram" in report and "data:image/png;base64" in report
    assert "Significance" in report or "significance" in report
    # a second run writing the same tables byte for byte: tests/test_stats.py (the CLI end to end)
