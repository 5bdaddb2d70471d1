"""The `val` protocol's second stage: pick each grid's winner on val200, retrain it with several seeds.

VPT's protocol (KMnP/vpt:tune_vtab.py, anchors.md section 2): a learning-rate x weight-decay grid
is trained on train800 and scored on val200 at the final epoch; the best point is retrained on
train800val200 with seeds 42, 44, 82, 100 and 800 and scored on test at the final epoch; the
table reports mean +- std over the seeds. Stage one is an ordinary Hydra sweep:

    python launch.py -m method=ssf 'dataset=vtab/*' protocol=val \\
        train.lr=1e-3,5e-3,1e-2 train.weight_decay=1e-4,1e-2

or, with a recipe's grid as data (conf/grid/<recipe>/<method>.yaml: lr, wd and the method's own knobs):

    python launch.py -m method=lora 'dataset=vtab/*' recipe=petl_vision protocol=val grid=petl_vision/lora

Stage two is this one command, given the same overrides minus the grid's values (and minus protocol):

    python scripts/select_and_retrain.py method=ssf 'dataset=vtab/*' [--seeds 42,44,82,100,800] [--dry-run]
    python scripts/select_and_retrain.py method=lora 'dataset=vtab/*' recipe=petl_vision grid=petl_vision/lora

For each (backbone, dataset, method) it reads the completed `val` records whose configuration
equals the composed one except for the grid's keys (lr and weight decay, or those of `grid=`) and
the seed, averages val top-1 over seeds per grid point, picks the highest (ties: the smaller value
of each grid key in order, so the smaller lr first, as VPT breaks ties), writes
`<results_dir>/selection/<backbone>/<dataset>/<method>[-<variant>]/val.json`, and launches
`launch.py -m ... protocol=val_retrain <key>=<best> ... seed=<seeds>`, one multirun per winning
point with all its datasets; `hydra/launcher=...` and other `hydra.*` arguments are passed to that
launch (e.g. to submit to Slurm). The seeds default to the recipe's `retrain_seeds` (VPT's five,
PETL_Vision's 42), else VPT's. The retrain's variant is the grid's variant without the grid's keys.

A budgeted search (bench/search.py; docs/recipes.md "Equal tuning budgets") is selected the same way,
given the same `search=<space> search.trials=K ...` arguments as its first stage: the K drawn
configurations of each method are the grid (its keys: the method's space), every one of them must be
completed, the highest mean val top-1 wins, ties going to the earlier-drawn trial (so the choice at a
budget of n trials is the best of the first n), and `val.json` lists the K trials in draw order.
`--status` prints, for each (backbone, dataset, method), how many trials are completed and the winner
once all are, then the retrain's status (launch.py --status); it writes and launches nothing.
Stage one and two in one command: scripts/search.py.
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

from bench import CONF  # noqa: E402
from bench.launch.cli import check_recipes, config_defaults, expand_group_args  # noqa: E402
from bench.launch.identity import to_run_config  # noqa: E402
from bench.launch.sweep import read_record  # noqa: E402
from bench.records import RECORD, method_label, write_json_atomic  # noqa: E402
from bench.search import SearchError, load_space, split_args, trials_of  # noqa: E402

VPT_SEEDS = "42,44,82,100,800"  # KMnP/vpt:tune_vtab.py (anchors.md section 2)
GRID_KEYS = ("train.lr", "train.weight_decay")  # without grid=: the lr x wd grid
FORBIDDEN = ("protocol", "seed", "variant")
# Settings that do not change a result (or are the grid itself): ignored when matching records.
IGNORE = {"train": {"lr", "weight_decay", "progress", "device", "num_threads", "eval_batch_size"},
          "dataset": {"data_root", "cache", "cache_dir", "num_workers"}}


def grid_keys(grid: str | None) -> tuple[str, ...]:
    """The keys a grid sweeps: those of conf/grid/<grid>.yaml's hydra.sweeper.params, else lr and wd."""
    import yaml

    if not grid:
        return GRID_KEYS
    return tuple(yaml.safe_load((CONF / "grid" / f"{grid}.yaml").read_text())["hydra"]["sweeper"]["params"])


def parse(overrides: list[str]) -> tuple[dict[str, list[str]], list[str], list[str], str, tuple[str, ...]]:
    """(group choices, base overrides, hydra arguments, results_dir, grid keys) from launch.py-style overrides
    without the search's (`split_args`); with a search, the keys of each chosen method's space are refused too."""
    choices = {g: [d] for g, d in config_defaults().items() if g in ("method", "dataset", "backbone")}
    base, hydra_args, results_dir, grid = [], [], str(Path("results").absolute()), None
    args = expand_group_args(overrides)
    check_recipes(args)
    for arg in args:
        key, _, value = arg.lstrip("+~").partition("=")
        if key == "grid":
            grid = value
    keys = grid_keys(grid)
    for arg in args:
        key, _, value = arg.lstrip("+~").partition("=")
        if key in choices:
            choices[key] = value.split(",")
        elif key == "grid":
            continue  # the grid is what this script chooses from, never relaunched
        elif key.startswith("hydra"):
            hydra_args.append(arg)
        elif key == "results_dir":
            results_dir = str(Path(value).absolute())  # the retrain runs from the project root
        elif key in FORBIDDEN or key in keys:
            raise SystemExit(f"error: {arg!r}: this script sets {key} itself (the grid's values are what it chooses)")
        else:
            base.append(arg)
    return choices, base, hydra_args, results_dir, keys


def value_of(config: dict, key: str):
    """`train.lr` -> config["train"]["lr"]; `method.r` -> config["method_args"]["r"] (a record's config)."""
    part, _, name = key.partition(".")
    return config.get("method_args" if part == "method" else part, {}).get(name)


def expected_config(group_args: list[str], base: list[str]) -> dict:
    """The composed configuration of a grid point, as a plain dict (what a record's `config` holds)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    overrides = [*group_args, *base, "protocol=val"]
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose("config", overrides=overrides)
    return dataclasses.asdict(to_run_config(OmegaConf.to_container(cfg, resolve=True), overrides))


def _plain(x):
    return json.loads(json.dumps(x, default=str))


def matches(record_cfg: dict, expected: dict, keys: tuple[str, ...] = GRID_KEYS) -> bool:
    """Same configuration except the grid's `keys`, the seed and settings that do not change a result.

    Only keys present on both sides are compared (records from older code may lack newer fields);
    method arguments are compared on the keys the method's config file sets.
    """
    rec, exp = _plain(record_cfg), _plain(expected)
    skip = {(k.partition(".")[0], k.partition(".")[2]) for k in keys}
    if rec.get("method") != exp["method"]:
        return False
    if any(rec.get("method_args", {}).get(k) != v for k, v in exp["method_args"].items() if ("method", k) not in skip):
        return False
    for part in ("dataset", "backbone", "train", "recipe"):
        a, b = rec.get(part, {}), exp.get(part, {})
        if any(a[k] != b[k] for k in a.keys() & b.keys() if k not in IGNORE.get(part, ()) and (part, k) not in skip):
            return False
    return True


def grid_points(results_dir: str, backbone: str, dataset: str, expected: dict,
                keys: tuple[str, ...] = GRID_KEYS, pruned: dict | None = None) -> dict[tuple, list]:
    """{(value of each grid key): [(seed, val_top1, record path), ...]} of the completed matching `val` runs;
    runs a search's pruner stopped (bench/prune.py) go into `pruned` instead, never among the points."""
    points = defaultdict(list)
    folder = Path(results_dir) / "runs" / backbone / dataset
    for path in sorted(folder.glob(f"{expected['method']}*/val-seed*/{RECORD}")):
        rec, _ = read_record(path)  # None for a corrupt or unreadable record: not a grid point
        if rec is None or rec.get("status") != "completed" or rec.get("protocol") != "val" or "val_top1" not in rec:
            continue
        if matches(rec.get("config", {}), expected, keys):
            point = tuple(value_of(rec["config"], k) for k in keys)
            if rec.get("pruned"):
                if pruned is not None:
                    pruned.setdefault(point, []).append((rec["seed"], rec["val_top1"], str(path)))
                continue
            points[point].append((rec["seed"], rec["val_top1"], str(path)))
    return dict(points)


def select(points: dict[tuple, list], order: list[tuple] | None = None) -> tuple:
    """The point with the highest mean final-epoch val top-1; ties: the smaller value of each key in order,
    or with `order` (a search's trials in draw order) the earlier-drawn point."""
    mean = lambda p: sum(v for _, v, _ in points[p]) / len(points[p])
    if order is not None:
        return max(points, key=lambda p: (mean(p), -order.index(p)))
    return max(points, key=lambda p: (mean(p), *(-x for x in p)))


def search_points(results_dir: str, backbone: str, dataset: str, expected: dict, keys: tuple[str, ...],
                  drawn: list[tuple]) -> tuple[dict[tuple, list], dict[tuple, list], list[tuple]]:
    """(the completed runs of the drawn points, those the pruner stopped, the drawn points with neither)."""
    stopped: dict = {}
    points = grid_points(results_dir, backbone, dataset, expected, keys, stopped)
    return ({p: points[p] for p in drawn if p in points}, {p: stopped[p] for p in drawn if p in stopped and p not in points},
            [p for p in drawn if p not in points and p not in stopped])


def default_seeds(base: list[str], benchmark: str) -> str:
    """The recipe's retrain seeds (recipe= in `base`, else the benchmark's default recipe), else VPT's."""
    from bench import recipes

    name = next((a.partition("=")[2] for a in base if a.partition("=")[0] == "recipe"), recipes.default_for(benchmark))
    seeds = recipes.info(name).get("retrain_seeds") if name else None
    return ",".join(str(s) for s in seeds) if seeds else VPT_SEEDS


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("overrides", nargs="*", help="launch.py overrides of the grid, minus lr, weight decay and protocol")
    ap.add_argument("--seeds", default=None, help=f"retrain seeds (default: the recipe's, else VPT's {VPT_SEEDS})")
    ap.add_argument("--dry-run", action="store_true", help="write the selections, print the commands, launch nothing")
    ap.add_argument("--status", action="store_true", help="a search's trials and the retrain's runs: where they stand")
    args = ap.parse_args(argv)
    try:
        overrides, search = split_args(args.overrides)
        spaces = {m: tuple(sorted(load_space(m, search.space))) for m in parse(overrides)[0]["method"]} \
            if search and search.trials else {}
    except SearchError as e:
        sys.stderr.write(f"error: {e}\n")
        return 2
    choices, base, hydra_args, results_dir, keys = parse(overrides)
    for arg in base:
        if any(arg.lstrip("+~").partition("=")[0] in k for k in spaces.values()):
            sys.stderr.write(f"error: {arg!r}: the search draws this value; drop it\n")
            return 2
    args.seeds = args.seeds or default_seeds(base, choices["dataset"][0].split("/", 1)[0])

    launches = defaultdict(list)  # (backbone, method, variant, grid keys, point) -> datasets
    missing, unfinished = [], []
    for backbone in choices["backbone"]:
        for method in choices["method"]:
            drawn = None
            if method in spaces:
                keys = spaces[method]
                drawn = [tuple(t[k] for k in keys) for t in trials_of(search, method)]
            for dataset in choices["dataset"]:
                expected = expected_config([f"method={method}", f"dataset={dataset}", f"backbone={backbone}"], base)
                variant = expected["variant"]  # the grid's variant without the grid's keys (recipe first)
                if drawn is not None:  # retrains of different searches (or of a grid) in different folders
                    variant = "_".join(v for v in (variant, search.tag()) if v)
                where = f"{backbone} {dataset} {method_label(method, variant)}"
                if drawn is None:
                    points = grid_points(results_dir, backbone, dataset, expected, keys)
                else:
                    points, stopped, waiting = search_points(results_dir, backbone, dataset, expected, keys, drawn)
                    if waiting:
                        unfinished.append(f"{where}: {len(points) + len(stopped)} of {len(drawn)} trials completed"
                                          + (f" ({len(stopped)} pruned)" if stopped else ""))
                        continue
                if not points:
                    missing.append(where)
                    continue
                best = select(points, [p for p in drawn if p in points] if drawn else None)
                if args.status:
                    print(f"[status] {where}: {'all ' + str(len(drawn)) + ' trials' if drawn else str(len(points)) + ' grid points'} "
                          f"completed; selected {dict(zip(keys, best))}", flush=True)
                    launches[(backbone, method, variant, keys, best)].append(dataset)
                    continue
                launches[(backbone, method, variant, keys, best)].append(dataset)
                name = lambda k: k.rsplit(".", 1)[-1]
                summary = {"backbone": backbone, "dataset": dataset, "method": method, "variant": variant,
                           "recipe": expected["recipe"]["name"], "grid_keys": list(keys),
                           "selected": {name(k): v for k, v in zip(keys, best)},
                           "seeds": [int(s) for s in args.seeds.split(",")],
                           "rule": "highest mean final-epoch val top-1 over seeds; ties: the smaller value of each "
                                   "grid key in order (smaller lr first)",
                           "grid": [{**{name(k): v for k, v in zip(keys, p)},
                                     "val_top1_mean": sum(v for _, v, _ in r) / len(r),
                                     "seeds": [s for s, _, _ in r], "records": [q for _, _, q in r]}
                                    for p, r in (sorted(points.items()) if drawn is None
                                                 else ((p, points.get(p) or stopped[p]) for p in drawn))]}
                if drawn is not None:  # the search, for the budget curves (bench/analysis/budget.py)
                    summary["rule"] = "highest mean final-epoch val top-1 over seeds; ties: the earlier-drawn trial"
                    summary["search"] = {**vars(search), "keys": list(keys)}
                    summary["grid_keys"] = list(keys)
                    for entry, p in zip(summary["grid"], drawn):
                        entry["pruned"] = p not in points
                out = (Path(results_dir) / "selection" / backbone / dataset / method_label(method, variant) / "val.json")
                write_json_atomic(out, summary)
                chosen = ", ".join(f"{name(k)} {v!r}" for k, v in zip(keys, best))
                what = "grid points" if drawn is None else "drawn trials"
                print(f"[selected] {where}: {chosen} (best of {len(points)} {what} on val) -> {out}", flush=True)
    for line in unfinished:
        print(f"[status] {line}" if args.status else f"[waiting] {line}: not selected", flush=True)
    if args.status:
        for where in missing:
            print(f"[status] {where}: no completed val runs", flush=True)
        for (backbone, method, variant, keys, best), datasets in launches.items():
            cmd = [sys.executable, str(ROOT / "launch.py"), "--status", *retrain_args(
                backbone, method, variant, keys, best, datasets, args.seeds, results_dir, base, hydra_args)]
            print("[retrain status] " + " ".join(cmd[1:]), flush=True)
            subprocess.call(cmd, cwd=ROOT)
        return 0
    if missing:
        sys.stderr.write("error: no completed `val` grid runs matching these settings for: " + "; ".join(missing)
                         + f"\n  (looked under {results_dir}/runs/<backbone>/<dataset>/<method>*/val-seed*/; run the grid "
                           "first: python launch.py -m ... protocol=val train.lr=... train.weight_decay=...)\n")
        return 2
    code = 0
    for (backbone, method, variant, keys, best), datasets in launches.items():
        cmd = [sys.executable, str(ROOT / "launch.py"), "-m", *retrain_args(
            backbone, method, variant, keys, best, datasets, args.seeds, results_dir, base, hydra_args)]
        print("[retrain] " + " ".join(cmd[1:]), flush=True)
        if not args.dry_run:
            code = subprocess.call(cmd, cwd=ROOT) or code
    if unfinished:
        sys.stderr.write(f"error: {len(unfinished)} search cell(s) have trials not completed (above); finish the "
                         "search first (launch.py -m ... with the same search= arguments; --status shows them)\n")
        return 2
    return code


def retrain_args(backbone, method, variant, keys, best, datasets, seeds, results_dir, base, hydra_args) -> list[str]:
    """launch.py's arguments for the retrain of `best` (the winner's values of `keys`) on `datasets`."""
    return [f"method={method}", f"dataset={','.join(datasets)}", f"backbone={backbone}", "protocol=val_retrain",
            *(f"{k}={v!r}" for k, v in zip(keys, best)), f"seed={seeds}", f"variant={variant}",
            f"results_dir={results_dir}", *base, *hydra_args]


if __name__ == "__main__":
    sys.exit(main())
