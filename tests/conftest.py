"""Shared fixtures: tiny timm models built with pretrained=False and generated data. No downloads.

Also the suite's tiers (markers in pyproject.toml; README: Quick start): a test that starts a Python interpreter
(launch.py, analyze.py, a script, torchrun, `python -c`) must carry the `process` marker, else it fails, so that
`make test-fast` never starts one. Under pytest-xdist (`make test`) every worker, and every process a test
starts, computes on one torch thread (the workers already share the cores), and the tests that start
processes or are real-size are handed out first, so the longest ones do not finish last.
"""
import contextlib
import dataclasses
import gc
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"  # never reach the hub from tests
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PARALLEL = bool(os.environ.get("PYTEST_XDIST_WORKER"))  # set in each xdist worker
if PARALLEL:
    os.environ["OMP_NUM_THREADS"] = "1"  # inherited by the processes tests start (run_cli copies the environment)

import pytest  # noqa: E402


def pytest_configure(config):
    if PARALLEL:
        import torch

        torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def shared_cache_dir(tmp_path_factory):
    """One cache folder ($BENCH_CACHE_DIR) for the whole run, every xdist worker and every process a test
    starts: the mini tasks are drawn once per run (bench/data/generated.py), never under the repository's
    data/. Tests that need a cache of their own set $BENCH_CACHE_DIR themselves (monkeypatch)."""
    base = tmp_path_factory.getbasetemp()
    folder = (base.parent if PARALLEL else base) / "bench-cache"  # workers' basetemps are siblings
    folder.mkdir(exist_ok=True)
    before = os.environ.get("BENCH_CACHE_DIR")
    os.environ["BENCH_CACHE_DIR"] = str(folder)
    yield folder
    if before is None:
        os.environ.pop("BENCH_CACHE_DIR", None)
    else:
        os.environ["BENCH_CACHE_DIR"] = before


@pytest.hookimpl(trylast=True)  # after pytest-xdist's own hook
def pytest_collection_modifyitems(config, items):
    """Under xdist, tests marked `process` or `realsize` first (in their order): with --dist loadgroup the groups
    go out first, then single tests in this order, so the minutes-long ones (tests/test_pretrain.py's real-size
    reproduction, which starts no process, among them) start early and no worker is left with one at the end."""
    if PARALLEL:
        items.sort(key=lambda item: not (item.get_closest_marker("process") or item.get_closest_marker("realsize")))
        if config.getvalue("loadgroup"):
            _tag_xdist_groups(items)


def pytest_collection_finish(session):
    """What is alive once the tests are collected (torch, timm, pandas, the test modules: about 800,000 objects)
    lives to the end: frozen, so the collector's full passes during the tests walk only what the tests made
    (`make test-fast`: the two workers' collector 29.2 s of CPU before, 16.5 s after). analyze.py's `main`, which
    some tests run in-process, leaves a caller's frozen objects frozen (bench/analysis/cli.py)."""
    gc.collect()
    gc.freeze()


_WORKERS: dict[str, list[float]] = {}  # xdist controller: worker id -> [seconds in tests, its last report's time]
_T0 = time.monotonic()


def pytest_runtest_logreport(report):
    """In the xdist controller (`make test`), each worker's seconds in tests and when it reported last: the
    summary line below says whether the work was shared evenly or one worker idled at the end."""
    node = getattr(report, "node", None)  # set by xdist on the reports the controller receives
    if node is not None:
        seen = _WORKERS.setdefault(node.gateway.id, [0.0, 0.0])
        seen[0] += report.duration
        seen[1] = time.monotonic() - _T0


def pytest_terminal_summary(terminalreporter):
    if _WORKERS:
        terminalreporter.write_line("xdist workers: " + "; ".join(
            f"{w} {busy:.0f} s in tests, last result {last:.0f} s after the start"
            for w, (busy, last) in sorted(_WORKERS.items())))


def _tag_xdist_groups(items):
    """pytest-xdist 3.8 marks a grouped test by appending `@<group>` to its id through `item._nodeid`, which
    pytest 9 no longer reads (the id is `item._id`), so every group would be split over the workers: the
    same tag, set where pytest 9 keeps the id (a no-op where xdist's tag took)."""
    from _pytest.nodeid import coerce_node_id

    for item in items:
        marks = item.iter_markers("xdist_group")
        names = {str(m.args[0] if m.args else m.kwargs.get("name", "default")) for m in marks}
        tag = "@" + "_".join(sorted(names))
        if names and not item.nodeid.endswith(tag):
            item._id = coerce_node_id(item.nodeid + tag)


def _starts_python(args) -> bool:
    first = args if isinstance(args, (str, bytes, os.PathLike)) else next(iter(args), "")
    first = os.fsdecode(first).split(" ")[0]
    return first == sys.executable or Path(first).name.startswith(("python", "torchrun"))


@contextlib.contextmanager
def _python_needs_process_marker(item):
    """While an unmarked test (its fixtures included) runs, starting a Python interpreter fails it."""
    if item.get_closest_marker("process"):
        yield
        return
    popen_init = subprocess.Popen.__init__

    def refuse(self, args, *a, **k):
        if _starts_python(args):
            pytest.fail(f"{item.nodeid} starts a Python process ({args!r}) without the `process` marker: "
                        "add @pytest.mark.process (or the module's pytestmark)", pytrace=False)
        popen_init(self, args, *a, **k)

    subprocess.Popen.__init__ = refuse
    try:
        yield
    finally:
        subprocess.Popen.__init__ = popen_init


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    with _python_needs_process_marker(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    with _python_needs_process_marker(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    with _python_needs_process_marker(item):
        return (yield)


# The mini backbone's architecture (conf/backbone/vit_tiny_mini.yaml), random weights.
TINY_VIT = dict(img_size=32, patch_size=8, embed_dim=96, depth=4, num_heads=3, mlp_ratio=2.0)


@pytest.fixture
def tiny_vit():
    import timm
    import torch

    def make(num_classes: int = 10, seed: int = 0):
        torch.manual_seed(seed)
        return timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=num_classes, **TINY_VIT)

    return make


def run_cli(*args: str, timeout: int = 600):
    """Run `python <args>` from the project root; returns the CompletedProcess."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def analyze_py():
    """`analyze.py <args>`, answered as run_cli answers it, every call on this worker in one interpreter
    (tests/one_interpreter.py): analyze.py over records a test wrote, where a fresh process is not the point.
    What only a fresh process shows (caches and figures read back from disk, a changed file seen, analyze.py
    as a user runs it on files others wrote) keeps run_cli."""
    from one_interpreter import OneInterpreter

    one = OneInterpreter()
    yield lambda *args, timeout=600: one.run(["analyze.py", *args], timeout=timeout)
    one.close()


# The sweep of every method config through launch.py, in two halves by backbone, shared by tests/test_families.py
# (every family: what completes, what is unsupported, exact deployment, export) and tests/test_end_to_end.py (the
# default backbone's records, analyze.py): one epoch each, on 200 of the task's 800 training images (4 steps; no
# assertion needs more), scored on the whole test split: mini/digits, whose 797 test images cost each run about a
# quarter of a generated task's 3,000 (every run scores them twice, the deployed model too). Each half is a session
# fixture of its own, its tests one xdist_group named as the fixture, so under xdist the two halves (about the same
# work: the ViT's 20 runs and ConvNeXt's 9 beside Swin's 16 and the Mixer's 9) run on two workers at once, not one
# after the other.
SWEEP_PARTS = {"family_sweep": ("vit_tiny_mini", "tiny_convnext"), "family_sweep_swin": ("tiny_swin", "tiny_mixer")}
SWEEP_BACKBONES = tuple(b for part in SWEEP_PARTS.values() for b in part)  # the mini ViT first
SWEEP_TASK = "mini/digits"
SWEEP_ARGS = ("train.epochs=1", "dataset.train_subset=200", "train.progress=false", "deploy_iters=1",
              "deploy_score=full", "hydra.launcher.n_jobs=1")
SWEEP_VARIANT = "train_subset200_epochs1"  # what the subset and train.epochs=1 add to each run's method label


@dataclasses.dataclass(frozen=True)
class Sweep:
    results: Path  # the results folder
    stdout: str  # launch.py's (one summary line a run)
    backbones: tuple[str, ...]  # the backbones it swept


def _family_sweep(tmp_path_factory, name: str) -> Sweep:
    backbones = SWEEP_PARTS[name]
    results = tmp_path_factory.mktemp(name)
    proc = run_cli("launch.py", "-m", "method=*", f"backbone={','.join(backbones)}", f"dataset={SWEEP_TASK}",
                   *SWEEP_ARGS, f"results_dir={results}", timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return Sweep(results, proc.stdout, backbones)


@pytest.fixture(scope="session")
def family_sweep(tmp_path_factory) -> Sweep:
    """`method=*` x SWEEP_PARTS["family_sweep"] (the mini ViT, ConvNeXt) on SWEEP_TASK, once per session; its tests
    carry the xdist_group `family_sweep`."""
    return _family_sweep(tmp_path_factory, "family_sweep")


@pytest.fixture(scope="session")
def family_sweep_swin(tmp_path_factory) -> Sweep:
    """`method=*` x SWEEP_PARTS["family_sweep_swin"] (Swin, Mixer) on SWEEP_TASK, once per session; its tests carry
    the xdist_group `family_sweep_swin`."""
    return _family_sweep(tmp_path_factory, "family_sweep_swin")


@contextlib.contextmanager
def sweeper_context():
    """(Hydra's config loader, the master config, a BenchSweeper as Hydra hands it a sweep), within Hydra's
    initialisation: the sweeper's shortcut composes a job's config in milliseconds where Hydra takes ~0.1 s
    (tests/test_compose.py checks that the two agree)."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.plugins import Plugins
    from hydra.plugins.sweeper import Sweeper
    from hydra.types import HydraContext, RunMode

    from bench import CONF

    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        loader = GlobalHydra.instance().config_loader()
        config = loader.load_configuration("config", overrides=[], run_mode=RunMode.MULTIRUN)
        # the class as Hydra's plugin scan loaded it (the scan re-executes plugin modules)
        sweeper = next(c for c in Plugins.instance().discover(Sweeper) if c.__name__ == "BenchSweeper")()
        sweeper.hydra_context, sweeper.config = HydraContext(config_loader=loader, callbacks=None), config
        yield loader, config, sweeper


@pytest.fixture(scope="module")
def hydra_sweeper():
    """sweeper_context() for the tests of the sweeper's composition and expansion (test_compose.py,
    test_search.py)."""
    with sweeper_context() as context:
        yield context
