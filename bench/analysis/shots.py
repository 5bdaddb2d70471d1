"""Few-shot, domain-generalisation and many-shot tables: pure functions over the records' DataFrame.

Runs of one method that differ only in which training images they saw (NOAH's list: shots and
list seed; a many-shot subset: its size and seed) are one row: their variant's `shots<k>`,
`fewshot_seed<s>`, `train_subset<n>` and `subset_seed<s>` parts are taken out of the label, and
the records' own `shots`, `fewshot_seed` and `train_subset` fields say where each run belongs.
Means and standard deviations are over list seeds (few-shot), run seeds, or subset seeds.
"""
import math
import re

import pandas as pd

from bench.analysis.tables import fmt_cell, fmt_value, row_order, with_labels

# a variant joins `<key><value>` parts with "_", and these keys hold "_" themselves: matched whole, between "_"s
DATA_PARTS = re.compile(r"(?:^|_)(?:fewshot_seed|train_subset|subset_seed|shots)\d+(?=_|$)")
DOMAIN = ("imagenet_v2", "imagenet_sketch", "imagenet_a", "imagenet_r")  # NOAH's four targets, in its order
DOMAIN_1000 = ("imagenet_a", "imagenet_r")  # also scored over all 1,000 classes, as NOAH scores them


def row_label(label: str) -> str:
    """`lora-shots2_fewshot_seed1` -> `lora`; other variant parts stay (`lora-r8_shots2` -> `lora-r8`)."""
    method, sep, variant = label.partition("-")
    kept = DATA_PARTS.sub("", variant).strip("_") if sep else ""
    return f"{method}-{kept}" if kept else method


def _done(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    if df.empty or metric not in df or "status" not in df:
        return df.iloc[0:0]
    d = with_labels(df[df["status"] == "completed"])
    return d.assign(row=d["label"].map(row_label), value=pd.to_numeric(d[metric], errors="coerce")).dropna(
        subset=["value"])


def _stats(d: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    g = d.groupby(keys)["value"]
    out = pd.concat({"mean": g.mean(), "std": g.std(ddof=1), "runs": g.size()}, axis=1).reset_index()
    return out


def fewshot_long(df: pd.DataFrame, metric: str = "test_top1") -> pd.DataFrame:
    """(backbone, row, dataset, shots) -> mean, std, runs over list seeds (and run seeds): few-shot records only."""
    cols = ["backbone", "row", "dataset", "shots", "mean", "std", "runs"]
    if "shots" not in df:
        return pd.DataFrame(columns=cols)
    few = pd.to_numeric(df["shots"], errors="coerce") > 0
    if "benchmark" in df:  # the domain-generalisation source (16-shot ImageNet) has its own table
        few &= df["benchmark"] == "fewshot"
    d = _done(df[few], metric)
    if d.empty:
        return pd.DataFrame(columns=cols)
    d = d.assign(shots=pd.to_numeric(d["shots"]).astype(int))
    return _stats(d, ["backbone", "row", "dataset", "shots"])[cols]


def fewshot_rows(long: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Header and rows: one row per backbone and method, one column per dataset and shot count."""
    cols = sorted({(d, int(k)) for d, k in zip(long["dataset"], long["shots"])})
    header = ["backbone", "method"] + [f"{d.split('/', 1)[-1]} {k}-shot" for d, k in cols]
    cells = {(b, r, d, int(k)): (m, s, n) for b, r, d, k, m, s, n in long.itertuples(index=False)}
    rows = []
    for b, r in row_order(zip(long["backbone"], long["row"])):
        row = [b, r]
        for d, k in cols:
            m, s, n = cells.get((b, r, d, k), (math.nan, math.nan, 0))
            row.append(fmt_cell(m, s, n) if n else "—")
        rows.append(row)
    return header, rows


def domain_long(df: pd.DataFrame, metric: str = "test_top1") -> pd.DataFrame:
    """(backbone, row) -> source score, each target's top-1 and their mean, means over runs; records with targets only."""
    cols = ["backbone", "row", "runs", "source", *DOMAIN, "targets_mean", *(f"{t}_1000way" for t in DOMAIN_1000)]
    if "robustness" not in df:
        return pd.DataFrame(columns=cols)
    # the few records with domain targets first (ImageNet's robustness records have A and R, not V2 or Sketch)
    d = _done(df[[isinstance(r, dict) and any(f"{t}_top1" in r for t in DOMAIN[:2]) for r in df["robustness"]]], metric)
    if d.empty:
        return pd.DataFrame(columns=cols)
    vals = {t: [r.get(f"{t}_top1", math.nan) for r in d["robustness"]] for t in DOMAIN}
    vals |= {f"{t}_1000way": [r.get(f"{t}_top1_1000way", math.nan) for r in d["robustness"]] for t in DOMAIN_1000}
    d = d.assign(source=d["value"], **{k: pd.to_numeric(pd.Series(v, index=d.index)) for k, v in vals.items()})
    d = d.assign(targets_mean=d[list(DOMAIN)].mean(axis=1, skipna=False))
    g = d.groupby(["backbone", "row"])
    out = g[["source", *DOMAIN, "targets_mean", *(f"{t}_1000way" for t in DOMAIN_1000)]].mean()
    return out.assign(runs=g.size()).reset_index()[cols]


def domain_records(df: pd.DataFrame, metric: str = "test_top1") -> pd.DataFrame:
    """The domain-generalisation runs reshaped for `leaderboard(..., metric="value", mean=False)` and the
    statistics: one pseudo-dataset `source` (the run's `metric`) and one per DOMAIN target, `label` the table's
    row, `seed` one per run (list seed and run seed: each is its own training draw), and `predictions_target`
    naming the predictions.npz arrays that reproduce each value ("" the test split; None where none does)."""
    d = _done(df[[isinstance(r, dict) and any(f"{t}_top1" in r for t in DOMAIN[:2]) for r in df["robustness"]]]
              if "robustness" in df else df.iloc[0:0], metric)
    if d.empty:
        return d
    list_seed = d["fewshot_seed"] if "fewshot_seed" in d else pd.Series("", index=d.index)
    d = d.assign(label=d["row"], seed=[f"{a}/{b}" for a, b in zip(list_seed.fillna(""), d["seed"])])
    parts = [d.assign(dataset="source", predictions_target="" if metric == "test_top1" else None,
                      predictions_reason=None if metric == "test_top1" else f"predictions score test_top1, not {metric}")]
    for t in DOMAIN:
        values = [r.get(f"{t}_top1", math.nan) for r in d["robustness"]]
        parts.append(d.assign(dataset=t, value=pd.to_numeric(pd.Series(values, index=d.index), errors="coerce"),
                              predictions_target=t, predictions_reason=None))
    return pd.concat(parts, ignore_index=True)


def domain_rows(long: pd.DataFrame, intervals: dict | None = None, signs: dict | None = None
                ) -> tuple[list[str], list[list[str]]]:
    """Header and rows; with `intervals` ((backbone, row, source or target) -> (low, high)) and `signs` (▲/▼ against
    the baseline, as `tables.table_rows`) the source and target cells read `mean [low, high]`."""
    from bench.analysis.tables import fmt_interval

    intervals, signs = intervals or {}, signs or {}
    header = ["backbone", "method", "runs", "ImageNet (source)", "-V2", "-Sketch", "-A", "-R", "mean of targets",
              "-A, 1000-way", "-R, 1000-way"]
    columns = ["source", *DOMAIN]
    rows = []
    for rec in long.itertuples(index=False):
        key = (rec.backbone, rec.row)
        cells = [fmt_interval(fmt_value(v), intervals.get((*key, c)), signs.get((*key, c), ""))
                 for c, v in zip(columns, rec[3:3 + len(columns)])]
        rows.append([rec.backbone, rec.row, str(rec.runs), *cells] + [fmt_value(v) for v in rec[3 + len(columns):]])
    return header, rows


def manyshot_long(df: pd.DataFrame, metric: str = "test_top1") -> pd.DataFrame:
    """(backbone, row, dataset, train images) -> mean, std, runs; `full` (train_images NaN) for the whole split.

    Only datasets with at least one subset run; their whole-split runs are the curve's last point."""
    cols = ["backbone", "row", "dataset", "train_images", "mean", "std", "runs"]
    if "train_subset" not in df:
        return pd.DataFrame(columns=cols)
    d = _done(df, metric)
    if "shots" in d:
        d = d[~(pd.to_numeric(d["shots"], errors="coerce") > 0)]
    subset = pd.to_numeric(d["train_subset"], errors="coerce")
    with_sub = set(d.loc[subset > 0, "dataset"])
    d = d[d["dataset"].isin(with_sub)].assign(train_images=subset.where(subset > 0, -1).astype("int64"))
    if d.empty:
        return pd.DataFrame(columns=cols)
    out = _stats(d, ["backbone", "row", "dataset", "train_images"])
    return out.assign(train_images=out["train_images"].where(out["train_images"] > 0))[cols]


def manyshot_rows(long: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    sizes = sorted({int(x) for x in long["train_images"].dropna()})
    header = ["backbone", "method", "dataset"] + [f"{n:,}" for n in sizes] + ["full"]
    cells = {(b, r, d, -1 if math.isnan(x) else int(x)): (m, s, n) for b, r, d, x, m, s, n in long.itertuples(index=False)}
    rows = []
    for b, r, d in sorted({(b, r, d) for b, r, d in zip(long["backbone"], long["row"], long["dataset"])}):
        row = [b, r, d]
        for n in [*sizes, -1]:
            m, s, k = cells.get((b, r, d, n), (math.nan, math.nan, 0))
            row.append(fmt_cell(m, s, k) if k else "—")
        rows.append(row)
    return header, rows
