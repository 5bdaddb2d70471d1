"""A budgeted search's two stages in one command: K drawn trials per method on val, then select and retrain.

    python scripts/search.py method=ssf,lora 'dataset=mini/*' search.trials=4 [search=<space>]
        [search.sampler=random|qmc] [search.seed=0] [search.pruner=none|median|asha|hyperband]
        [search.storage=sqlite:///...] [--stage both|search|retrain] [--status] [--seeds 0,1]

Stage one is `launch.py -m <arguments> protocol=val`: each method gets the same K configurations per
(task, backbone), drawn from its space (conf/search/<method>.yaml, bench/search.py), each an ordinary
run, so a relaunch skips finished trials and resumes unfinished ones, on any launcher
(`hydra/launcher=slurm` submits them as Slurm arrays). Stage two is scripts/select_and_retrain.py with
the same arguments: the highest val top-1 of the K trials (ties: the earlier-drawn trial), retrained
on train+val with the recipe's seeds. `--status` shows both stages and launches nothing.
docs/recipes.md ("Equal tuning budgets").
"""
import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.search import SearchError, split_args  # noqa: E402

STAGES = ("both", "search", "retrain")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("overrides", nargs="*", help="launch.py overrides, with search.trials=K (and search=<space>)")
    ap.add_argument("--stage", choices=STAGES, default="both", help="both (default), search (stage one) or retrain")
    ap.add_argument("--status", action="store_true", help="where both stages stand; launches nothing")
    ap.add_argument("--seeds", default=None, help="retrain seeds (default: the recipe's; select_and_retrain.py)")
    ap.add_argument("--dry-run", action="store_true", help="stage two: write the selections, launch nothing")
    args = ap.parse_intermixed_args(argv)  # overrides may stand after the options, as in docs/recipes.md
    try:
        rest, search = split_args(args.overrides)
    except SearchError as e:
        sys.stderr.write(f"error: {e}\n")
        return 2
    if search is None or not search.trials:
        sys.stderr.write("error: no search: give search.trials=K (and optionally search=<space>, search.sampler, "
                         "search.seed)\n")
        return 2
    bad = [a for a in rest if a.lstrip("+").partition("=")[0] == "protocol"]
    if bad:
        sys.stderr.write(f"error: {bad[0]!r}: the search runs protocol=val and the retrain protocol=val_retrain\n")
        return 2
    overrides = [*rest, *search.args()]
    python = sys.executable
    first = [python, str(ROOT / "launch.py"), "--status" if args.status else "-m", *overrides]
    second = [python, str(ROOT / "scripts" / "select_and_retrain.py"), *overrides,
              *(["--status"] if args.status else []), *(["--dry-run"] if args.dry_run else []),
              *(["--seeds", args.seeds] if args.seeds else [])]
    if args.status or args.stage in ("both", "search"):
        print("[stage 1: search] " + " ".join(first[1:]), flush=True)
        code = subprocess.call(first, cwd=ROOT)
        if code and not args.status:
            return code
    if args.status or args.stage in ("both", "retrain"):
        print("[stage 2: select and retrain] " + " ".join(second[1:]), flush=True)
        return subprocess.call(second, cwd=ROOT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
