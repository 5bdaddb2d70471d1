"""Time the demo (a benchmark, not a test): `make demo`'s sweep and analysis, alone or beside a competitor.

    .venv/bin/python scripts/bench_demo.py [--compete N] [--results DIR]

Runs the Makefile's `demo` target (the README's main command, venv already set up) into a fresh results
folder and prints its wall time, then the runs' own seconds summed from their records by phase and how busy
the lanes were: this shared machine's speed moves by a fifth within a quarter of an hour, and the summed
training time of the same 100 runs shows how fast it ran while the wall time was taken. `--compete N` starts
N CPU-bound busy loops for the whole run, the way a shared laptop or a second job competes for the cores; they
are stopped when the demo ends. The leaderboard lands in <results>/leaderboard as with `make demo`, so two
runs' tables can be compared cell for cell.
Run it with nothing else on the machine: a figure measured beside other work means nothing.
"""
import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUSY = "while True: pass"
PHASES = {"training": "train_time_s", "evaluation": "eval_time_s", "set-up": "setup_time_s",
          "deployment": "deploy_time_s"}  # a record's seconds by phase (bench/run/runner.py)


def runs_summary(results: Path, wall: float, lanes: int) -> str:
    """One line: the runs' own seconds (`wall_time_s`) summed over the records under `results`, by phase, and
    their share of `lanes` x `wall` (the demo's wall time, its start-up and analysis included)."""
    records, unreadable = [], 0
    for path in sorted((results / "runs").rglob("record.json")):
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            unreadable += 1
    own = sum(r.get("wall_time_s") or 0.0 for r in records)
    phases = ", ".join(f"{name} {sum(r.get(key) or 0.0 for r in records):.1f}" for name, key in PHASES.items())
    completed = sum(r.get("status") == "completed" for r in records)
    return (f"runs: {len(records)} ({completed} completed" + (f", {unreadable} unreadable" if unreadable else "")
            + f"); their own seconds summed {own:.1f} ({phases}); {lanes} lane(s) busy "
            f"{100 * own / (lanes * wall):.0f} % of the demo's wall")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--compete", type=int, default=0, help="CPU-bound busy loops running beside the demo")
    ap.add_argument("--results", help="results folder (default: a new temporary folder, kept)")
    args = ap.parse_args(argv)
    results = Path(args.results or tempfile.mkdtemp(prefix="bench-demo-")).resolve()
    if (results / "runs").exists():
        sys.stderr.write(f"error: {results} already holds runs; the demo would skip them: give a new --results\n")
        return 2
    rivals = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(args.compete)]
    try:
        t0 = time.perf_counter()
        proc = subprocess.run(["make", "-s", "demo", f"RESULTS={results}"], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wall = time.perf_counter() - t0
    finally:
        for p in rivals:
            p.kill()
            p.wait()
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-3000:])
        return proc.returncode
    print(f"demo wall: {wall:.1f} s ({wall / 60:.1f} min) with {args.compete} competing busy loop(s); "
          f"leaderboard: {results / 'leaderboard'}")
    sys.path.insert(0, str(ROOT))
    from hydra_plugins.bench_launcher.bench_launcher import one_at_a_time, usable_cores

    print(runs_summary(results, wall, 1 if one_at_a_time() else usable_cores()))  # the default launcher's lanes
    return 0


if __name__ == "__main__":
    sys.exit(main())
