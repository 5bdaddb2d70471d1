"""Where each run of a sweep stands: completed, failed, running or pending, missing, stale.

Torch-free and Hydra-free: launch.py's sweeper (hydra_plugins/bench_sweeper) asks `Inspector`
about every run of a grid before submitting anything, and `python -m bench.sweep RESULTS_DIR`
prints the same table for every run found on disk. A run's folder (bench.records.run_dir) holds:

    record.json   the outcome (bench.run.runner writes it atomically); the one truth of a finished run
    last.pt       the checkpoint an unfinished run resumes from (bench.train.checkpoint.CHECKPOINT)
    job.json      who is (or was) about to run it: written by the sweeper when it submits the run
                  ("submitted": the launching process, sweep folder, array index) and by the job when
                  it starts ("running": host, pid, Slurm job id, log files), with the `config_hash` of
                  the configuration it runs (bench.config.config_hash: whose checkpoint last.pt is)

A run is "running" (running or pending) while the job its job.json names is alive: its Slurm
job is in `squeue` (pending, running or requeued), or its process still runs on this host.
Otherwise the record decides: completed, unsupported, failed (a corrupt or truncated record
counts as failed and is reported), or, without one, missing (`resumable` when a checkpoint waits).
A completed or unsupported run whose record holds another configuration than the one composed now,
or a waiting checkpoint that job.json says another configuration wrote, is stale: it runs again,
its folder kept beside as `<run>~config-<hash>` (`other_config`, `archive`).
"""
import argparse
import getpass
import json
import os
import socket
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from bench.records import CHECKPOINT, IDENTITY, RECORD, STATUSES, write_json_atomic

JOB = "job.json"
COLUMNS = ("completed", "failed", "running", "missing", "unsupported")  # and "stale", shown only when a run is
HEADERS = {"running": "running/pending"}
# squeue states of a job that may still run the run. A requeued job passes through COMPLETING to PENDING, and a
# cancelled one may train on in COMPLETING for KillWait seconds (submitit ignores SIGTERM): both count as live,
# so a relaunch never starts a second job on the same run folder.
LIVE = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
        "RESIZING", "SIGNALING", "STAGE_OUT"}


@dataclass
class RunState:
    run_dir: Path
    state: str  # one of COLUMNS
    detail: str = ""  # the error, the queue state, "corrupt record: ...", "checkpoint waiting"
    resumable: bool = False  # a checkpoint is there (an unfinished run resumes from it)
    attempted: bool = False  # a record or a job.json exists: the run was submitted before
    log: str = ""  # the last job's log file, when it said so
    identity: dict = field(default_factory=dict)  # backbone, dataset, method (label), run (protocol-seed)
    other_data: str = ""  # the data version a completed run recorded, when the data there now is another
    other_config: str = ""  # state "stale": the configuration hash (bench.config.config_hash) its record or checkpoint has


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def process_start(pid: int) -> str | None:
    """The kernel's start time of process `pid` (clock ticks since boot): a pid and this name one process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22; the name before ")" may hold spaces


def pid_alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state in ("Z", "X"):
            return False
    except OSError:
        pass
    return start is None or process_start(pid) in (start, None)


def this_process() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "pid_start": process_start(os.getpid())}


def write_job(run_dir: Path, state: str, **info) -> None:
    """Record who runs (or will run) this run: `state` is "submitted" or "running"."""
    write_json_atomic(Path(run_dir) / JOB, {"state": state, "time": now(), **this_process(), **info})


def read_record(path: Path) -> tuple[dict | None, str | None]:
    """(record, None), (None, None) when there is none, or (None, problem) for a corrupt one."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None, None
    except OSError as e:
        return None, f"unreadable record: {e}"
    try:
        rec = json.loads(text)
    except ValueError as e:
        return None, f"corrupt record ({len(text)} bytes): {e}"
    if not isinstance(rec, dict):
        return None, "corrupt record: not a JSON object"
    missing = [k for k in IDENTITY if k not in rec]
    if missing:
        return None, f"corrupt record: missing fields {missing}"
    return rec, None


def read_job(run_dir: Path) -> dict:
    """A run folder's job.json; {} when there is none or it does not read as a JSON object."""
    try:
        job = json.loads((Path(run_dir) / JOB).read_text())
    except (OSError, ValueError):
        return {}
    return job if isinstance(job, dict) else {}


def slurm_queue() -> dict[str, str] | None:
    """This user's Slurm jobs as {job id: state}, array tasks under both their ids (`12_3` and their own);
    None when there is no squeue or it fails."""
    try:
        out = subprocess.run(["squeue", "-h", "-r", "-u", getpass.getuser(), "-o", "%A|%i|%T"],
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    queue = {}
    for line in out.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3:
            queue[parts[0]] = queue[parts[1]] = parts[2]
    return queue


class Inspector:
    """Classifies run folders; asks Slurm's queue at most once (only when a job.json names a Slurm job)."""

    def __init__(self, queue=slurm_queue):
        self._queue_fn, self._queue, self._asked = queue, None, False
        self.warnings: list[str] = []

    def queue(self) -> dict[str, str] | None:
        if not self._asked:
            self._asked, self._queue = True, self._queue_fn()
            if self._queue is None:
                self.warnings.append("squeue is not available: runs submitted to Slurm are not checked for "
                                     "running or pending jobs")
        return self._queue

    def live(self, job: dict) -> str | None:
        """The queue state of the job that `job` (a job.json) names while it may still run the run, else None."""
        ids = [job[k] for k in ("slurm_job_id", "slurm_array_task") if job.get(k)]
        if ids:
            queue = self.queue() or {}
            return next((queue[i] for i in ids if queue.get(i) in LIVE), None)
        if job.get("host") == socket.gethostname() and isinstance(job.get("pid"), int) \
                and pid_alive(job["pid"], job.get("pid_start")):
            return "RUNNING" if job.get("state") == "running" else "PENDING"
        if job.get("state") == "submitted" and job.get("launcher") == "slurm" and job.get("sweep_dir"):
            # the launching process is gone (or elsewhere), its array task may still wait in the queue
            # (a batch of one run is a plain job, not an array)
            pattern = "[0-9]*" if job.get("array_size") == 1 else f"*_{job.get('array_index')}"
            tasks = [d.name for d in Path(job["sweep_dir"], ".submitit").glob(pattern) if d.is_dir()]
            queue = (self.queue() or {}) if tasks else {}
            return next((queue[t] for t in tasks if queue.get(t) in LIVE), None)
        return None

    def inspect(self, run_dir: Path, identity: dict | None = None, data_version=None, config=None) -> RunState:
        """Where the run stands. `data_version`: a callable giving the data version (bench/data/version.py) a run
        would read now, or None when unknown; a completed run whose record names another is not finished:
        its outcome belongs to other data, and it is to be run again (`archive` keeps the old one aside).
        `config`: a callable giving the run's RunConfig as composed now, or None (not compared); a completed
        run of another configuration is "stale" (`other_config`), to be run again the same way."""
        run_dir = Path(run_dir)
        rec, problem = read_record(run_dir / RECORD)
        job = read_job(run_dir)
        st = RunState(run_dir, "missing", resumable=(run_dir / CHECKPOINT).is_file(),
                      attempted=bool(rec or problem or job), log=job.get("log", ""), identity=identity or {})
        queue_state = self.live(job) if job else None
        if queue_state:
            job_id = job.get("slurm_array_task") or job.get("slurm_job_id") or f"pid {job.get('pid')}"
            st.state, st.detail = "running", f"{queue_state.lower()} ({job_id} on {job.get('host', '?')})"
        elif problem:
            st.state, st.detail = "failed", problem
        elif rec is not None and rec["status"] in STATUSES:
            st.state = rec["status"]
            err = rec.get("error") or {}
            st.detail = f"{err.get('type', '')}: {err.get('message', '')}" if err else ""
            other = other_data(rec, data_version)
            if other:
                st.state, st.other_data = "missing", other[0]
                st.detail = f"completed on other data (data version {other[0]}; the data there now: {other[1]})"
        elif rec is not None:
            st.detail = f"record status {rec['status']!r}"
        elif st.resumable:
            st.detail = "checkpoint waiting"
        done = st.state in ("completed", "unsupported")
        stale = other_config(rec if done else None, job if not done else {}, config) if config is not None and (
            done or (st.state == "missing" and st.resumable and not st.other_data)) else None
        if stale:
            st.state, st.other_config, changes = "stale", stale[0], stale[1]
            st.detail = "; ".join(changes) if changes else "a checkpoint of another configuration (job.json)"
        return st


def identity_from_path(run_dir: Path, results_dir: Path) -> dict:
    """runs/<backbone>/<dataset...>/<method>[-<variant>]/<protocol>-seed<k> -> its parts."""
    parts = Path(run_dir).relative_to(Path(results_dir) / "runs").parts
    return {"backbone": parts[0], "dataset": "/".join(parts[1:-2]), "method": parts[-2], "run": parts[-1]}


def find_runs(results_dir: Path) -> list[Path]:
    """Every run folder under results_dir/runs: one holding a record, a checkpoint or a job.json (one walk)."""
    marks = {RECORD, CHECKPOINT, JOB}
    return sorted(Path(d) for d, _, files in os.walk(Path(results_dir) / "runs") if marks.intersection(files))


def table(states: list[RunState]) -> str:
    """Counts per backbone x dataset x method (variants, seeds and protocols summed), plus a total row; a
    "stale" column where a run is."""
    groups: dict[tuple, Counter] = {}
    for s in states:
        key = (s.identity.get("backbone", "?"), s.identity.get("dataset", "?"),
               s.identity.get("method", "?").split("-", 1)[0])
        groups.setdefault(key, Counter())[s.state] += 1
    total = Counter(s.state for s in states)
    columns = (*COLUMNS, "stale") if total["stale"] else COLUMNS
    head = ("backbone", "dataset", "method", *(HEADERS.get(c, c) for c in columns))
    rows = [(*k, *(str(c[col]) for col in columns)) for k, c in sorted(groups.items())]
    rows.append(("total", "", "", *(str(total[col]) for col in columns)))
    widths = [max(len(r[i]) for r in (head, *rows)) for i in range(len(head))]
    fmt = lambda r: "  ".join(v.ljust(w) if i < 3 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths)))
    return "\n".join([fmt(head), *map(fmt, rows)])


def report(states: list[RunState], warnings: list[str] = (), title: str = "") -> str:
    """The status table, then each failure with its error and where to look, then what runs or waits."""
    name = lambda s: " ".join(s.identity.get(k, "?") for k in ("backbone", "dataset", "method", "run"))
    lines = [title or f"{len(states)} runs", table(states)]
    failed = [s for s in states if s.state == "failed"]
    if failed:
        lines.append(f"\nfailed ({len(failed)}):")
        for s in failed:
            lines.append(f"  {name(s)}: {s.detail}")
            lines.append(f"    record: {s.run_dir / RECORD}" + (f"\n    log: {s.log}" if s.log else ""))
    running = [s for s in states if s.state == "running"]
    if running:
        lines.append(f"\nrunning or pending ({len(running)}):")
        lines += [f"  {name(s)}: {s.detail}" for s in running]
    stale = Counter(s.detail for s in states if s.state == "stale")
    if stale:  # one line per change, however many runs it touched
        lines.append(f"\nstale ({sum(stale.values())}): run with another configuration than the one composed now; "
                     "a relaunch runs them again and keeps the old folder beside as <run>~config-<hash>")
        lines += [f"  {n} run(s): {detail}" for detail, n in sorted(stale.items())]
    resumable = sum(s.resumable for s in states if s.state == "missing")
    if resumable:
        lines.append(f"\n{resumable} missing run(s) have a checkpoint and resume from it when relaunched")
    lines += [f"warning: {w}" for w in warnings]
    return "\n".join(lines)


def recorded_version(rec: dict) -> str | None:
    """The data version (bench/data/version.py) a record names; None for records written before versions."""
    data = rec.get("data")
    return data.get("version") if isinstance(data, dict) else None


def other_data(rec: dict, data_version) -> tuple[str, str] | None:
    """(recorded version, current version) when a completed record belongs to other data than there is now.

    Args:
        data_version: a callable giving the current data version, or None when it cannot be told (the data
            is missing: then the record stands). Called only for completed records that name a version.
    """
    recorded = recorded_version(rec) if rec.get("status") == "completed" else None
    now = data_version() if recorded and data_version else None
    return (recorded, now) if now and now != recorded else None


def data_version_now(dataset, protocol: str) -> str | None:
    """The data version (bench/data/version.py) a run of this dataset config and protocol would read now.

    None for the generated mini benchmark, whose images follow from its config (task, data_seed) with no
    copy on disk to differ: telling would import torch and generate every split, seconds for a relaunch
    that otherwise takes one. For data on disk the first call imports the data package (torch, about 3 s).
    """
    if dataset.benchmark == "mini":
        return None
    from bench.config import PROTOCOLS
    from bench.data.splits import current_version

    return current_version(dataset, PROTOCOLS[protocol])


def other_config(rec: dict | None, job: dict, config) -> tuple[str, list[str]] | None:
    """(the hash it was run with, the settings that changed) when a completed or unsupported record, or else the
    checkpoint that `job` (its job.json) says a configuration wrote, belongs to another configuration than
    `config()` (a RunConfig) composes now; None when it is the same or nothing says (older records and jobs)."""
    from bench.config import config_changes, config_key, key_hash, record_hash

    if rec is not None and rec.get("status") in ("completed", "unsupported"):
        recorded = record_hash(rec)
    else:
        recorded, rec = job.get("config_hash"), None
    if not recorded:
        return None
    key = config_key(config())
    now = key_hash(key)
    if now == recorded:
        return None
    old = rec.get("config") if rec else None
    changes = config_changes(config_key(old), key) if isinstance(old, dict) else []
    return recorded, changes or ([f"config_hash: {recorded} -> {now}"] if rec else [])  # [] for a checkpoint


def stale_line(state: RunState, moved: Path) -> str:
    """What a relaunch prints for a stale run it moved aside: which settings changed."""
    return f"[stale] {state.run_dir}: run with another configuration ({state.detail}); kept as {moved}"


def archive(state: RunState) -> Path | None:
    """Move a run folder whose record belongs to other data (or another configuration: a stale run) aside, to
    `<run>~data-<version>` (`<run>~config-<hash>`) beside it, so that the rerun starts clean (no checkpoint of the
    other data or configuration) and both outcomes stay for analyze.py, which keeps runs of different data
    versions or configurations in different rows. Returns the new folder (None when there was nothing)."""
    if not (state.other_data or state.other_config) or not state.run_dir.is_dir():
        return None
    kind, short = ("data", state.other_data.split(":", 1)[-1][:12]) if state.other_data \
        else ("config", state.other_config[:8])
    target = state.run_dir.with_name(f"{state.run_dir.name}~{kind}-{short}")
    n = 1
    while target.exists():
        n += 1
        target = state.run_dir.with_name(f"{state.run_dir.name}~{kind}-{short}.{n}")
    os.rename(state.run_dir, target)
    return target


def plan(states: list[RunState], rerun: bool = False) -> tuple[list[RunState], str]:
    """Which runs to submit and one line saying how many of each kind were skipped or rerun."""
    n = Counter(s.state for s in states)
    unfinished = [s for s in states if s.state == "missing" and s.attempted and not s.other_data]
    other = sum(bool(s.other_data) for s in states)
    corrupt = sum(s.state == "failed" and s.detail.startswith(("corrupt", "unreadable")) for s in states)
    counts = (f"{n['completed']} completed, {n['unsupported']} unsupported, {n['running']} running or pending, "
              f"{n['failed']} failed{f' ({corrupt} corrupt records)' if corrupt else ''}, "
              f"{len(unfinished)} unfinished ({sum(s.resumable for s in unfinished)} with a checkpoint), "
              f"{n['missing'] - len(unfinished) - other} not started"
              + (f", {other} completed on other data (rerun; the old outcome kept beside as <run>~data-<version>)"
                 if other else "")
              + (f", {n['stale']} stale: run with another configuration (rerun; the old outcome kept beside as "
                 "<run>~config-<hash>)" if n["stale"] else ""))
    if rerun:
        return list(states), f"[sweep] {len(states)} runs: {counts}; --rerun: submitting all {len(states)}"
    todo = [s for s in states if s.state in ("failed", "missing", "stale")]
    line = (f"[sweep] {len(states)} runs: {counts}; skipping {len(states) - len(todo)} (completed, unsupported, "
            f"running or pending), submitting {len(todo)}")
    if not todo:
        line += ": nothing to do (--rerun forces reruns)"
    return todo, line


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.sweep",
                                 description="Status of every run found under a results folder (records, "
                                             "checkpoints, jobs). For a grid, with its missing runs: "
                                             "python launch.py --status <the sweep's overrides>.")
    ap.add_argument("results_dir", nargs="?", default="results")
    args = ap.parse_args(argv)
    if not (Path(args.results_dir) / "runs").is_dir():
        sys.stderr.write(f"error: {Path(args.results_dir) / 'runs'} does not exist: no runs there\n")
        return 2
    inspector = Inspector()
    states = [inspector.inspect(d, identity_from_path(d, args.results_dir)) for d in find_runs(args.results_dir)]
    print(report(states, inspector.warnings, f"{len(states)} runs found under {Path(args.results_dir) / 'runs'}"))
    return 0

