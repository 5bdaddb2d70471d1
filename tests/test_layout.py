"""The package layout's promises: what each role loads at import, and thin entry points."""
import ast
import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.process  # each check imports the packages in a fresh interpreter

LAUNCH = ["bench.launch", "bench.launch.cli", "bench.launch.identity", "bench.launch.job", "bench.launch.sweep", "bench.search"]
ANALYSIS = ["bench.analysis", *(f"bench.analysis.{m}" for m in
                                ("benchmarks", "budget", "cli", "load", "plots", "published", "report", "shots", "stats",
                                 "tables"))]


def loaded_after(modules: list[str], watched: tuple[str, ...]) -> list[str]:
    """Which of `watched` a fresh interpreter has in sys.modules after importing `modules`."""
    code = f"import sys\nfor m in {modules!r}: __import__(m)\nprint(sorted(w for w in {watched!r} if w in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return ast.literal_eval(proc.stdout.strip())


def test_launching_loads_neither_torch_nor_hydra():
    assert loaded_after(LAUNCH, ("torch", "hydra", "omegaconf")) == []


def test_analysis_loads_neither_torch_nor_hydra():
    assert loaded_after(["analyze", *ANALYSIS], ("torch", "timm", "hydra")) == []


def test_record_io_is_pandas_free():
    """Every training job writes its record through bench.records: it must not pay for pandas."""
    assert loaded_after(["bench.records", "bench.config"], ("pandas", "torch")) == []


def imported_modules(path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_sweeper_plugin_imports_the_library_not_the_launch_script():
    imported = imported_modules(ROOT / "hydra_plugins" / "bench_sweeper" / "bench_sweeper.py")
    assert "launch" not in imported
    assert {"bench.launch", "bench.launch.identity"} <= imported


def test_entry_points_are_thin():
    for script in ("launch.py", "analyze.py"):
        assert len((ROOT / script).read_text().splitlines()) < 60, script
