"""The `val` protocol's second stage: pick each grid's winner on val200, retrain it with several seeds.

VPT's protocol (KMnP/vpt:tune_vtab.py, anchors.md section 2): a learning-rate x weight-decay grid
is trained on train800 and scored on val200 at the final epoch; the best point is retrained on
train800val200 with seeds 42, 44, 82, 100 and 800 and scored on test at the final epoch; the
table reports mean +- std over the seeds. Stage one is an ordinary Hydra sweep:

    python launch.py -m method=ssf 'dataset=vtab/*' protocol=val \\
        train.lr=1e-3,5e-3,1e-2 train.weight_decay=1e-4,1e-2

Stage two is this one command, given the same overrides minus the grid (and minus protocol):

    python scripts/select_and_retrain.py method=ssf 'dataset=vtab/*' [--seeds 42,44,82,100,800] [--dry-run]

For each (backbone, dataset, method) it reads the completed `val` records whose configuration
equals the composed one except for lr, weight decay and seed, averages val top-1 over seeds per
grid point, picks the highest (ties: the smaller lr, then the smaller weight decay), writes
`<results_dir>/selection/<backbone>/<dataset>/<method>[-<variant>]/val.json`, and launches
`launch.py -m ... protocol=val_retrain train.lr=<best> train.weight_decay=<best> seed=<seeds>`,
one multirun per winning (lr, wd) with all its datasets; `hydra/launcher=...` and other
`hydra.*` arguments are passed to that launch (e.g. to submit to Slurm). The retrain's variant
is the grid's variant without lr and weight decay (`method.r=8` -> `r8`, else none).
"""
import argparse
import dataclasses
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import launch  # noqa: E402
from bench.records import RECORD, method_label, write_json_atomic  # noqa: E402
from bench.sweep import read_record  # noqa: E402

VPT_SEEDS = "42,44,82,100,800"  # KMnP/vpt:tune_vtab.py (anchors.md section 2)
GRID_KEYS = ("train.lr", "train.weight_decay")
FORBIDDEN = ("protocol", "seed", "variant", *GRID_KEYS)
# Settings that do not change a result (or are the grid itself): ignored when matching records.
IGNORE = {"train": {"lr", "weight_decay", "progress", "device", "num_threads", "eval_batch_size"},
          "dataset": {"data_root", "cache", "cache_dir", "num_workers"}}


def defaults_from_config() -> dict[str, str]:
    """The default option of each config group in conf/config.yaml (method, dataset, backbone)."""
    import yaml

    entries = yaml.safe_load((launch.CONF / "config.yaml").read_text())["defaults"]
    return {k: v for e in entries if isinstance(e, dict) for k, v in e.items()}


def parse(overrides: list[str]) -> tuple[dict[str, list[str]], list[str], list[str], str]:
    """(group choices, base overrides, hydra arguments, results_dir) from launch.py-style overrides."""
    choices = {g: [d] for g, d in defaults_from_config().items() if g in ("method", "dataset", "backbone")}
    base, hydra_args, results_dir = [], [], str(Path("results").absolute())
    for arg in launch.expand_group_args(overrides):
        key, _, value = arg.lstrip("+~").partition("=")
        if key in choices:
            choices[key] = value.split(",")
        elif key.startswith("hydra"):
            hydra_args.append(arg)
        elif key == "results_dir":
            results_dir = str(Path(value).absolute())  # the retrain runs from the project root
        elif key in FORBIDDEN:
            raise SystemExit(f"error: {arg!r}: this script sets {key} itself (the grid's values are what it chooses)")
        else:
            base.append(arg)
    return choices, base, hydra_args, results_dir


def expected_config(group_args: list[str], base: list[str]) -> dict:
    """The composed configuration of a grid point, as a plain dict (what a record's `config` holds)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    overrides = [*group_args, *base, "protocol=val"]
    with initialize_config_dir(config_dir=str(launch.CONF), version_base=None):
        cfg = compose("config", overrides=overrides)
    return dataclasses.asdict(launch.to_run_config(OmegaConf.to_container(cfg, resolve=True), overrides))


def _plain(x):
    return json.loads(json.dumps(x, default=str))


def matches(record_cfg: dict, expected: dict) -> bool:
    """Same configuration except lr, weight decay, seed and settings that do not change a result.

    Only keys present on both sides are compared (records from older code may lack newer fields);
    method arguments are compared on the keys the method's config file sets.
    """
    rec, exp = _plain(record_cfg), _plain(expected)
    if rec.get("method") != exp["method"]:
        return False
    if any(rec.get("method_args", {}).get(k) != v for k, v in exp["method_args"].items()):
        return False
    for part in ("dataset", "backbone", "train"):
        a, b = rec.get(part, {}), exp[part]
        if any(a[k] != b[k] for k in a.keys() & b.keys() if k not in IGNORE.get(part, ())):
            return False
    return True


def grid_points(results_dir: str, backbone: str, dataset: str, expected: dict) -> dict[tuple[float, float], list]:
    """{(lr, wd): [(seed, val_top1, record path), ...]} of the completed matching `val` runs."""
    points = defaultdict(list)
    folder = Path(results_dir) / "runs" / backbone / dataset
    for path in sorted(folder.glob(f"{expected['method']}*/val-seed*/{RECORD}")):
        rec, _ = read_record(path)  # None for a corrupt or unreadable record: not a grid point
        if rec is None or rec.get("status") != "completed" or rec.get("protocol") != "val" or "val_top1" not in rec:
            continue
        if matches(rec.get("config", {}), expected):
            t = rec["config"]["train"]
            points[(float(t["lr"]), float(t["weight_decay"]))].append((rec["seed"], rec["val_top1"], str(path)))
    return dict(points)


def select(points: dict[tuple[float, float], list]) -> tuple[float, float]:
    """The (lr, wd) with the highest mean final-epoch val top-1; ties: smaller lr, then smaller wd."""
    return max(points, key=lambda p: (sum(v for _, v, _ in points[p]) / len(points[p]), -p[0], -p[1]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("overrides", nargs="*", help="launch.py overrides of the grid, minus lr, weight decay and protocol")
    ap.add_argument("--seeds", default=VPT_SEEDS, help=f"retrain seeds (default VPT's {VPT_SEEDS})")
    ap.add_argument("--dry-run", action="store_true", help="write the selections, print the commands, launch nothing")
    args = ap.parse_args(argv)
    choices, base, hydra_args, results_dir = parse(args.overrides)
    variant = launch.variant_from_overrides(base)

    launches = defaultdict(list)  # (backbone, method, lr, wd) -> datasets
    missing = []
    for backbone in choices["backbone"]:
        for method in choices["method"]:
            for dataset in choices["dataset"]:
                expected = expected_config([f"method={method}", f"dataset={dataset}", f"backbone={backbone}"], base)
                points = grid_points(results_dir, backbone, dataset, expected)
                where = f"{backbone} {dataset} {method_label(method, variant)}"
                if not points:
                    missing.append(where)
                    continue
                lr, wd = select(points)
                launches[(backbone, method, lr, wd)].append(dataset)
                summary = {"backbone": backbone, "dataset": dataset, "method": method, "variant": variant,
                           "selected": {"lr": lr, "weight_decay": wd}, "seeds": [int(s) for s in args.seeds.split(",")],
                           "rule": "highest mean final-epoch val top-1 over seeds; ties: smaller lr, then smaller wd",
                           "grid": [{"lr": p[0], "weight_decay": p[1], "val_top1_mean": sum(v for _, v, _ in r) / len(r),
                                     "seeds": [s for s, _, _ in r], "records": [q for _, _, q in r]}
                                    for p, r in sorted(points.items())]}
                out = (Path(results_dir) / "selection" / backbone / dataset / method_label(method, variant) / "val.json")
                write_json_atomic(out, summary)
                print(f"[selected] {where}: lr {lr:g}, weight decay {wd:g} "
                      f"(best of {len(points)} grid points on val) -> {out}", flush=True)
    if missing:
        sys.stderr.write("error: no completed `val` grid runs matching these settings for: " + "; ".join(missing)
                         + f"\n  (looked under {results_dir}/runs/<backbone>/<dataset>/<method>*/val-seed*/; run the grid "
                           "first: python launch.py -m ... protocol=val train.lr=... train.weight_decay=...)\n")
        return 2
    code = 0
    for (backbone, method, lr, wd), datasets in launches.items():
        cmd = [sys.executable, str(ROOT / "launch.py"), "-m", f"method={method}", f"dataset={','.join(datasets)}",
               f"backbone={backbone}", "protocol=val_retrain", f"train.lr={lr!r}", f"train.weight_decay={wd!r}",
               f"seed={args.seeds}", f"variant={variant}", f"results_dir={results_dir}", *base, *hydra_args]
        print("[retrain] " + " ".join(cmd[1:]), flush=True)
        if not args.dry_run:
            code = subprocess.call(cmd, cwd=ROOT) or code
    return code


if __name__ == "__main__":
    sys.exit(main())
