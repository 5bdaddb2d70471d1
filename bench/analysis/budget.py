"""Accuracy as a function of the tuning budget, and what the tuning cost: a budgeted search's trials.

A search (bench/search.py, scripts/select_and_retrain.py) trains K drawn configurations per
(method, task, backbone) and keeps the one with the highest val top-1. "Show Your Work" (Dodge et
al., EMNLP 2019) reports the expected best validation score over n = 1..K trials: the maximum of n
draws with replacement from the K observed trials, whose expectation the order statistics give in
closed form. With the trials sorted by val, v_(1) <= ... <= v_(K), the best of n draws is v_(i) with
probability (i/K)^n - ((i-1)/K)^n, so

    E[max val of n] = sum_i ((i/K)^n - ((i-1)/K)^n) v_(i)

and the test top-1 of the configuration selected at budget n is the same sum over the trials' test
top-1 in the same order (ties in val: the earlier-drawn trial ranks higher, as the selection breaks
them). At n = 1 it is the mean, and as n grows it tends to the single best. Bands: the K trials
resampled with replacement (seeded), the curve recomputed, percentiles; a benchmark's curve is the
mean of its tasks' curves, its band from the tasks resampled together.

The tuning cost of a trial is its record's `fit_time_s` (training start to the final score: every
epoch's training and val evaluation) times the number of devices that ran it (`distributed.world_size`):
device-seconds, GPU-seconds where it ran on a GPU, else CPU process-seconds (wall time of the process
on its cores). Data set-up and the deployed-model timing are not tuning and are left out. Images are
the training images the trial processed (`train_images_per_s` x `train_time_s`). Every trial a search
holds counts, completed or not (a failed or stopped trial's seconds were spent too, where its
record holds them). A trial the pruner stopped (bench/prune.py) ranks below every trial that
trained to the end: the selection picks it only when all n draws were stopped.

`load_trials` reads the search selections (`selection/**/val.json` with a `search` block) and their
trials' records into one DataFrame; everything else here is a pure function over that frame.
"""
import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from bench.analysis.load import parse_summary

KEYS = ("backbone", "benchmark", "protocol", "label")  # one curve per these (a benchmark's tasks averaged)
LEVEL = 0.95


def expected_max_weights(k: int, n: int | np.ndarray) -> np.ndarray:
    """P(the best of n draws with replacement from k sorted trials is the i-th), i = 1..k: shape (len(n), k)."""
    n = np.atleast_1d(np.asarray(n, dtype=float))[:, None]
    i = np.arange(1, k + 1, dtype=float)[None, :]
    return (i / k) ** n - ((i - 1) / k) ** n


def _order(val: np.ndarray, eligible: np.ndarray | None = None) -> np.ndarray:
    """Indices sorting trials (last axis, in draw order) by val ascending; ties: the earlier-drawn trial last;
    trials not `eligible` (pruned) below every eligible one."""
    draw = np.broadcast_to(np.arange(val.shape[-1]), val.shape)
    keys = (-draw, val) if eligible is None else (-draw, val, np.broadcast_to(eligible, val.shape))
    return np.lexsort(keys, axis=-1)


def expected_best(val, test=None, n=None, eligible=None) -> tuple[np.ndarray, np.ndarray | None]:
    """(E[max val of n draws], E[test of the selected trial]) for n = 1..K (or `n`); the trials in draw order.

    `val` (and `test`) may carry leading axes (bootstrap replicates): the last axis is the trials.
    `eligible` (bool, same shape): False for trials a pruner stopped, which are selected, and give the
    val, only when all n draws are such.
    """
    val = np.asarray(val, dtype=float)
    k = val.shape[-1]
    n = np.arange(1, k + 1) if n is None else np.asarray(n)
    w = expected_max_weights(k, n)  # (len(n), k)
    idx = _order(val, eligible)
    ev = np.take_along_axis(val, idx, -1) @ w.T
    et = None if test is None else np.take_along_axis(np.asarray(test, dtype=float), idx, -1) @ w.T
    return ev, et


def budget_curves(trials: pd.DataFrame, resamples: int = 1000, seed: int = 0, level: float = LEVEL) -> pd.DataFrame:
    """Per (backbone, benchmark, protocol, method label) and n = 1..K: the expected best val top-1 and the
    expected test top-1 of the selection, mean over the benchmark's tasks, with bootstrap bands.

    `trials`: one row per trial (`load_trials`), columns KEYS + dataset, trial (draw index), val_top1,
    test_top1. Only completed trials enter; a curve stops at the smallest number of completed trials among
    its tasks.
    """
    cols = [*KEYS, "n", "tasks", "trials", "val_best", "val_lo", "val_hi", "test_selected", "test_lo", "test_hi"]
    done = trials[(trials["status"] == "completed") & trials["val_top1"].notna()]
    done = done.assign(eligible=~done["pruned"].fillna(False).astype(bool))
    # a trial run with several seeds: its mean over them (the selection's rule)
    done = done.groupby([*KEYS, "dataset", "trial"], as_index=False).agg(
        val_top1=("val_top1", "mean"), test_top1=("test_top1", "mean"), eligible=("eligible", "all"))
    rows = []
    rng = np.random.default_rng(seed)
    alpha = (1 - level) / 2
    for key, group in done.groupby(list(KEYS), sort=True):
        tasks = [g.sort_values("trial") for _, g in group.groupby("dataset", sort=True)]
        k = min(len(t) for t in tasks)
        if k == 0:
            continue
        val = np.stack([t["val_top1"].to_numpy(float)[:k] for t in tasks])  # (tasks, k)
        test = np.stack([t["test_top1"].to_numpy(float)[:k] for t in tasks])
        ok = np.stack([t["eligible"].to_numpy(bool)[:k] for t in tasks])
        ev, et = expected_best(val, test, eligible=ok)  # (tasks, k)
        pick = rng.integers(0, k, size=(resamples, len(tasks), k))  # each task's trials resampled
        take = lambda a: np.take_along_axis(a[None], pick, -1)
        bv, bt = expected_best(take(val), take(test), eligible=take(ok))
        bv, bt = bv.mean(1), bt.mean(1)  # (resamples, k): the benchmark mean of each replicate
        for j in range(k):
            rows.append([*key, j + 1, len(tasks), k, ev[:, j].mean(), *np.quantile(bv[:, j], [alpha, 1 - alpha]),
                         et[:, j].mean(), *np.quantile(bt[:, j], [alpha, 1 - alpha])])
    return pd.DataFrame(rows, columns=cols)


def at_budget(curves: pd.DataFrame, n: int) -> pd.DataFrame:
    """The leaderboard at equal budget n: each method's row of `curves` at n (methods searched with fewer
    trials than n have no row: they were not given that budget), best expected test first."""
    rows = curves[curves["n"] == n]
    return rows.sort_values([*KEYS[:3], "test_selected"], ascending=[True, True, True, False]).reset_index(drop=True)


def tuning_cost(trials: pd.DataFrame) -> pd.DataFrame:
    """Per (backbone, benchmark, protocol, method label, dataset): trials, completed, device-seconds, images;
    plus a row per method (dataset "all") with the sums over its tasks."""
    keys = [*KEYS, "dataset"]
    g = trials.groupby(keys, sort=True)
    per_task = pd.DataFrame({"trials": g.size(), "completed": g["status"].apply(lambda s: int((s == "completed").sum())),
                             "pruned": g["pruned"].apply(lambda s: int(s.fillna(False).astype(bool).sum())),
                             "device_s": g["device_s"].sum(min_count=1), "images": g["images"].sum(min_count=1),
                             "device": g["device"].agg(lambda s: "/".join(sorted(set(s.dropna())))) }).reset_index()
    total = per_task.groupby(list(KEYS), sort=True).agg(
        trials=("trials", "sum"), completed=("completed", "sum"), pruned=("pruned", "sum"), device_s=("device_s", lambda s: s.sum(min_count=1)),
        images=("images", lambda s: s.sum(min_count=1)),
        device=("device", lambda s: "/".join(sorted({d for x in s for d in x.split("/") if d})))).reset_index()
    total["dataset"] = "all"
    return pd.concat([per_task, total[per_task.columns]], ignore_index=True).sort_values(keys).reset_index(drop=True)


def _seconds(x: float) -> str:
    if x != x:
        return "—"
    return f"{x:.0f} s" if x < 600 else f"{x / 3600:.2f} h"


def budget_rows(curves: pd.DataFrame, cost: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the budget table: per method and n, expected best val and selected test with bands,
    and the method's whole tuning cost beside."""
    total = cost[cost["dataset"] == "all"].set_index(list(KEYS))
    header = ["backbone", "benchmark", "protocol", "method", "tasks", "n trials", "E[best val] %", "band",
              "E[test of selected] %", "band", "tuning device-s (all K, all tasks)", "train images"]
    rows = []
    for r in curves.to_dict("records"):
        key = tuple(r[k] for k in KEYS)
        c = total.loc[key] if key in total.index else None
        rows.append([*key[:3], key[3], str(r["tasks"]), f"{r['n']}/{r['trials']}", f"{r['val_best']:.2f}",
                     f"{r['val_lo']:.2f}–{r['val_hi']:.2f}", f"{r['test_selected']:.2f}",
                     f"{r['test_lo']:.2f}–{r['test_hi']:.2f}",
                     "—" if c is None else f"{_seconds(c['device_s'])} {c['device']}".strip(),
                     "—" if c is None or c["images"] != c["images"] else f"{int(c['images']):,}"])
    return header, rows


def cost_rows(cost: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    header = ["backbone", "benchmark", "protocol", "method", "dataset", "trials", "completed", "pruned", "device-s",
              "device", "train images"]
    return header, [[*(str(r[k]) for k in (*KEYS, "dataset")), str(r["trials"]), str(r["completed"]), str(r["pruned"]),
                     "—" if r["device_s"] != r["device_s"] else f"{r['device_s']:.1f}", r["device"] or "—",
                     "—" if r["images"] != r["images"] else f"{int(r['images']):,}"] for r in cost.to_dict("records")]


def _device(rec: dict) -> str:
    hw = rec.get("hardware") or {}
    return "GPU" if hw.get("device") == "cuda" else "CPU" if hw.get("device") else ""


def trial_row(rec: dict) -> dict:
    """A trial's scores and cost from its record (see the module docstring for the cost's definition)."""
    world = (rec.get("distributed") or {}).get("world_size") or 1
    fit, rate, train = (rec.get(k) for k in ("fit_time_s", "train_images_per_s", "train_time_s"))
    return {"status": rec.get("status"), "val_top1": rec.get("val_top1", math.nan),
            "test_top1": rec.get("test_top1", math.nan), "pruned": bool(rec.get("pruned")), "device_s": fit * world if fit is not None else math.nan,
            "images": round(rate * train) if rate is not None and train is not None else math.nan,
            "device": _device(rec), "benchmark": rec.get("benchmark"), "protocol": rec.get("protocol")}


def _record_path(path: str, results_dir: Path) -> Path:
    """A selection's record path, or the same run under `results_dir` when the results moved."""
    p = Path(path)
    if p.is_file() or "runs" not in p.parts:
        return p
    parts = p.parts
    return results_dir.joinpath(*parts[len(parts) - parts[::-1].index("runs") - 1:])


def load_trials(results_dir: str | Path) -> pd.DataFrame:
    """Every search trial under `results_dir`: one row per (selection, trial) with its scores and cost.

    Reads `selection/<backbone>/<dataset>/<method label>/val.json` files holding a `search` block; a trial
    whose record is gone is a row with status "missing".
    """
    results_dir = Path(results_dir)
    rows = []
    for d, _, files in os.walk(results_dir / "selection"):
        if "val.json" not in files:
            continue
        try:
            sel = json.loads(Path(d, "val.json").read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(sel, dict) or "search" not in sel:
            continue
        for i, point in enumerate(sel["grid"]):
            for path in point["records"]:
                try:
                    rec = parse_summary(_record_path(path, results_dir).read_bytes())
                    row = trial_row(rec)
                except (OSError, ValueError):
                    row = {"status": "missing"}
                rows.append({"backbone": sel["backbone"], "dataset": sel["dataset"],
                             "label": f"{sel['method']}-{sel['variant']}" if sel["variant"] else sel["method"],
                             "trial": i, **row})
    cols = ["backbone", "benchmark", "protocol", "dataset", "label", "trial", "status", "pruned", "val_top1", "test_top1",
            "device_s", "images", "device"]
    df = pd.DataFrame(rows, columns=cols)
    df["benchmark"] = df["benchmark"].fillna(df["dataset"].str.split("/").str[0])
    df["protocol"] = df["protocol"].fillna("val")
    return df
