"""One Hydra job's body, on plain values: skip a finished run, check what can be checked cheaply, run it.

launch.py's task reads Hydra's runtime config and passes only what this needs, so the job's
logic imports neither Hydra nor, until the run starts, torch.
"""
import gc
import os
from pathlib import Path

from bench.config import ConfigError, config_hash
from bench.launch import sweep
from bench.launch.cli import DEBUG, fail
from bench.launch.identity import run_path, to_run_config
from bench.records import RECORD


def start(cfg: dict, overrides: list[str], *, multirun: bool, output_dir: str, launcher_cpus: int | None = None,
          rerun: bool = False, job_name: str | None = None) -> float | None:
    """Run the composed config `cfg` (a plain dict, no `hydra` key) of one job; its test top-1 (None if unscored).

    Args:
        overrides: the job's command-line overrides (they name the variant).
        multirun: the job is one of a sweep's: a failed run raises (the sweeper reports it) instead of exiting.
        output_dir: Hydra's output folder of the job (its log, and in a sweep the sweep's name).
        launcher_cpus: the CPUs the launcher gave the job (`job_threads`).
        rerun: run a completed run again (`launch.py --rerun`).
        job_name: Hydra's job name (its log file's name under the sequential launcher).
    """
    try:
        cfg["train"]["num_threads"] = job_threads(cfg["train"].get("num_threads", 0), launcher_cpus)
        rc = to_run_config(cfg, overrides)
        if not rc.sweep and multirun:  # trackers group a sweep's runs: by its folder's name
            rc.sweep = Path(output_dir).parent.name
        out_dir = run_path(rc)
        rec, _ = sweep.read_record(out_dir / RECORD)
        main = int(os.environ.get("RANK", "0")) == 0
        done = rec is not None and rec["status"] in ("completed", "unsupported")
        other = None
        if done:
            other = sweep.other_data(rec, lambda: sweep.data_version_now(rc.dataset, rc.protocol))
            if other and main:  # its outcome belongs to other data: kept aside
                moved = sweep.archive(sweep.RunState(out_dir, "missing", other_data=other[0]))
                print(f"[data] {out_dir} was completed on other data (version {other[0]}, now {other[1]}); "
                      f"kept as {moved}", flush=True)
        if not other:
            job = sweep.read_job(out_dir) if rec is None and (out_dir / sweep.CHECKPOINT).is_file() else {}
            stale = sweep.other_config(rec if done else None, job, lambda: rc) if done or job else None
            if stale and main:  # its outcome (or checkpoint) belongs to another configuration: kept aside
                state = sweep.RunState(out_dir, "stale", detail="; ".join(stale[1]) or "a checkpoint of another "
                                       "configuration (job.json)", other_config=stale[0])
                print(sweep.stale_line(state, sweep.archive(state)), flush=True)
            elif not stale and done and not rerun:
                print(f"[skipped] {out_dir}: {rec['status']} already (--rerun runs it again)", flush=True)
                return rec.get("test_top1")
        from bench.models import check_image_size, check_weights
        from bench.run.runner import run  # imported here: bad command lines fail before torch loads
        from methods import method_config

        method_config(rc.method, rc.method_args)  # a bad method argument fails before the run folder is touched
        check_image_size(rc.backbone, rc.dataset.image_size)
        if int(os.environ.get("LOCAL_RANK", "0")) == 0:  # one process per machine fetches the weights
            check_weights(rc.backbone)
    except ConfigError as e:
        fail(f"error: {e}", 2)
    _freeze_once()
    if main:  # several processes: rank 0 keeps the books
        sweep.write_job(out_dir, "running", **job_info(output_dir, job_name), config_hash=config_hash(rc))
    try:
        return run(rc).get("test_top1")
    except Exception as e:  # the run wrote its failed record and printed its one line
        if DEBUG or multirun:
            raise  # a sweep goes on; the sweeper reports failed runs in one line each at the end
        fail(f"error: the run failed ({type(e).__name__}); its record says why: {out_dir / RECORD}", 1)


_frozen = False  # whether this process froze its objects (once, before its first run)


def _freeze_once() -> None:
    """Freeze what this process holds before its first run (imports, Hydra, in a sweep's run what it inherits)
    for Python's garbage collector: about half a million objects that live as long as the process, which each
    run's collection before its memory peak (bench.run.memory) would otherwise walk for nothing (0.3 s here,
    and in a forked run a copy of every page it touches). Only before the first run: runs one after another in
    one process (Hydra's basic launcher) leave garbage that a later run's collection must still find."""
    global _frozen
    if not _frozen:
        gc.freeze()
        _frozen = True


def job_threads(num_threads: int, launcher_cpus: int | None, environ=os.environ) -> int:
    """torch threads for one job: train.num_threads if set, else the CPUs the launcher gave the job (Slurm's
    allocation, submitit_local's cpus_per_task, 1 for submitit_local without it), else 0 (torch's default:
    all cores, right for the sequential launcher)."""
    if num_threads > 0:
        return num_threads
    if launcher_cpus:
        return int(launcher_cpus)
    for key in ("SLURM_CPUS_PER_TASK", "SLURM_CPUS_ON_NODE"):
        if environ.get(key, "").isdigit():
            return int(environ[key])
    return 1 if environ.get("SUBMITIT_EXECUTOR") == "local" else 0


def job_info(output_dir: str, job_name: str | None = None) -> dict:
    """What job.json says about this job: Slurm ids, log files (bench.launch.sweep checks the job is alive)."""
    env, info = os.environ, {"output_dir": output_dir}
    if env.get("SLURM_JOB_ID"):
        info["slurm_job_id"] = env["SLURM_JOB_ID"]
        if env.get("SLURM_ARRAY_JOB_ID"):
            info["slurm_array_task"] = f"{env['SLURM_ARRAY_JOB_ID']}_{env.get('SLURM_ARRAY_TASK_ID')}"
    if env.get("SUBMITIT_EXECUTOR"):
        try:
            import submitit

            info["log"] = str(submitit.JobEnvironment().paths.stdout)
        except Exception:  # the log path is a convenience; never fail a run over it
            pass
    elif env.get("BENCH_JOB_LOG"):  # a run in its own process under the default launcher: its stdout and stderr
        info["log"] = env["BENCH_JOB_LOG"]
    elif job_name:
        info["log"] = str(Path(output_dir) / f"{job_name}.log")
    return info
