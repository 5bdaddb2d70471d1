"""Local sweeps on every core: one process per run, as many at once as this machine has cores.

`hydra/launcher=bench` (conf/hydra/launcher/bench.yaml, the default in conf/config.yaml). Without a GPU a
multirun runs `n_jobs` runs at once (unset: the usable cores, os.sched_getaffinity, over `cpus_per_task`), each
in a fresh process with `cpus_per_task` torch threads (1 unless set): single-threaded runs side by side use every
core and each keeps going while another is descheduled, where one run with several threads stalls whenever one
of its threads waits. With a GPU (torch sees CUDA or MPS here) and `n_jobs` unset, the runs go one after another
in this process, exactly as Hydra's basic launcher runs them (torch's default threads); `n_jobs=N` asks for N
processes there too.

Each run's process writes its stdout and stderr (progress bars, warnings, the traceback of a failure) to
<job folder>/output.log, and what it printed to stdout (its `[completed] ...` line; not its logging lines) is
also printed here in one piece when it ends: parallel runs never interleave on the terminal. A run that fails,
whose process dies, or whose result cannot be read back (an exception that does not unpickle is sent as its
name and message; bytes that do not unpickle say so) is a failed job for the sweeper, which reports each in one
line at the end; the others go on. Ctrl-C or SIGTERM stops the sweep: every run, in its own process group, gets
SIGINT, then SIGKILL after GRACE_S; a run's process also dies with this one (PR_SET_PDEATHSIG), so no process is
left behind.

The runs are forked, not spawned: the task function is a closure in launch.py, and a fork needs neither pickling
nor a second import of the sweep's modules. torch, timm and the run's own modules (bench.run.runner) are imported
here once, before the first fork, and peft (the LoRA and peft methods' library, with transformers) right after the
first runs are forked, while they train, so each run starts with them loaded (shared, copy-on-write) instead of
spending seconds importing them again; only here, where runs are launched (`launch.py --status` imports none).
Each run freezes what it inherits for Python's garbage collector before it starts (bench.launch.job.start): half a
million objects alive here, which a collection would walk in every run (0.3 s, and a copy of every page it
touches) to find nothing. Forking is safe: no thread is busy (numpy's BLAS pool is idle and handles a fork), and CUDA
is only ever asked about (which initialises it in this process) when the answer decides against forking: a GPU
found, the runs stay in this process; none, nothing to inherit.
"""
import ctypes
import io
import multiprocessing
import os
import signal
import sys
import time
import traceback
from collections import deque
from multiprocessing.connection import wait
from multiprocessing.reduction import ForkingPickler
from pathlib import Path
from typing import Any, List, Optional, Sequence

from hydra._internal.core_plugins.basic_launcher import BasicLauncher
from hydra.core.utils import JobReturn, JobStatus, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

OUTPUT = "output.log"  # a run's stdout and stderr, in its Hydra job folder (<sweep dir>/<job num>/)
LOG_ENV = "BENCH_JOB_LOG"  # the run's output.log, for launch.py's job.json (`--status` names it)
GRACE_S = 10.0  # after SIGINT, the seconds a stopped run has to write its record before SIGKILL


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask: taskset, cgroups' cpusets, Slurm's allocation)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def gpu_present() -> bool:
    """Whether torch sees a GPU here (CUDA or MPS)."""
    import torch

    return torch.cuda.is_available() or torch.backends.mps.is_available()


def one_at_a_time() -> bool:
    """Whether runs go one after another in the sweep's process when `n_jobs` is unset: a GPU is there, or this
    platform cannot fork."""
    return "fork" not in multiprocessing.get_all_start_methods() or gpu_present()


class _Tee:
    """sys.stdout of a run's process: its log (fd 1) and a copy for the sweep's terminal."""

    def __init__(self, stream, copy: io.StringIO) -> None:
        self._stream, self._copy = stream, copy

    def write(self, text: str) -> int:
        self._copy.write(text)
        return self._stream.write(text)

    def __getattr__(self, name: str) -> Any:  # flush, fileno, encoding, isatty...: the log's
        return getattr(self._stream, name)


def _die_with_parent(parent: int) -> None:
    """Have the kernel SIGKILL this process when the sweep's process dies (Linux), so a killed sweep leaves no run."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # it died before the request
        os._exit(1)


class _Run:
    """One run's process, its pipe, and what it sent: its log's path, then (status, return value, stdout)."""

    def __init__(self, ctx, launcher: "BenchLauncher", overrides: Sequence[str], num: int, threads: int) -> None:
        self.overrides, self.log = list(overrides), ""
        self.result: Optional[tuple] = None
        self.conn, child = ctx.Pipe(duplex=False)
        sys.stdout.flush()
        sys.stderr.flush()
        self.process = ctx.Process(target=_child, args=(launcher, self.overrides, num, threads, child, os.getpid()),
                                   name=f"bench-run-{num}")
        self.process.start()
        child.close()
        try:
            os.setpgid(self.process.pid, self.process.pid)  # also done in the child: no race either way
        except OSError:
            pass
        self.started = time.monotonic()

    def receive(self) -> None:
        try:
            while self.conn is not None and self.conn.poll():
                data = self.conn.recv_bytes()
                try:
                    kind, *rest = ForkingPickler.loads(data)
                    if kind == "log":
                        self.log = str(rest[0])
                    elif kind == "failure":  # an outcome that does not survive pickling, described (_child)
                        self.result = (JobStatus.FAILED, _stand_in(*map(str, rest[:3])), str(rest[3]))
                    else:
                        status, value, printed = rest
                        self.result = (status, value, str(printed))
                except Exception as e:  # whatever the bytes hold, this sweep goes on: the run failed, and says why
                    self.result = (JobStatus.FAILED, RuntimeError(
                        f"its result could not be read ({type(e).__name__}: {_first_line(e)}); its output: "
                        f"{self.log or 'none'}"), "")
        except (EOFError, OSError):  # the process ended
            self.conn.close()
            self.conn = None

    def signal(self, sig: int) -> None:
        """`sig` to the run's process group (its process and any process it started)."""
        try:
            os.killpg(self.process.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def finish(self) -> JobReturn:
        """Reap the ended process (and any process it left) and its outcome as Hydra's JobReturn."""
        self.receive()
        self.signal(signal.SIGKILL)
        self.process.join()
        if self.result is None:
            error = RuntimeError(f"its process ended (exit code {self.process.exitcode}) without a result; "
                                 f"its output: {self.log or 'none'}")
            self.result = (JobStatus.FAILED, error, "")
        status, value, _ = self.result
        return JobReturn(overrides=self.overrides, status=status, _return_value=value)

    def summary(self, done: int, total: int) -> str:
        """What the run printed (its `[completed] ...` lines), or a line of its own when it printed nothing."""
        status, value, printed = self.result
        lines = printed.rstrip("\n").splitlines() or [
            f"[{'failed' if status == JobStatus.FAILED else 'done'}] {' '.join(filter_overrides(self.overrides))}"
            + (f": {type(value).__name__}: {value}" if status == JobStatus.FAILED else "")]
        if status == JobStatus.FAILED and self.log:
            lines.append(f"  output: {self.log}")
        return "\n".join([f"[{done}/{total}] {lines[0]}", *lines[1:]])


def _child(launcher: "BenchLauncher", overrides: List[str], num: int, threads: int, conn, parent: int) -> None:
    """One run, in its own process: compose its config, send its log, run it as Hydra's basic launcher does."""
    try:
        os.setpgid(0, 0)  # Ctrl-C reaches the sweep alone, which stops the runs; they get it from there
    except OSError:
        pass
    _die_with_parent(parent)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    printed = io.StringIO()
    try:
        config = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, overrides)
        with open_dict(config):
            config.hydra.job.id = config.hydra.job.num = num
            config.hydra.launcher.cpus_per_task = threads  # launch.py's job_threads makes it train.num_threads
            if OmegaConf.select(config, "hydra.job_logging.handlers.console.stream") == "ext://sys.stdout":
                config.hydra.job_logging.handlers.console.stream = "ext://sys.__stdout__"  # log lines: the log only
        log = Path(str(config.hydra.sweep.dir), str(config.hydra.sweep.subdir), OUTPUT).absolute()
        log.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        os.environ[LOG_ENV] = str(log)
        conn.send(("log", str(log)))
        sys.stdout = _Tee(sys.stdout, printed)
        ret = run_job(hydra_context=launcher.hydra_context, task_function=launcher.task_function, config=config,
                      job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
        status, value = ret.status, ret._return_value
    except SystemExit as e:  # launch.fail: its one line is in the log
        status, value = JobStatus.FAILED, RuntimeError(f"the run exited with status {e.code}")
    except BaseException as e:  # KeyboardInterrupt (the sweep stops), a composition error
        status, value = JobStatus.FAILED, e
    if status == JobStatus.FAILED:
        traceback.print_exception(value, file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    conn.send_bytes(_result_message(status, value, printed.getvalue()))


def _first_line(e: BaseException) -> str:
    try:
        text = str(e).strip()
    except Exception:  # an exception whose __str__ raises
        return f"({type(e).__name__}: its message cannot be shown)"
    return text.splitlines()[0] if text else ""


def _result_message(status, value, printed: str) -> bytes:
    """The run's outcome as the bytes the sweep's process reads: pickled, and checked to unpickle. An outcome
    that does not survive the round trip (an exception whose class pickles but whose __init__ wants other
    arguments, one holding a lock) is sent as its class's name and its message instead."""
    try:
        data = bytes(ForkingPickler.dumps(("result", status, value, printed)))
        ForkingPickler.loads(data)
        return data
    except Exception:
        kind = type(value)
        message = _first_line(value) if isinstance(value, BaseException) else repr(value)[:300]
        return bytes(ForkingPickler.dumps(("failure", kind.__module__, kind.__qualname__, message, printed)))


def _stand_in(module: str, qualname: str, message: str) -> Exception:
    """An exception named like the run's own (the sweeper prints `<name>: <message>`), from its description."""
    return type(qualname.rsplit(".", 1)[-1], (RuntimeError,), {"__module__": module, "__qualname__": qualname})(message)


class BenchLauncher(Launcher):
    def __init__(self, n_jobs: Optional[int] = None, cpus_per_task: Optional[int] = None) -> None:
        self.n_jobs, self.cpus_per_task = n_jobs, cpus_per_task
        self.config: Optional[DictConfig] = None
        self.hydra_context: Optional[HydraContext] = None
        self.task_function: Optional[TaskFunction] = None
        self._gpu: Optional[bool] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        for key in ("n_jobs", "cpus_per_task"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"hydra.launcher.{key}={value}: must be a whole number of at least 1, or null "
                                 f"(n_jobs: one run per core without a GPU, one after another with one; "
                                 f"cpus_per_task: 1 torch thread per run)")
        threads = self.cpus_per_task or 1
        n_jobs = self.n_jobs
        if n_jobs is None:
            if self._gpu is None:
                self._gpu = one_at_a_time()
            if self._gpu:  # one run at a time on the GPU, in this process: Hydra's basic launcher
                basic = BasicLauncher()
                basic.setup(hydra_context=self.hydra_context, task_function=self.task_function, config=self.config)
                return basic.launch(job_overrides, initial_job_idx)
            n_jobs = max(1, usable_cores() // threads)
        return self._parallel(job_overrides, initial_job_idx, n_jobs, threads)

    def _parallel(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int, n_jobs: int,
                  threads: int) -> List[JobReturn]:
        import timm  # noqa: F401  (and torch): loaded once for every run forked below

        import bench.run.runner  # noqa: F401  (the run itself: methods, data, training; 0.1 s a run)

        setup_globals()
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        total = len(job_overrides)
        print(f"[launcher] {total} run(s), {min(n_jobs, total)} at a time, each in its own process with {threads} "
              f"torch thread(s) (hydra.launcher.n_jobs, hydra.launcher.cpus_per_task); each run's output: "
              f"{sweep_dir}/<job num>/{OUTPUT}", flush=True)
        ctx = multiprocessing.get_context("fork")
        todo, running = deque(range(total)), {}
        results: List[Optional[JobReturn]] = [None] * total
        stopped_by = []

        def stop(signum, frame):  # SIGTERM (a time limit, kill) stops the sweep as Ctrl-C does
            stopped_by.append(signum)
            raise KeyboardInterrupt

        previous = signal.signal(signal.SIGTERM, stop)
        try:
            while todo or running:
                while todo and len(running) < n_jobs:
                    i = todo.popleft()
                    running[i] = _Run(ctx, self, job_overrides[i], initial_job_idx + i, threads)
                if todo and "peft" not in sys.modules:  # while the first runs train: 1-2 s a later LoRA run saves
                    import peft  # noqa: F401
                ready = wait([r.process.sentinel for r in running.values()]
                             + [r.conn for r in running.values() if r.conn is not None])
                for i, run in list(running.items()):
                    run.receive()
                    if run.process.sentinel in ready:
                        results[i] = run.finish()
                        del running[i]
                        print(run.summary(total - len(todo) - len(running), total), flush=True)
        except KeyboardInterrupt:
            print(f"[launcher] stopping {len(running)} running run(s) (SIGINT, SIGKILL after {GRACE_S:.0f} s); "
                  f"launching the sweep again resumes it", file=sys.stderr, flush=True)
            raise SystemExit(128 + (stopped_by[0] if stopped_by else signal.SIGINT))
        finally:
            signal.signal(signal.SIGTERM, previous)
            _stop(list(running.values()))
        return results


def _stop(runs: List[_Run]) -> None:
    """SIGINT to each run's process group, then SIGKILL to what is left after GRACE_S (at once on a second Ctrl-C)."""
    for run in runs:
        run.signal(signal.SIGINT)
    pending = [run.process.sentinel for run in runs]
    deadline = time.monotonic() + GRACE_S
    try:
        while pending and deadline > time.monotonic():
            for sentinel in wait(pending, deadline - time.monotonic()):
                pending.remove(sentinel)
    except KeyboardInterrupt:
        pass
    for run in runs:
        run.signal(signal.SIGKILL)
        run.process.join()
