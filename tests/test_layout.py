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


def test_status_loads_neither_pil_numpy_nor_torch(tmp_path):
    """`launch.py --status` validates and counts a grid: the choice names it checks against live in
    bench/data/choices.py, which imports nothing."""
    code = ("import runpy, sys\n"
            f"sys.argv = ['launch.py', '--status', 'method=lora', 'dataset=mini/digits', 'results_dir={tmp_path}']\n"
            "try:\n    runpy.run_path('launch.py', run_name='__main__')\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "print('LOADED', sorted(w for w in ('PIL', 'numpy', 'torch') if w in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "missing" in proc.stdout  # the status table was printed
    assert proc.stdout.strip().splitlines()[-1] == "LOADED []"


def bench_imports() -> dict[str, set[str]]:
    """module -> the bench modules it imports anywhere in its file (top level or inside a function);
    `from package import submodule` counts as importing the submodule, not the package."""
    files = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
             for p in (ROOT / "bench").rglob("*.py")}
    graph = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the package, up level - 1
                    up = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                subs = {f"{base}.{a.name}" for a in node.names} & files.keys()
                found |= subs if len(subs) == len(node.names) else subs | {base}
        graph[name] = {m for m in found if m in files and m != name}
    return graph


def test_the_data_layer_imports_nothing_from_training_or_runs():
    graph = bench_imports()
    wrong = {m: sorted(i for i in deps if i.startswith(("bench.train", "bench.run")))
             for m, deps in graph.items() if m.startswith("bench.data")}
    assert {m: d for m, d in wrong.items() if d} == {}


def test_no_import_cycle_in_bench():
    graph = bench_imports()
    done, path = set(), []

    def visit(m):  # depth first; a module met again on the current path closes a cycle
        if m in path:
            raise AssertionError(f"import cycle: {' -> '.join(path[path.index(m):] + [m])}")
        if m in done:
            return
        path.append(m)
        for dep in sorted(graph[m]):
            visit(dep)
        path.pop()
        done.add(m)

    for module in sorted(graph):
        visit(module)


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
