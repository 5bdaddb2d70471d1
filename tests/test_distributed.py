"""One run over two CPU processes (gloo, started by torchrun): the same training and the same
scores as one process, every test image counted once, one record, and a dead rank that ends the
run instead of hanging it. Each test bounds its processes' time and leaves none behind."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
pytestmark = [pytest.mark.process, pytest.mark.distributed]
MINI = ["method=ssf", "dataset=mini/count", "train.epochs=2", "train.batch_size=64", "train.progress=false",
        "deploy_iters=0", "train.num_threads=1"]


def run(cmd: list[str], timeout: int = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    env.pop("WORLD_SIZE", None)
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def record(results) -> dict:
    (path,) = list(results.rglob("record.json"))
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def one_and_two(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    single = run([sys.executable, "launch.py", *MINI, f"results_dir={out / 'one'}"])
    assert single.returncode == 0, single.stderr[-3000:]
    double = run([*TORCHRUN, "--nproc-per-node", "2", "launch.py", *MINI, f"results_dir={out / 'two'}"])
    assert double.returncode == 0, double.stderr[-3000:]
    return record(out / "one"), record(out / "two"), double


@pytest.mark.xdist_group("one_and_two")
def test_two_processes_train_as_one(one_and_two):
    one, two, proc = one_and_two
    assert two["status"] == "completed" and two["distributed"]["world_size"] == 2
    assert two["distributed"]["per_rank_batch"] == 32 and two["distributed"]["global_batch"] == 64
    assert two["distributed"]["backend"] == "gloo" and one["distributed"]["world_size"] == 1
    assert two["distributed"]["devices"] == ["cpu", "cpu"] and one["distributed"]["devices"] == ["cpu"]  # gathered
    assert two["optimizer_steps"] == one["optimizer_steps"]  # the same global batches
    # Same batches, same initial weights, the gradient of the same mean loss: the only difference is
    # the order of float additions (two half-batch sums and an all-reduce instead of one sum), a few
    # ulps per step, which 2 epochs of AdamW keep far below 1e-3 of the loss.
    for a, b in zip(one["history"], two["history"]):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-3)
    # a logit that close may flip one prediction of the test split at most (100 / 3,000 points)
    from bench.data.mini import SPLIT_SIZES

    assert abs(two["test_top1"] - one["test_top1"]) <= 100 / SPLIT_SIZES["test"] + 1e-9
    assert proc.stdout.count("[completed]") == 1  # one writer, one line


@pytest.mark.xdist_group("one_and_two")
def test_two_processes_write_the_predictions_of_one(one_and_two):
    """Rank 0 writes every test image's prediction once, in the split's order, as one process does."""
    from bench import predictions, records
    from bench.data.mini import SPLIT_SIZES

    one, two, _ = one_and_two
    a, b = (predictions.load(records.run_dir(r["config"]["results_dir"], r["backbone"], r["dataset"], r["method"],
                                             r["variant"], r["protocol"], r["seed"]))["test"] for r in (one, two))
    assert a["target"].tobytes() == b["target"].tobytes() and a["target"].dtype == b["target"].dtype  # bit-equal
    assert a["fingerprint"] == b["fingerprint"] == one["test_fingerprint"] == two["test_fingerprint"]
    assert two["predictions_images"] == len(b["pred"]) == SPLIT_SIZES["test"]
    assert two["predictions_complete"] is True
    assert two["test_top1"] == 100 * np.mean(b["pred"] == b["target"])
    # as the scores above: a logit that close may flip one prediction of the split
    assert np.sum(a["pred"] != b["pred"]) <= 1


def test_sharded_evaluation_counts_every_image_once(tmp_path):
    """Seven images over two ranks (4 + 3), against one process, through the real top1; the gathered
    per-image predictions are in the split's order on every rank (the parts are 2+1, 2+1, 1+0)."""
    script = tmp_path / "eval.py"
    script.write_text(
        "import torch, torch.nn as nn\n"
        "from torch.utils.data import TensorDataset\n"
        "from bench.train import dist\n"
        "from bench.train.evaluate import predict, top1\n"
        "dist.setup(60)\n"
        "torch.manual_seed(0)\n"
        "x, y = torch.randn(7, 5), torch.tensor([0, 1, 2, 0, 1, 2, 0])\n"
        "model = nn.Linear(5, 3)\n"
        "sharded = top1(model, TensorDataset(x, y), 3, torch.device('cpu'), progress=False)\n"
        "whole = top1(model, TensorDataset(x, y), 3, torch.device('cpu'), progress=False, shard=False)\n"
        "p, t = predict(model, TensorDataset(x, y), 3, torch.device('cpu'), progress=False)\n"
        "q, u = predict(model, TensorDataset(x, y), 7, torch.device('cpu'), progress=False, shard=False)\n"
        f"open(r'{tmp_path}/rank' + str(dist.rank()), 'w').write(f'{{sharded!r}} {{whole!r}} '"
        "f'{p.tolist() == q.tolist()} {t.tolist() == y.tolist() == u.tolist()}')\n"
        "dist.cleanup()\n")
    proc = run([*TORCHRUN, "--nproc-per-node", "2", str(script)], timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for r in (0, 1):
        sharded, whole, same_pred, same_target = (tmp_path / f"rank{r}").read_text().split()
        assert sharded == whole == repr(100 * (2 / 7))  # 7 images counted once each (not 8), 2 of them right
        assert same_pred == same_target == "True"


def test_a_batch_that_does_not_divide_is_a_one_line_failure(tmp_path):
    proc = run([*TORCHRUN, "--nproc-per-node", "2", "launch.py", *MINI, "train.batch_size=63",
                "train.dist_timeout_s=30", f"results_dir={tmp_path}"], timeout=240)
    assert proc.returncode != 0
    rec = record(tmp_path)
    assert rec["status"] == "failed" and "train.batch_size=63 (the global batch) does not divide over 2" in \
        rec["error"]["message"]


def test_a_rank_that_fails_ends_the_run_and_is_named(tmp_path):
    """Rank 1 fails at its first evaluation while rank 0 waits for it in the all-reduce: no hang, one
    failed record, written by rank 0, naming rank 1 and its error."""
    script = tmp_path / "launch_failing.py"
    script.write_text(
        "import os, runpy, sys\n"
        "if os.environ.get('RANK') == '1':\n"
        "    import bench.train.evaluate as ev\n"
        "    def broken(*a, **k):\n"
        "        raise RuntimeError('injected failure on rank 1')\n"
        "    ev.predict = broken\n"
        "sys.argv = ['launch.py', *sys.argv[1:]]\n"
        "runpy.run_path('launch.py', run_name='__main__')\n")
    proc = run([*TORCHRUN, "--nproc-per-node", "2", str(script), *MINI, "train.dist_timeout_s=60",
                f"results_dir={tmp_path / 'results'}"], timeout=300)
    assert proc.returncode != 0
    rec = record(tmp_path / "results")
    assert rec["status"] == "failed" and rec["error"]["rank"] == 0
    assert [(e["rank"], e["message"]) for e in rec["error"]["other_ranks"]] == [(1, "injected failure on rank 1")]
    assert "rank 1: RuntimeError: injected failure on rank 1" in rec["error"]["message"]


def test_torchrun_refuses_a_sweep(tmp_path):
    proc = run([*TORCHRUN, "--nproc-per-node", "1", "launch.py", "-m", *MINI, f"results_dir={tmp_path}"], timeout=120)
    assert proc.returncode != 0 and "under torchrun launch.py runs one configuration" in proc.stderr


@pytest.mark.xdist_group("one_and_two")
def test_a_killed_rank_fails_the_run_and_a_relaunch_resumes_to_the_same_metrics(one_and_two, tmp_path):
    """kill -9 rank 1 after the first checkpoint: the run ends (no hang) with a failed record; the same
    torchrun command again resumes every rank from rank 0's checkpoint to the uninterrupted run's metrics
    (one_and_two's two-process run: the same settings but the checkpoints' timing, which changes no number)."""
    import signal
    import time

    from bench import predictions, records
    from test_resume_kill import wait_until

    _, reference, _ = one_and_two
    args = [*MINI, "save_weights=false", "train.checkpoint_interval_s=0", "train.dist_timeout_s=60"]
    cmd = [*TORCHRUN, "--nproc-per-node", "2", "launch.py", *args]

    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    env.pop("WORLD_SIZE", None)
    agent = subprocess.Popen([*cmd, f"results_dir={tmp_path / 'run'}"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        ckpts = lambda: list((tmp_path / "run").rglob("last.pt"))
        wait_until(lambda: ckpts(), "the first checkpoint", 300, agent)  # epoch 1 of 2 done
        ranks = subprocess.run(["pgrep", "-f", "-P", str(agent.pid), "launch.py"], capture_output=True, text=True)
        pids = [int(p) for p in ranks.stdout.split()]
        assert len(pids) == 2, ranks.stdout
        rank1 = next(p for p in pids if "RANK=1" in open(f"/proc/{p}/environ").read().split("\0"))
        t0 = time.monotonic()
        os.kill(rank1, signal.SIGKILL)
        agent.wait(timeout=120)  # ends well within the collective timeout: no rank hangs
        assert agent.returncode != 0 and time.monotonic() - t0 < 90
    finally:
        if agent.poll() is None:
            os.killpg(agent.pid, signal.SIGKILL)
            agent.wait()
    failed = record(tmp_path / "run")
    assert failed["status"] == "failed" and not list((tmp_path / "run").rglob("predictions.npz"))
    again = run([*cmd, f"results_dir={tmp_path / 'run'}"], timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    rec = record(tmp_path / "run")
    assert rec["status"] == "completed" and rec["resumed_from_epoch"] >= 1
    assert [h["val_top1"] for h in rec["history"]] == [h["val_top1"] for h in reference["history"]]
    for a, b in zip(reference["history"], rec["history"]):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-6)
    assert rec["test_top1"] == reference["test_top1"]
    ref_pred, pred = (predictions.load(records.run_dir(r["config"]["results_dir"], r["backbone"], r["dataset"],
                                                       r["method"], r["variant"], r["protocol"],
                                                       r["seed"]))["test"]["pred"] for r in (reference, rec))
    assert np.array_equal(pred, ref_pred)  # the resumed run writes its predictions at its end, as an uninterrupted one
