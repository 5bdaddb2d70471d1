"""kill -9 a run started by launch.py mid-epoch, run the same command again: it resumes from its
checkpoint and ends with exactly the metrics of an uninterrupted run (CPU, same seed, one thread).

`reference_record` is shared with tests/test_slurm.py: the uninterrupted run is computed once per process, and this
test runs in the Slurm tests' xdist_group, so under xdist one worker computes it for both.
"""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from bench.launch import sweep
from conftest import ROOT

# ~1 s per epoch on one thread here; one thread everywhere, so Slurm jobs (cpus_per_task=1) compute the same numbers
RESUME_RUN = ["method=ssf", "dataset=mini/count", "train.epochs=6", "train.progress=false", "deploy_iters=0",
              "save_weights=false", "train.num_threads=1", "train.checkpoint_interval_s=0"]
RUN_PATH = ("runs", "vit_tiny_mini", "mini", "count", "ssf-epochs6", "val-seed0")
_REFERENCE: dict = {}
pytestmark = pytest.mark.process


def launch_cmd(*args: str) -> list[str]:
    return [sys.executable, str(ROOT / "launch.py"), *args]


def cli_env() -> dict:
    return dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))


def run_dir(results):
    return results.joinpath(*RUN_PATH)


def reference_record(tmp_path_factory) -> dict:
    """The record of RESUME_RUN, uninterrupted."""
    if not _REFERENCE:
        results = tmp_path_factory.mktemp("uninterrupted")
        proc = subprocess.run(launch_cmd(*RESUME_RUN, f"results_dir={results}"), cwd=ROOT, env=cli_env(),
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        rec = json.loads((run_dir(results) / "record.json").read_text())
        assert rec["status"] == "completed" and rec["resumed_from_epoch"] == 0
        _REFERENCE["record"] = rec
    return _REFERENCE["record"]


def assert_same_metrics(rec: dict, ref: dict) -> None:
    assert rec["status"] == "completed", rec.get("error")
    assert rec["history"] == ref["history"]  # per epoch: train loss, learning rate, val top-1, bit for bit
    assert (rec["val_top1"], rec["test_top1"]) == (ref["val_top1"], ref["test_top1"])
    assert rec["tunable_params"] == ref["tunable_params"]


def wait_until(condition, what: str, timeout: float, proc=None, poll: float = 0.05):
    t0 = time.monotonic()
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the process ended (status {proc.returncode}) before {what}")
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(poll)


@pytest.mark.xdist_group("slurm")  # on the Slurm tests' worker: reference_record runs once per process
def test_kill_9_mid_epoch_then_relaunch_resumes_to_identical_metrics(tmp_path, tmp_path_factory):
    ref = reference_record(tmp_path_factory)
    args = launch_cmd(*RESUME_RUN, f"results_dir={tmp_path}")
    ckpt, record = run_dir(tmp_path) / sweep.CHECKPOINT, run_dir(tmp_path) / "record.json"

    proc = subprocess.Popen(args, cwd=ROOT, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(ckpt.exists, "the first checkpoint", 300, proc)
        time.sleep(0.3)  # into the next epoch
        assert proc.poll() is None, "the run finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    # SIGKILL: at most a stale checkpoint, never a record (whole or half)
    assert ckpt.is_file() and not record.exists()
    assert not [p.name for p in run_dir(tmp_path).iterdir() if "record" in p.name]
    state = sweep.Inspector(queue=lambda: {}).inspect(run_dir(tmp_path))
    assert (state.state, state.resumable) == ("missing", True)  # the dead job is not taken for a running one

    again = subprocess.run(args, cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    rec = json.loads(record.read_text())
    assert rec["resumed_from_epoch"] >= 1, "the relaunch started over instead of resuming"
    assert_same_metrics(rec, ref)
    assert not ckpt.exists()  # the record is the result now
