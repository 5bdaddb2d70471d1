"""Aggregate run records into leaderboards and plots.

    python analyze.py RESULTS_DIR [--out OUT_DIR]

Reads every record.json under RESULTS_DIR (never logs, never recomputing a metric), and for
each benchmark x protocol writes `leaderboard_<benchmark>_<protocol>.csv` and `.md` and an
accuracy-versus-tunable-parameters plot `accuracy_vs_params_<benchmark>_<protocol>.png`
into OUT_DIR (default RESULTS_DIR/leaderboard), and prints the markdown tables.
Records of different protocols are never averaged together.
"""
import argparse
import sys
from pathlib import Path

from bench.benchmarks import BENCHMARK_TASKS
from bench.plots import accuracy_vs_params
from bench.records import load_records
from bench.tables import leaderboard, status_cells, to_markdown


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results_dir", type=Path, help="folder searched recursively for record.json files")
    ap.add_argument("--out", type=Path, default=None, help="output folder (default: RESULTS_DIR/leaderboard)")
    args = ap.parse_args(argv)

    if not args.results_dir.is_dir():
        print(f"error: results folder {args.results_dir} does not exist", file=sys.stderr)
        return 2
    df, problems = load_records(args.results_dir)
    if df.empty:
        print(f"error: no readable record.json under {args.results_dir}"
              + (f" ({len(problems)} unreadable)" if problems else ""), file=sys.stderr)
        return 2
    out = args.out or args.results_dir / "leaderboard"
    out.mkdir(parents=True, exist_ok=True)
    counts = df["status"].value_counts().to_dict()
    print(f"{len(df)} records ({', '.join(f'{v} {k}' for k, v in counts.items())}); "
          f"{len(problems)} unreadable skipped")

    for (benchmark, protocol), part in df.groupby(["benchmark", "protocol"]):
        stem = f"{benchmark}_{protocol}"
        table = leaderboard(part, BENCHMARK_TASKS.get(benchmark))
        _write_text_atomic(out / f"leaderboard_{stem}.csv", table.to_csv())
        md = to_markdown(table, status_cells(part))
        _write_text_atomic(out / f"leaderboard_{stem}.md", f"# {benchmark} ({protocol} protocol), test top-1 %\n\n{md}\n")
        accuracy_vs_params(table, f"{benchmark} ({protocol} protocol)", out / f"accuracy_vs_params_{stem}.png")
        print(f"\n## {benchmark} ({protocol} protocol): test top-1 %, mean over seeds\n\n{md}")
    print(f"\nwrote tables and plots to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
