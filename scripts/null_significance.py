"""How often analyze.py calls a difference significant when there is none: generated null records, real analysis.

    python scripts/null_significance.py [--methods 6] [--backbones 3] [--seeds 3] [--images 2000] [--spread 1.5]
                                        [--seed 0] [--keep DIR]

Writes records and predictions for `--methods` methods (full the baseline) x the 19 VTAB-1k tasks x
`--backbones` backbones x `--seeds` seeds, where every method draws each seed's accuracy from the same
distribution (a task's level plus a normal seed effect of sd `--spread` points): no method is better than
another. Each run's per-image correctness comes from a latent difficulty shared by all runs of the task plus
noise of its own, so runs agree on most images and disagree on some, as real ones do. Then analyze.py's
`main` (`--baseline full`, csv only) tabulates them, and this prints the share of per-task comparisons with
p < 0.05 before and after Holm's adjustment (a correct test: about 5 % before), and, on the same records, the
share the former statistics gave (seeds resampled with replacement, normal reference; issue 31 measured 13.3 %
on this design). docs/statistics.md quotes its output.
"""
import argparse
import contextlib
import io
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

METHODS = ("full", "linear", "bias", "lora", "adapter", "ssf", "vpt", "difffit")
NOISE = 0.5  # sd of a run's own per-image noise next to the shared difficulty (sd 1): how much runs disagree


def generate(root: Path, methods: int, backbones: int, seeds: int, images: int, spread: float, seed: int) -> int:
    """Write the null records and their predictions under root/runs; returns the number of runs."""
    from scipy.special import ndtri

    from bench import predictions, records
    from bench.analysis.benchmarks import BENCHMARK_GROUPS, BENCHMARK_TASKS

    rng = np.random.default_rng(seed)
    tasks = BENCHMARK_TASKS["vtab"]
    runs = 0
    for b in range(backbones):
        backbone = f"vit_null{b}"
        for task in tasks:
            group = next(g for g, ts in BENCHMARK_GROUPS["vtab"].items() if task in ts)
            level = rng.uniform(0.4, 0.9)  # the task's accuracy, the same for every method
            difficulty = rng.normal(0, 1, images)  # (n,) shared by every run of the task
            target = rng.integers(0, 10, images)
            fingerprint = f"sha256:{b:04d}{tasks.index(task):04d}{'0' * 56}"
            for method in METHODS[:methods]:
                for s in range(seeds):
                    acc = np.clip(level + rng.normal(0, spread / 100), 0.01, 0.99)
                    score = difficulty + NOISE * rng.normal(0, 1, images)
                    correct = score < ndtri(acc) * np.sqrt(1 + NOISE ** 2)  # about `acc` of the images right
                    pred = np.where(correct, target, (target + 1) % 10)
                    path = records.run_dir(root, backbone, task, method, "", "paper", s)
                    path.mkdir(parents=True, exist_ok=True)
                    predictions.save(path / records.PREDICTIONS, predictions.arrays(pred, target, fingerprint, 10))
                    records.write_json_atomic(path / records.RECORD, {
                        "status": "completed", "method": method, "variant": "", "dataset": task, "benchmark": "vtab",
                        "group": group, "backbone": backbone, "backbone_arch": "vit_base_patch16_224",
                        "protocol": "paper", "seed": s, "test_top1": 100.0 * float(correct.mean()),
                        "tunable_params": 1000, "tunable_params_no_head": 900, "test_fingerprint": fingerprint,
                        "predictions": records.PREDICTIONS, "predictions_images": images,
                        "predictions_complete": True})
                    runs += 1
    return runs


def former_p(a: list, b: list, resamples: int, seed: int, *names: str) -> float:
    """The p-value the statistics gave before issue 31: two-level bootstrap, seeds drawn with replacement,
    normal reference (one seed each: exact McNemar, unchanged)."""
    from bench.analysis import stats

    if len(a) == len(b) == 1:
        return stats.mcnemar(a[0], b[0])
    rng = stats.generator(seed, "pair", *names)
    acc = stats.image_draws(a + b, resamples, rng)
    draws = stats.seed_means(acc[:, :len(a)], rng) - stats.seed_means(acc[:, len(a):], rng)
    diff = 100.0 * (np.mean([c.mean() for c in a]) - np.mean([c.mean() for c in b]))
    return stats.normal_p(diff, draws)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", type=int, default=6, help=f"methods, full first (2 to {len(METHODS)}; default 6)")
    ap.add_argument("--backbones", type=int, default=3, help="backbones (default 3)")
    ap.add_argument("--seeds", type=int, default=3, help="seeds per method and task (default 3)")
    ap.add_argument("--images", type=int, default=2000, help="test images per task (default 2000)")
    ap.add_argument("--spread", type=float, default=1.5, help="sd between seeds, points (default 1.5)")
    ap.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    ap.add_argument("--keep", type=Path, default=None, metavar="DIR",
                    help="write the records and tables into DIR (must not exist) instead of a temporary folder")
    args = ap.parse_args(argv)
    if not 2 <= args.methods <= len(METHODS) or min(args.backbones, args.seeds, args.images) < 1:
        ap.error(f"--methods 2 to {len(METHODS)}; --backbones, --seeds and --images at least 1")
    if args.keep is not None and args.keep.exists():
        ap.error(f"--keep {args.keep}: exists already; name a new folder")
    import pandas as pd

    from bench import records
    from bench.analysis import cli, stats
    from bench.analysis.benchmarks import BENCHMARK_TASKS

    with contextlib.ExitStack() as stack:
        root = args.keep or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        runs = generate(root, args.methods, args.backbones, args.seeds, args.images, args.spread, args.seed)
        out = root / "leaderboard"
        with contextlib.redirect_stdout(io.StringIO()):
            code = cli.main([str(root), "--out", str(out), "--formats", "csv", "--quiet", "--baseline", "full",
                             "--no-published", "--jobs", "1"])
        if code:
            print(f"error: analyze.py exited with {code}", file=sys.stderr)
            return code
        sig = pd.read_csv(out / "significance_vtab_paper.csv")
        per_task = sig[sig["dataset"].isin(BENCHMARK_TASKS["vtab"])]
        tested = per_task[per_task["p_value"].notna()]
        store, found = stats.Predictions(), []
        recs = {}
        for p in sorted((root / "runs").rglob(records.RECORD)):
            parts = p.relative_to(root / "runs").parts  # backbone, vtab, task, method, paper-seedS, record.json
            recs.setdefault((parts[0], f"{parts[1]}/{parts[2]}", parts[3]), []).append(
                store.correct(str(p), "predictions.npz"))
        for r in per_task.to_dict("records"):
            a, b = recs[(r["backbone"], r["dataset"], r["method"])], recs[(r["backbone"], r["dataset"], "full")]
            found.append(former_p(a, b, stats.CIOptions.resamples, 0, r["backbone"], r["method"], "full",
                                  r["dataset"]))
    share = (tested["p_value"] < 0.05).mean()
    print(f"{runs} runs: {args.methods} methods x 19 VTAB-1k tasks x {args.backbones} backbones x {args.seeds} seeds, "
          f"{args.images:,} test images, {args.spread:g} points between seeds, no true difference")
    print(f"{len(tested)} of {len(per_task)} per-task comparisons with full tested "
          f"({', '.join(sorted(set(tested['compares'].dropna())))})")
    print(f"p < 0.05 before Holm: {(tested['p_value'] < 0.05).sum()} ({100 * share:.1f} %); "
          f"after Holm: {(tested['p_adjusted'] < 0.05).sum()} ({100 * (tested['p_adjusted'] < 0.05).mean():.1f} %)")
    print(f"the former statistics (seeds resampled with replacement, normal reference) on the same records: "
          f"{int(np.sum(np.array(found) < 0.05))} ({100 * np.mean(np.array(found) < 0.05):.1f} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
