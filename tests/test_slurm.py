"""Against a real Slurm cluster (`bash scripts/slurm-local.sh start`; .ci/run starts one): a sweep is one job
array, a preempted run is requeued and resumes, a cancelled one is relaunched and resumes, both to the
metrics of an uninterrupted run, a finished sweep relaunched submits nothing, and requests the cluster
can never satisfy fail at submission with Slurm's message.

Without a cluster these tests skip, except with CI=true, where they fail: CI must run them.
"""
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from bench.launch import sweep
from conftest import ROOT, run_cli
from test_resume_kill import (RESUME_RUN, assert_same_metrics, cli_env, launch_cmd, reference_record, run_dir,
                              wait_until)

# The slurm preset, shrunk to the single-node test cluster: partition debug, no GPU (no GRES there), 1 CPU
# (so jobs compute with one thread, like the reference run), 1 GB. The time limit stays above 10 minutes:
# below, submitit takes any USR2 for a time-out (it counts a job as timed out after max(80 %, limit - 10 min)).
SLURM = ["hydra/launcher=slurm", "hydra.launcher.partition=debug", "hydra.launcher.gpus_per_node=null",
         "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=20"]
MINI = ["dataset=mini/count", "train.epochs=1", "train.progress=false", "deploy_iters=0", "save_weights=false"]
# one cluster of one node: its tests run one after another, on one xdist worker
pytestmark = [pytest.mark.process, pytest.mark.slurm, pytest.mark.xdist_group("slurm")]


def cluster_problem() -> str | None:
    if not shutil.which("sinfo") or not shutil.which("sbatch"):
        return "no Slurm client on PATH (start a cluster: bash scripts/slurm-local.sh start)"
    states = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    if states.returncode != 0 or not {"idle", "mixed", "allocated", "completing"} & set(states.stdout.split()):
        return f"no Slurm node up: sinfo says {states.stdout.strip() or states.stderr.strip()!r}"
    acct = subprocess.run(["sacct", "-n", "-X", "-S", "now-1hours"], capture_output=True, text=True, timeout=30)
    if acct.returncode != 0:  # submitit sees a job Slurm killed only through sacct
        return f"Slurm accounting does not answer: {acct.stderr.strip()}"
    return None


@pytest.fixture(scope="module", autouse=True)
def cluster():
    problem = cluster_problem()
    if problem and os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and {problem}")
    if problem:
        pytest.skip(problem)


def last_job_id() -> int:
    out = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "JobIDRaw", "-S", "now-1days"], capture_output=True,
                         text=True, check=True).stdout.split()
    return max((int(j) for j in out if j.isdigit()), default=0)


def read_job(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def test_sweep_is_one_job_array_and_relaunch_submits_nothing(tmp_path):
    args = ["launch.py", "-m", *SLURM, "method=linear", "seed=0,1,2", *MINI, f"results_dir={tmp_path}"]
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    recs = sorted(tmp_path.rglob("record.json"))
    assert len(recs) == 3 and all(json.loads(p.read_text())["status"] == "completed" for p in recs)
    jobs = [json.loads((p.parent / sweep.JOB).read_text()) for p in recs]
    arrays = {j["slurm_array_task"].split("_")[0] for j in jobs}
    assert len(arrays) == 1, jobs  # one array, one task per run
    assert sorted(j["slurm_array_task"].split("_")[1] for j in jobs) == ["0", "1", "2"]
    assert all(Path(j["log"]).is_file() for j in jobs)  # the submitit log each job names
    (array,) = arrays
    acct = lambda: sorted(subprocess.run(["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", array],
                                         capture_output=True, text=True, check=True).stdout.split())
    # the result is read as soon as it is written; the task may still be exiting
    wait_until(lambda: acct() == [f"{array}_{i}|COMPLETED" for i in range(3)], f"sacct: {acct()}", 60)
    assert all(json.loads(p.read_text())["config"]["train"]["num_threads"] == 1 for p in recs)  # cpus_per_task

    before, sweeps = last_job_id(), sorted((tmp_path / "hydra" / "multirun").iterdir())
    again = run_cli(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "3 completed" in again.stdout and "submitting 0: nothing to do" in again.stdout
    assert last_job_id() == before  # Slurm saw no new job
    assert sorted((tmp_path / "hydra" / "multirun").iterdir()) == sweeps

    status = run_cli("launch.py", "--status", *SLURM, "method=linear", "seed=0,1,2,3", *MINI, f"results_dir={tmp_path}")
    total = next(line for line in status.stdout.splitlines() if line.startswith("total")).split()
    assert total[1:] == ["3", "0", "0", "1", "0"], status.stdout  # completed, failed, running, missing, unsupported


@pytest.mark.distributed
def test_two_tasks_on_one_node_are_one_run_with_one_record(tmp_path):
    """hydra.launcher.tasks_per_node=2: submitit's TorchDistributedEnvironment joins the two tasks into one
    gloo group; rank 0 writes the one record, equal to the one-process run's (as in test_distributed.py)."""
    two = ["method=ssf", "dataset=mini/count", "train.epochs=2", "train.batch_size=64", "train.progress=false",
           "deploy_iters=0", "save_weights=false", "train.num_threads=1"]
    proc = run_cli("launch.py", "-m", *SLURM, "hydra.launcher.tasks_per_node=2", *two, f"results_dir={tmp_path / 'two'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    single = run_cli("launch.py", *two, f"results_dir={tmp_path / 'one'}")
    assert single.returncode == 0, single.stderr[-3000:]
    (rec,) = [json.loads(p.read_text()) for p in (tmp_path / "two").rglob("record.json")]
    (ref,) = [json.loads(p.read_text()) for p in (tmp_path / "one").rglob("record.json")]
    assert rec["status"] == "completed" and rec["distributed"]["world_size"] == 2
    assert rec["distributed"]["per_rank_batch"] == 32 and rec["optimizer_steps"] == ref["optimizer_steps"]
    for a, b in zip(ref["history"], rec["history"]):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-3)
    assert abs(rec["test_top1"] - ref["test_top1"]) <= 0.1


def test_preempted_then_cancelled_run_resumes_to_uninterrupted_metrics(tmp_path, tmp_path_factory):
    ref = reference_record(tmp_path_factory)
    args = launch_cmd("-m", *SLURM, *RESUME_RUN, f"results_dir={tmp_path}")
    rd = run_dir(tmp_path)
    ckpt, job_file = rd / sweep.CHECKPOINT, rd / sweep.JOB
    with open(tmp_path / "first-launch.log", "w") as out:
        proc = subprocess.Popen(args, cwd=ROOT, env=cli_env(), stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: read_job(job_file).get("slurm_job_id") and ckpt.exists(),
                   "the Slurm job's first checkpoint", 300, proc)
        first = read_job(job_file)
        task = first.get("slurm_array_task") or first["slurm_job_id"]  # a one-run sweep is a plain job
        # Preemption as submitit sees it: USR2 before the time limit. Its handler calls the launcher's
        # checkpoint() and `scontrol requeue`s the job; the requeued job runs the same run, which resumes.
        subprocess.run(["scancel", "--signal=USR2", task], check=True)
        # meanwhile (requeued, waiting): the status says so, and a relaunch leaves the run to its job
        status = subprocess.run(launch_cmd("--status", *SLURM, *RESUME_RUN, f"results_dir={tmp_path}"), cwd=ROOT,
                                env=cli_env(), capture_output=True, text=True, timeout=120)
        total = next(line for line in status.stdout.splitlines() if line.startswith("total")).split()
        assert total[1:] == ["0", "0", "1", "0", "0"] and f"({task} on " in status.stdout, status.stdout
        dup = subprocess.run(args, cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=120)
        assert dup.returncode == 0 and "1 running or pending" in dup.stdout and "submitting 0" in dup.stdout, dup.stdout
        wait_until(lambda: read_job(job_file).get("pid") not in (None, first["pid"]),
                   "the requeued job to start again", 180, proc)
        restarted = time.time()
        wait_until(lambda: ckpt.exists() and ckpt.stat().st_mtime > restarted,
                   "a checkpoint of the requeued job", 180, proc)
        assert read_job(job_file)["slurm_job_id"] == first["slurm_job_id"]  # the same job, requeued
        # Then kill it for good: SIGKILL to its step, as the OOM killer would (a plain scancel lets it train on
        # for KillWait seconds, since submitit ignores SIGTERM). The sweep fails, the run keeps its checkpoint.
        subprocess.run(["scancel", "--signal=KILL", f"{first['slurm_job_id']}.0"], check=True)
        proc.wait(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            subprocess.run(["scancel", task], check=False)
    first_log = (tmp_path / "first-launch.log").read_text()
    assert proc.returncode != 0, first_log[-3000:]
    assert not (rd / "record.json").exists()
    job_log = Path(first["log"]).read_text()  # both runs of the job append to it
    assert "this job is preempted" in job_log and f"Requeued job {task}" in job_log, job_log[-3000:]
    assert "resumed after epoch" in job_log  # the requeued job resumed

    # Relaunching the same sweep submits this run only; it resumes from the requeued job's last checkpoint.
    again = subprocess.run(args, cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-3000:]
    assert "1 unfinished (1 with a checkpoint)" in again.stdout and "submitting 1" in again.stdout
    rec = json.loads((rd / "record.json").read_text())
    assert rec["resumed_from_epoch"] >= 2, "the requeued job started over instead of resuming"
    assert_same_metrics(rec, ref)
    assert read_job(job_file)["slurm_job_id"] != first["slurm_job_id"] and not ckpt.exists()


@pytest.mark.parametrize("override,message", [
    ("hydra.launcher.cpus_per_task=64", "More processors requested than permitted"),
    ("hydra.launcher.gpus_per_node=1", "Invalid generic resource"),  # the preset's GPU: this cluster has none
])
def test_unsatisfiable_request_fails_at_submission_with_slurms_message(tmp_path, override, message):
    t0 = time.monotonic()
    proc = run_cli("launch.py", "-m", *SLURM, override, "method=linear", *MINI, f"results_dir={tmp_path}", timeout=120)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr[-3000:]
    assert "Slurm refused the submission" in proc.stderr and time.monotonic() - t0 < 60
    assert not list(tmp_path.rglob("record.json")) and not list(tmp_path.rglob(sweep.JOB))
