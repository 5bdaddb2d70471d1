"""Idempotent sweeps without Slurm: where each run stands (bench.launch.sweep), what a relaunch submits,
corrupt records, concurrent record writers, the status command, the launcher presets."""
import json
import multiprocessing
import os
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir

from bench import CONF, records
from bench.analysis.load import load_records
from bench.launch import sweep
from bench.launch.identity import to_run_config
from bench.launch.job import job_threads
from conftest import ROOT, run_cli

MINI = ["dataset=mini/count", "train.epochs=1", "train.progress=false", "deploy_iters=0", "save_weights=false"]


def make_run(root, method, seed=0, status=None, raw=None, checkpoint=False, job=None):
    """A run folder as bench.run.runner and launch.py leave it: a record (or raw bytes), a checkpoint, a job.json."""
    d = records.run_dir(root, "vit_tiny_mini", "mini/count", method, "", "val", seed)
    d.mkdir(parents=True, exist_ok=True)
    if status:
        rec = {"status": status, "method": method, "dataset": "mini/count", "backbone": "vit_tiny_mini", "seed": seed,
               "error": None if status == "completed" else {"type": "RuntimeError", "message": f"boom {method}"}}
        records.write_json_atomic(d / records.RECORD, rec)
    if raw is not None:
        (d / records.RECORD).write_text(raw)
    if checkpoint:
        (d / sweep.CHECKPOINT).write_bytes(b"checkpoint")
    if job is not None:
        records.write_json_atomic(d / sweep.JOB, job)
    return d


def states_of(root, queue=lambda: {}):
    inspector = sweep.Inspector(queue=queue)
    return {d.parent.name: inspector.inspect(d, sweep.identity_from_path(d, root)) for d in sweep.find_runs(root)}


def test_checkpoint_name_is_the_one_bench_writes():
    from bench.train import checkpoint

    assert sweep.CHECKPOINT == checkpoint.CHECKPOINT


def test_states_and_relaunch_plan(tmp_path):
    dead = {"state": "running", "host": os.uname().nodename, "pid": 2**22 + 12345, "pid_start": "1"}
    make_run(tmp_path, "done", status="completed")
    make_run(tmp_path, "unsup", status="unsupported")
    make_run(tmp_path, "boom", status="failed")
    make_run(tmp_path, "trunc", raw='{"status": "completed", "method": "tr')  # killed mid-write by hand
    make_run(tmp_path, "nofields", raw='{"status": "completed"}')
    make_run(tmp_path, "cut", checkpoint=True, job=dead)  # SIGKILLed: a checkpoint, no record
    make_run(tmp_path, "again", status="failed", job=sweep.this_process() | {"state": "running"})  # rerun alive here
    make_run(tmp_path, "queued", job={"state": "running", "slurm_job_id": "41", "slurm_array_task": "40_1"})
    make_run(tmp_path, "gone", job={"state": "running", "slurm_job_id": "43", "slurm_array_task": "40_3"})
    st = states_of(tmp_path, lambda: {"40_1": "PENDING", "40_3": "CANCELLED"})  # squeue's view
    assert {k: s.state for k, s in st.items()} == {
        "done": "completed", "unsup": "unsupported", "boom": "failed", "trunc": "failed", "nofields": "failed",
        "cut": "missing", "again": "running", "queued": "running", "gone": "missing"}
    assert st["trunc"].detail.startswith("corrupt record") and "missing fields" in st["nofields"].detail
    assert st["boom"].detail == "RuntimeError: boom boom" and st["cut"].resumable and st["cut"].attempted
    assert "pending (40_1" in st["queued"].detail

    todo, line = sweep.plan(list(st.values()))
    assert sorted(s.identity["method"] for s in todo) == ["boom", "cut", "gone", "nofields", "trunc"]
    assert "1 completed, 1 unsupported, 2 running or pending, 3 failed (2 corrupt records)" in line
    assert "2 unfinished (1 with a checkpoint), 0 not started" in line and "submitting 5" in line
    forced, line = sweep.plan(list(st.values()), rerun=True)
    assert len(forced) == len(st) and "--rerun: submitting all 9" in line
    assert "nothing to do" in sweep.plan([st["done"], st["unsup"]])[1]


def test_no_squeue_means_not_running_with_a_warning(tmp_path):
    make_run(tmp_path, "slurmjob", job={"state": "running", "slurm_job_id": "7"})
    inspector = sweep.Inspector(queue=lambda: None)
    (d,) = sweep.find_runs(tmp_path)
    assert inspector.inspect(d).state == "missing" and "squeue is not available" in inspector.warnings[0]


def test_reused_pid_is_not_taken_for_the_job(tmp_path):
    me = sweep.this_process()
    make_run(tmp_path, "reused", job=me | {"state": "running", "pid_start": "0"})  # same pid, another process
    (s,) = states_of(tmp_path).values()
    assert s.state == "missing"


def _write_many(root, worker, n):
    for i in range(n):
        make_run(root, f"w{worker}", seed=i, status="completed")
        # every worker also rewrites one shared run: readers must always see a whole record
        records.write_json_atomic(records.run_dir(root, "vit_tiny_mini", "mini/count", "shared", "", "val", 0)
                                  / records.RECORD, {"status": "completed", "method": "shared", "dataset": "mini/count",
                                                     "backbone": "vit_tiny_mini", "seed": 0, "writer": worker,
                                                     "pad": "x" * 20000})


def test_concurrent_writers_into_one_results_folder_lose_nothing(tmp_path):
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_write_many, args=(tmp_path, w, 40)) for w in range(4)]
    for p in procs:
        p.start()
    seen = 0
    while any(p.is_alive() for p in procs):  # read while they write
        shared = records.run_dir(tmp_path, "vit_tiny_mini", "mini/count", "shared", "", "val", 0) / records.RECORD
        if shared.exists():
            rec, problem = sweep.read_record(shared)
            assert problem is None and rec["writer"] in range(4)
            seen += 1
    assert all(p.exitcode == 0 for p in procs)
    frame, problems = load_records(tmp_path)
    assert problems == [] and len(frame) == 4 * 40 + 1
    counts = sorted(frame["method"].value_counts().to_dict().items())
    assert counts == [("shared", 1), *((f"w{w}", 40) for w in range(4))]
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]  # no temporary file left behind


def test_job_threads():
    assert job_threads(3, 8, {}) == 3  # train.num_threads wins
    assert job_threads(0, 8, {}) == 8  # the launcher's cpus_per_task
    assert job_threads(0, None, {"SLURM_CPUS_PER_TASK": "4"}) == 4
    assert job_threads(0, None, {"SLURM_CPUS_ON_NODE": "6"}) == 6
    assert job_threads(0, None, {"SUBMITIT_EXECUTOR": "local"}) == 1  # jobs all start at once
    assert job_threads(0, None, {}) == 0  # sequential launcher: torch's default, every core


def test_launcher_presets_compose_and_site_file_and_command_line_override(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "slurm.yaml").write_text("partition: gpu_site\naccount: proj\nadditional_parameters:\n  reservation: r1\n")
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose("config", return_hydra_config=True,
                      overrides=["hydra/launcher=slurm", f"hydra.searchpath=[file://{tmp_path}]",
                                 "hydra.launcher.account=cli"])
        local = compose("config", return_hydra_config=True, overrides=["hydra/launcher=local"])
        default = compose("config", return_hydra_config=True)
    lc = cfg.hydra.launcher
    assert lc._target_.endswith("SlurmLauncher") and lc.gpus_per_node == 1 and lc.cpus_per_task == 8
    assert lc.max_num_timeout > 0 and lc.additional_parameters.requeue is True and lc.timeout_min == 240
    assert (lc.partition, lc.account, lc.additional_parameters.reservation) == ("gpu_site", "cli", "r1")
    assert any("OMP_NUM_THREADS=$SLURM_CPUS_PER_TASK" in line for line in lc.setup)
    assert local.hydra.launcher._target_.endswith("LocalLauncher") and local.hydra.launcher.cpus_per_task == 1
    assert default.hydra.sweeper._target_.endswith("BenchSweeper") and default.hydra.sweeper.rerun is False
    assert default.hydra.launcher._target_.endswith("BenchLauncher")  # one run per core without a GPU
    assert default.hydra.launcher.n_jobs is None and default.hydra.launcher.cpus_per_task is None


@pytest.mark.process
def test_relaunch_skips_completed_reruns_corrupt_and_forced(tmp_path):
    grid = ["launch.py", "-m", "method=linear,bias", *MINI, f"results_dir={tmp_path}"]
    first = run_cli("launch.py", "-m", "method=linear", *MINI, f"results_dir={tmp_path}")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "1 not started" in first.stdout and "submitting 1" in first.stdout and "[completed]" in first.stdout
    (linear,) = tmp_path.rglob("record.json")
    job = json.loads((linear.parent / sweep.JOB).read_text())
    assert job["state"] == "running" and job["pid"] and job["log"].endswith(("/launch.log", "/output.log"))
    before = json.loads(linear.read_text())
    bias = linear.parent.parent.parent / "bias-epochs1" / "val-seed0" / "record.json"
    bias.parent.mkdir(parents=True)
    bias.write_text(linear.read_text()[:100])  # a truncated record

    status = run_cli("launch.py", "--status", "method=linear,bias,ssf", *MINI, f"results_dir={tmp_path}")
    assert status.returncode == 0, status.stderr[-3000:]
    total = next(line for line in status.stdout.splitlines() if line.startswith("total")).split()
    assert total[1:] == ["1", "1", "0", "1", "0"]  # completed, failed, running/pending, missing, unsupported
    assert "bias-epochs1 val-seed0: corrupt record" in status.stdout and f"record: {bias}" in status.stdout
    assert not list(tmp_path.glob("runs/*/*/*/ssf*")) and not list((tmp_path / "hydra").glob("multirun/*/1"))

    fixed = run_cli(*grid)  # the corrupt one reruns, the completed one is skipped
    assert fixed.returncode == 0, fixed.stderr[-3000:]
    assert "1 completed" in fixed.stdout and "1 failed (1 corrupt records)" in fixed.stdout
    assert "submitting 1" in fixed.stdout and fixed.stdout.count("[completed]") == 1 and "bias-epochs1" in fixed.stdout
    assert json.loads(linear.read_text()) == before and json.loads(bias.read_text())["status"] == "completed"

    again = run_cli(*grid)  # nothing to do: no run, no torch import, about a second
    assert again.returncode == 0, again.stderr[-3000:]
    assert "2 completed" in again.stdout and "submitting 0: nothing to do" in again.stdout
    assert "[completed]" not in again.stdout and "Launching" not in again.stdout

    single = run_cli("launch.py", "method=linear", *MINI, f"results_dir={tmp_path}")  # one run, no -m
    assert single.returncode == 0 and "[skipped]" in single.stdout and "[completed]" not in single.stdout
    forced = run_cli("launch.py", "--rerun", "--cfg", "hydra", "-p", "hydra.sweeper")  # the flag reaches the sweeper
    assert forced.returncode == 0 and "rerun: true" in forced.stdout, forced.stderr  # (plan(rerun=True) above)

    table = subprocess.run([sys.executable, "-m", "bench.sweep", str(tmp_path)], cwd=ROOT, capture_output=True,
                           text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert table.returncode == 0 and "vit_tiny_mini  mini/count  linear" in table.stdout, table.stderr


def test_status_of_a_missing_results_folder(tmp_path):
    assert sweep.main([str(tmp_path / "nope")]) == 2


def test_sweeper_shortcut_composes_exactly_what_the_launcher_composes():
    """Each distinct choice of config options is composed once, value overrides applied on top: same configs."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.plugins import Plugins
    from hydra.plugins.sweeper import Sweeper
    from hydra.types import HydraContext, RunMode
    from omegaconf import OmegaConf, open_dict

    grid = ["method=lora,adapter", "dataset=mini/count,vtab/dtd", "recipe=noah,ssf", "seed=1", "train.lr=0.1,0.01",
            "++train.weight_decay=0.5", "variant=mine,''", "protocol=paper", "results_dir=/elsewhere", "++dataset.norm=none",
            "train.min_lr='${train.lr}',0.0"]
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        loader = GlobalHydra.instance().config_loader()
        config = loader.load_configuration("config", overrides=[], run_mode=RunMode.MULTIRUN)
        # the class as Hydra's plugin scan loaded it (the scan re-executes plugin modules)
        sweeper = next(c for c in Plugins.instance().discover(Sweeper) if c.__name__ == "BenchSweeper")()
        sweeper.hydra_context, sweeper.config = HydraContext(config_loader=loader, callbacks=None), config
        jobs = [j for j in sweeper._jobs(grid) if "dataset=mini/count" not in j or "recipe=noah" not in j]
        jobs += [["method=lora", "dataset=vtab/dtd", "++dataset.splits={train:6,val:2}"],  # mappings: Hydra merges them
                 ["method=lora", "dataset=mini/count", "++dataset.splits={train:6}"]]
        assert len(jobs) == 2 ** 6 * 3 // 4 + 2  # 6 swept keys (seed: one value); the mini benchmark has no noah recipe
        for job in jobs:
            exact = loader.load_sweep_config(config, list(job))
            with open_dict(exact):
                del exact["hydra"]
            plain = OmegaConf.to_container(exact, resolve=True)
            shortcut = sweeper._compose(job)
            assert shortcut == plain, job
            # the run each path makes of it, the recipe's checkpoint as the default backbone included
            rc = to_run_config(shortcut, job)
            assert rc == to_run_config(plain, job), job
            assert rc.backbone.name == rc.recipe.checkpoint  # vit_tiny_mini for the mini recipe
        assert len(sweeper._plain) == 6 + 2  # method x dataset x recipe, less the mini benchmark's noah; the two extra jobs
        # the plain shortcut served every job but those with a mapping or an interpolated value
        assert sweeper._whole == 0 and sweeper._slow == sum(
            any(x.startswith("++dataset.splits") or x == "train.min_lr='${train.lr}'" for x in j) for j in jobs) == 26
        with pytest.raises(Exception, match="lrr"):
            sweeper._compose(["method=ssf", "train.lrr=1"])  # a bad key fails as Hydra fails it
