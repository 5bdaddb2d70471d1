"""The default launcher (hydra_plugins/bench_launcher): without a GPU, one single-threaded run per core at once."""
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
import torch

from bench import records
from bench.launch import sweep
from conftest import ROOT, run_cli
from hydra_plugins.bench_launcher.bench_launcher import OUTPUT, usable_cores

FAST = ["train.epochs=1", "deploy_iters=0", "save_weights=false"]
GRID = ["method=linear,bias", "dataset=mini/count,mini/digits", *FAST]
ACCURACIES = ("test_top1", "val_top1", "history")

parallel_default = pytest.mark.skipif(torch.cuda.is_available() or usable_cores() < 2,
                                      reason="the parallel default needs two usable cores and no GPU")


def _records(results: Path) -> dict[str, dict]:
    return {str(p.parent.relative_to(results)): json.loads(p.read_text()) for p in results.rglob(records.RECORD)}


def _times(rec: dict) -> tuple[datetime, datetime]:
    return datetime.fromisoformat(rec["started_at"]), datetime.fromisoformat(rec["finished_at"])


@pytest.fixture(scope="module")
def parallel(tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    proc = run_cli("launch.py", "-m", *GRID, f"results_dir={results}", timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return results, proc, _records(results)


@parallel_default
@pytest.mark.process
@pytest.mark.xdist_group("launcher_sweep")  # one module fixture: one worker
def test_a_sweep_runs_one_single_threaded_process_per_core(parallel):
    results, proc, recs = parallel
    assert len(recs) == 4 and {r["status"] for r in recs.values()} == {"completed"}
    assert f"4 run(s), {min(4, usable_cores())} at a time" in proc.stdout
    spans = sorted(_times(r) for r in recs.values())  # to the millisecond: runs under a second are ordered
    assert any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:]))  # two runs overlapped
    for r in recs.values():
        assert r["config"]["train"]["num_threads"] == 1 and r["hardware"]["torch_threads"] == 1
        # one run per process: its RSS at start is the process's base, its peak is this run's own
        assert r["peak_memory_kind"] == "run_peak_rss" and 0 < r["memory_at_start_mb"] <= r["peak_memory_mb"]
    # the terminal: each run's summary, whole (parallel runs never garble it); the progress bars: each run's log
    assert proc.stdout.count("[completed]") == 4 and "it/s" not in proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    for k in range(1, 5):
        (i,) = [n for n, line in enumerate(lines) if line.startswith(f"[{k}/4] [completed] ")]
        assert lines[i + 1].startswith("  record: ")
    for run_dir in (results / "runs").glob("*/*/*/*/*"):
        log = Path(json.loads((run_dir / sweep.JOB).read_text())["log"])
        assert log.name == OUTPUT and "it/s" in log.read_text() and "[completed]" in log.read_text()


@parallel_default
@pytest.mark.process
@pytest.mark.xdist_group("launcher_sweep")  # one module fixture: one worker
def test_a_finished_sweep_submits_nothing_again(parallel):
    results, _, recs = parallel
    again = run_cli("launch.py", "-m", *GRID, f"results_dir={results}", timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "4 completed" in again.stdout and "submitting 0: nothing to do" in again.stdout
    assert "[launcher]" not in again.stdout and _records(results) == recs
    status = run_cli("launch.py", "--status", *GRID, f"results_dir={results}", timeout=300)
    total = next(line for line in status.stdout.splitlines() if line.startswith("total")).split()
    assert status.returncode == 0 and total[1:] == ["4", "0", "0", "0", "0"], status.stdout


@parallel_default
@pytest.mark.process
@pytest.mark.xdist_group("launcher_sweep")  # one module fixture: one worker
def test_parallel_runs_give_the_records_of_the_same_runs_one_at_a_time(parallel):
    """Deterministic per thread count: two single-threaded runs side by side, then one after another."""
    results, _, recs = parallel
    proc = run_cli("launch.py", "--rerun", "-m", "method=linear,bias", "dataset=mini/count", *FAST,
                   "hydra.launcher.n_jobs=1", f"results_dir={results}", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 run(s), 1 at a time" in proc.stdout
    again = {k: r for k, r in _records(results).items() if "count" in k}
    assert len(again) == 2
    first, second = sorted(_times(r) for r in again.values())
    assert second[0] >= first[1]  # one at a time
    for key, r in again.items():
        assert r["started_at"] > recs[key]["finished_at"]  # run again, not skipped
        assert r["config"]["train"]["num_threads"] == 1
        assert {k: r[k] for k in ACCURACIES} == {k: recs[key][k] for k in ACCURACIES}, key


@parallel_default
@pytest.mark.process
def test_a_failed_run_is_one_line_and_the_others_complete(tmp_path):
    weights = ROOT / "weights" / "vit_tiny_mini.safetensors"
    proc = run_cli("launch.py", "-m", "method=linear", "dataset=mini/count", *FAST,
                   f"backbone.file=/nonexistent/w.safetensors,{weights}", f"results_dir={tmp_path}", timeout=600)
    assert proc.returncode == 1, proc.stderr[-3000:]
    statuses = sorted(r["status"] for r in _records(tmp_path).values())
    assert statuses == ["completed", "failed"]
    failed = [line for line in proc.stderr.splitlines() if line.startswith("[sweep] failed: ")]
    assert len(failed) == 1 and "nonexistent" in failed[0] and "(record: " in failed[0], proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "error: 1 of 2 run(s) failed"
    assert proc.stdout.count("[completed]") == 1 and "[failed]" in proc.stdout and "  output: " in proc.stdout
    (log,) = [Path(line.split("output: ")[1]) for line in proc.stdout.splitlines() if "  output: " in line]
    assert "Traceback" in log.read_text()  # the failure's traceback: in the run's own log


def _alive(pid: int, start: str | None) -> bool:
    return sweep.pid_alive(pid, start)


def _ours(results: Path) -> list[int]:
    """Processes whose command line names this test's results folder (the sweep and the runs it forked)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and f"results_dir={results}".encode() in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:
            pass
    return found


@parallel_default
@pytest.mark.process
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_stopping_the_sweep_leaves_no_process(tmp_path, sig):
    """Ctrl-C, a time limit's SIGTERM, or even SIGKILL of the sweep: its runs' processes end too."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    args = ["launch.py", "-m", "method=linear,bias", "dataset=mini/count", "train.epochs=200", "deploy_iters=0",
            f"results_dir={tmp_path}"]
    # SIGINT at its default, as a terminal starts the sweep: a suite run in the background (`make test &` in a
    # script) ignores SIGINT, the sweep would inherit that, and Python installs no KeyboardInterrupt for it
    parent = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline, jobs = time.monotonic() + 300, []
        while time.monotonic() < deadline and parent.poll() is None:
            jobs = [json.loads(p.read_text()) for p in tmp_path.rglob(sweep.JOB)]
            if len(jobs) == 2 and all(j["state"] == "running" for j in jobs):
                break
            time.sleep(0.5)
        assert len(jobs) == 2 and all(j["state"] == "running" for j in jobs), parent.communicate()[1][-3000:]
        assert all(j["pid"] != parent.pid for j in jobs)
        os.kill(parent.pid, sig)
        _, err = parent.communicate(timeout=120)
        if sig != signal.SIGKILL:
            assert parent.returncode == 128 + sig and "stopping 2 running run(s)" in err, err[-3000:]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (_ours(tmp_path) or any(_alive(j["pid"], j["pid_start"]) for j in jobs)):
            time.sleep(0.2)
        assert not _ours(tmp_path) and not any(_alive(j["pid"], j["pid_start"]) for j in jobs)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def test_the_default_runs_one_per_core_without_a_gpu_and_in_process_with_one(monkeypatch):
    from hydra_plugins.bench_launcher import bench_launcher as bl

    calls = []
    monkeypatch.setattr(bl.BasicLauncher, "launch", lambda self, jobs, idx: calls.append(("in process",)) or [])
    monkeypatch.setattr(bl.BenchLauncher, "_parallel", lambda self, jobs, idx, n, t: calls.append((n, t)) or [])
    monkeypatch.setattr(bl, "usable_cores", lambda: 8)
    for gpu in (True, False):
        monkeypatch.setattr(bl, "gpu_present", lambda: gpu)
        for kwargs in ({}, {"n_jobs": 3}, {"cpus_per_task": 2}):
            bl.BenchLauncher(**kwargs).launch([["method=linear"]], 0)
    assert calls == [("in process",), (3, 1), ("in process",), (8, 1), (3, 1), (4, 2)]
    for key in ("n_jobs", "cpus_per_task"):
        with pytest.raises(ValueError, match=f"hydra.launcher.{key}=0: must be a whole number of at least 1"):
            bl.BenchLauncher(**{key: 0}).launch([["method=linear"]], 0)


# a sweep whose run on mini/digits raises an exception that pickles but does not unpickle (its __init__ wants
# two arguments, its args hold one), from a module of its own (importable where the sweep unpickles it):
# launch.py run as it is, with the runner's data listing patched
UNPICKLABLE = """
from bench.run import runner

class Refusal(Exception):
    def __init__(self, message, code):
        super().__init__(message)
        self.code = code

real = runner.list_splits
def list_splits(dataset, *args, **kwargs):
    if dataset.name == "mini/digits":
        raise Refusal("the data service refused", 7)
    return real(dataset, *args, **kwargs)

runner.list_splits = list_splits
"""
LAUNCH = "import sys, runpy, refusing; sys.argv[0] = 'launch.py'; runpy.run_path('launch.py', run_name='__main__')"


class _Refusal(Exception):
    def __init__(self, message, code):
        super().__init__(message)
        self.code = code


@pytest.mark.process
def test_a_run_whose_exception_cannot_be_unpickled_fails_alone(tmp_path):
    import pickle

    with pytest.raises(TypeError):  # what the sweep's process met: the exception pickles, then fails to unpickle
        pickle.loads(pickle.dumps(_Refusal("x", 1)))
    (tmp_path / "refusing.py").write_text(UNPICKLABLE)
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=f"{ROOT}{os.pathsep}{tmp_path}")
    proc = subprocess.run([sys.executable, "-c", LAUNCH, "-m", "method=linear",
                           "dataset=mini/count,mini/digits", *FAST, "hydra.launcher.n_jobs=2",
                           f"results_dir={tmp_path / 'results'}"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stderr[-3000:]
    recs = _records(tmp_path / "results")
    assert sorted((r["dataset"], r["status"]) for r in recs.values()) == [("mini/count", "completed"),
                                                                          ("mini/digits", "failed")]
    assert {r["error"]["type"] for r in recs.values() if r["status"] == "failed"} == {"Refusal"}
    failed = [line for line in proc.stderr.splitlines() if line.startswith("[sweep] failed: ")]
    assert len(failed) == 1 and "mini/digits" in failed[0] and "Refusal: the data service refused (record: " in \
        failed[0], proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1] == "error: 1 of 2 run(s) failed"
    assert proc.stdout.count("[completed]") == 1 and "stopping" not in proc.stderr


def test_bytes_that_do_not_unpickle_fail_that_run_only():
    import multiprocessing

    from hydra.core.utils import JobStatus

    from hydra_plugins.bench_launcher import bench_launcher as bl

    run = object.__new__(bl._Run)
    run.conn, child = multiprocessing.Pipe(duplex=False)
    run.log, run.result = "/x/output.log", None
    child.send_bytes(bl._result_message(JobStatus.COMPLETED, 1.5, "")[:-5])  # a message cut short
    run.receive()
    status, error, _ = run.result
    assert status == JobStatus.FAILED and "its result could not be read (UnpicklingError" in str(error)
    assert "/x/output.log" in str(error)
    child.send_bytes(bytes(bl.ForkingPickler.dumps(("failure", "m"))))  # not the shape of any message
    run.receive()
    assert run.result[0] == JobStatus.FAILED and "its result could not be read (TypeError" in str(run.result[1])
    child.send_bytes(bl._result_message(JobStatus.COMPLETED, 1.5, "[completed] x\n"))
    run.receive()
    assert run.result == (JobStatus.COMPLETED, 1.5, "[completed] x\n")
    child.send_bytes(bl._result_message(JobStatus.FAILED, _Refusal("the service refused", 7), ""))
    run.receive()
    status, error, _ = run.result  # sent as its name and message, the run's own class being unreadable
    assert status == JobStatus.FAILED and type(error).__name__ == "_Refusal" and str(error) == "the service refused"
    child.close()
    run.receive()
    assert run.conn is None


def test_the_runs_start_with_torch_timm_the_runner_and_peft_loaded(monkeypatch, tmp_path):
    """The launcher imports torch, timm and the runner before its first fork, and peft (1-2 s of CPU a LoRA or
    peft run would spend importing it) while the first runs train, before the next fork; `launch.py --status`
    imports none of them (tests/test_layout.py)."""
    import builtins

    from hydra.core.utils import JobReturn, JobStatus
    from omegaconf import OmegaConf

    from hydra_plugins.bench_launcher import bench_launcher as bl

    imported, real_import, forks = [], builtins.__import__, []
    done_r, done_w = os.pipe()  # a process sentinel that reads as ended
    os.close(done_w)

    class Forking(Exception):
        pass

    class Run:  # the first run "ends" at once; the second fork is where the test stops
        def __init__(self, ctx, launcher, overrides, num, threads):
            forks.append(set(imported))
            if len(forks) == 2:
                raise Forking
            self.process, self.conn = type("P", (), {"sentinel": done_r})(), None

        def receive(self):
            pass

        def finish(self):
            return JobReturn(status=JobStatus.COMPLETED, _return_value=None)

        def summary(self, done, total):
            return "[done]"

    def recording(name, *args, **kwargs):
        imported.append(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", recording)
    monkeypatch.setattr(bl, "_Run", Run)
    monkeypatch.delitem(sys.modules, "peft", raising=False)  # as in a fresh sweep's process
    launcher = bl.BenchLauncher()
    launcher.config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}})
    try:
        with pytest.raises(Forking):
            launcher._parallel([["method=linear"], ["method=lora"]], 0, n_jobs=1, threads=1)
    finally:
        os.close(done_r)
    first, second = forks
    assert {"timm", "bench.run.runner"} <= first and "peft" not in first
    assert "peft" in second


def _freeze_twice(conn):
    import gc

    from bench.launch import job

    gc.unfreeze()  # a fresh process's state, whatever this test's process froze before the fork
    job._frozen = False
    job._freeze_once()
    first = gc.get_freeze_count()
    kept = [[i] for i in range(1000)]  # a run's objects, made after the first run's freeze
    job._freeze_once()
    conn.send((first, gc.get_freeze_count(), len(kept)))


def test_a_process_freezes_its_objects_once_before_its_first_run():
    """The objects a run's process holds when its first run starts (imports, Hydra, a sweep's inheritance: ~500,000,
    which each run's collection would walk for 0.3 s) are frozen; a later run's leftovers are not."""
    import gc
    import multiprocessing

    ctx = multiprocessing.get_context("fork")  # a process of its own: this one's collector is left alone
    recv, send = ctx.Pipe(duplex=False)
    before = gc.get_freeze_count()
    proc = ctx.Process(target=_freeze_twice, args=(send,))
    proc.start()
    first, second, _ = recv.recv()
    proc.join(timeout=60)
    assert first > 1000 and second == first
    # nothing frozen here (a frozen object that died meanwhile leaves the count: at most what it was)
    assert gc.get_freeze_count() <= before
