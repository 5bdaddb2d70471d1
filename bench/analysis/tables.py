"""Tables as pure functions over the records DataFrame (torch-free).

Rows are methods (method-variant labels), per backbone; columns are a benchmark's tasks, their
group means and averages, and the tunable-parameter counts. A cell is the mean test top-1 over
seeds (each seed counted once). A row that lacks a task gets no mean: it is marked "17/19" in
`tasks` instead of being averaged over what exists, and a group mean needs the whole group.
Failed and unsupported runs stay visible in the rendered tables ("failed", "n/a").

Two VTAB-1k averages exist in the literature and differ by 2-5 points for the same cells: the
SSF paper's `mean` (plain mean of the 19 tasks) and the NOAH/Convpass/DyT `mean_of_groups`
(mean of the Natural, Specialized and Structured means). Both are computed; `average` picks
which the rendered tables show.
"""
import math

import pandas as pd

from bench.analysis.benchmarks import short_name
from bench.analysis.load import config_hashes

# Canonical row order: the SSF paper's tables' order, the newer methods placed by family; others follow, sorted.
METHOD_ORDER = ("full", "linear", "partial", "ln", "bias", "difffit", "adapter", "adapter_houlsby", "adapter_plus",
                "adaptformer", "convpass", "repadapter", "vpt_shallow", "vpt", "vqt", "lora", "fact_tt", "fact_tk", "ssf")
AVERAGES = ("both", "tasks", "groups")
ROW_NAMES = ["backbone", "method"]
INFO_COLUMNS = ("mean", "mean_of_groups", "tasks", "seeds", "tunable_params", "tunable_params_no_head")
PER_RUN_MEMORY = ("cuda_max_allocated", "run_peak_rss")  # peak_memory_kind values that are one run's own
ROBUSTNESS = ("imagenet_a_top1", "imagenet_r_top1", "imagenet_c_mce")  # keys of a record's `robustness`


def with_labels(df: pd.DataFrame) -> pd.DataFrame:
    """Add `label` (method-variant, as `bench.records.method_label`), unless it is already there.

    Runs of a non-default recipe carry its name in their variant (`adapter-noah`, launch.py), so
    recipes get rows of their own. Should one label still hold runs of several recipes (records
    from renamed or hand-made variants), each gets `[recipe]` appended: never averaged together.
    Nor are one task's runs on several data versions (`[data <version>]`) or with several
    configurations (`[config <hash>]`: bench.config.config_hash, a recipe edited between runs).
    """
    if "label" in df:
        return df
    method = df["method"].astype(str)
    if "variant" not in df:
        label = method
    else:
        variant = df["variant"].fillna("").astype(str)
        label = method.where(variant == "", method + "-" + variant)
    if "recipe" in df and len(df):
        recipe = df["recipe"].fillna("").astype(str)
        mixed = recipe.groupby([df["backbone"], label]).transform("nunique") > 1
        label = label.where(~mixed, label + "[" + recipe.where(recipe != "", "?") + "]")
    version = data_versions(df)
    if version.notna().any():
        # one task's runs on different data (bench/data/version.py: other images, labels or bytes) are never
        # pooled: each data version gets its own row, `[data <version>]`, as recipes do
        keys = [df["backbone"], label, df["dataset"], *([df["protocol"]] if "protocol" in df else [])]
        mixed = version.groupby(keys, dropna=False).transform("nunique") > 1
        short = version.fillna("?").astype(str).str.split(":").str[-1].str[:8]
        label = label.where(~mixed, label + "[data " + short + "]")
    config = config_hashes(df)
    if config.notna().any():  # nor runs of one task with other settings (bench.config.config_key): `[config <hash>]`
        keys = [df["backbone"], label, df["dataset"], *([df["protocol"]] if "protocol" in df else [])]
        mixed = config.groupby(keys, dropna=False).transform("nunique") > 1
        label = label.where(~mixed, label + "[config " + config.fillna("?").astype(str).str[:8] + "]")
    return df.assign(label=label, data_version=version, config_hash=config)


def data_version(data) -> str | None:
    """The data version a record's `data` names (bench/data/version.py); None where the record predates versions
    (such runs are pooled as before: nothing says their data differ)."""
    return str(data["version"]) if isinstance(data, dict) and data.get("version") else None


def data_versions(df: pd.DataFrame) -> pd.Series:
    """Each record's data version (`data_version` if the frame has it, else from its `data`), None where unknown."""
    if "data_version" in df:
        return df["data_version"].where(df["data_version"].notna(), None)
    data = df["data"] if "data" in df else pd.Series(None, index=df.index, dtype=object)
    return pd.Series([data_version(d) for d in data], index=df.index, dtype=object)


def base_method(label: str) -> str:
    """`ssf-lr0.01` -> `ssf`: the registry name (method names never contain '-')."""
    return label.split("-", 1)[0]


def _row_key(label: str) -> tuple:
    base = base_method(label)
    return (METHOD_ORDER.index(base) if base in METHOD_ORDER else len(METHOD_ORDER), label)


def row_order(rows) -> list[tuple[str, str]]:
    """(backbone, label) pairs sorted by backbone, then the papers' method order."""
    return sorted(set(rows), key=lambda r: (r[0], _row_key(r[1])))


def _completed(df: pd.DataFrame, column: str) -> pd.DataFrame:
    if column not in df:
        return df.iloc[:0].assign(**{column: math.nan})
    values = pd.to_numeric(df[column], errors="coerce")
    return df.assign(**{column: values})[(df["status"] == "completed") & values.notna()]


def cell_stats(df: pd.DataFrame, metric: str = "test_top1") -> pd.DataFrame:
    """Per (backbone, method, dataset) with a value: `mean`, `std` over seeds (NaN for one seed), `seeds`.

    A seed counts once: records that repeat a run identity (the same run in two sweep folders)
    are averaged first, so duplicates neither shrink the std nor inflate the seed count.
    """
    done = _completed(with_labels(df), metric)
    per_seed = done.groupby(["backbone", "label", "dataset", "seed"])[metric].mean()
    g = per_seed.groupby(level=[0, 1, 2])
    stats = pd.DataFrame({"mean": g.mean(), "std": g.std(), "seeds": g.size()})
    return stats.rename_axis(["backbone", "method", "dataset"])


def leaderboard(df: pd.DataFrame, tasks: list[str] | None = None, groups: dict[str, list[str]] | None = None,
                metric: str = "test_top1", mean: bool = True, stats: pd.DataFrame | None = None) -> pd.DataFrame:
    """One table of one protocol: mean `metric` per (backbone, label) x dataset, with averages.

    Args:
        df: records (any statuses) of one protocol.
        tasks: dataset names in column order; default: every dataset present, sorted.
        groups: group name -> its datasets (VTAB's natural/specialized/structured); adds one
            column per group and `mean_of_groups`.
        metric: the record field tabulated (`test_top1`, `test_top1_best_epoch_optimistic`, ...).
        mean: False where averaging the columns means nothing (CIFAR-100 next to ImageNet).
        stats: `cell_stats(df, metric)` if the caller already has it.
    Returns:
        DataFrame indexed by (backbone, method) with one column per task, one per group, `mean`
        (plain mean over tasks), `mean_of_groups`, `tasks` ("done/total"), `seeds` (min seeds over
        the row's cells), `tunable_params`, `tunable_params_no_head` (means over the row's
        completed runs). `attrs` holds `tasks`, `groups` and `metric` for the renderers.
    """
    df = with_labels(df)
    tasks = list(tasks or sorted(df["dataset"].unique()))
    groups = dict(groups or {})
    stats = cell_stats(df, metric) if stats is None else stats
    stats = stats[stats.index.get_level_values("dataset").isin(tasks)]
    pairs = df[["backbone", "label"]].drop_duplicates().itertuples(index=False, name=None)
    index = pd.MultiIndex.from_tuples(row_order(pairs), names=ROW_NAMES)
    if stats.empty:
        table = pd.DataFrame(math.nan, index=index, columns=tasks)
    else:
        table = stats["mean"].unstack("dataset").reindex(index=index, columns=tasks)
    present = table[tasks].notna()
    for name, members in groups.items():
        table[name] = table[members].mean(axis=1).where(present[members].all(axis=1))
    if mean:
        table["mean"] = table[tasks].mean(axis=1).where(present.all(axis=1))
        if groups:
            table["mean_of_groups"] = table[list(groups)].mean(axis=1).where(table[list(groups)].notna().all(axis=1))
    table["tasks"] = [f"{n}/{len(tasks)}" for n in present.sum(axis=1)]
    seeds = stats["seeds"].groupby(level=[0, 1]).min()
    table["seeds"] = [int(seeds.get(r, 0)) for r in index]
    done = df[(df["status"] == "completed") & df["dataset"].isin(tasks)]
    for col in ("tunable_params", "tunable_params_no_head"):
        values = (pd.to_numeric(done[col], errors="coerce").groupby([done["backbone"], done["label"]]).mean()
                  if col in done else pd.Series(dtype=float))
        table[col] = [values.get(r, math.nan) for r in index]
    table.attrs = {"tasks": tasks, "groups": list(groups), "metric": metric}
    return table


def status_cells(df: pd.DataFrame) -> dict[tuple[str, str, str], str]:
    """(backbone, label, dataset) -> 'failed' / 'n/a' for cells with no completed run."""
    df = with_labels(df)
    keys = [df["backbone"], df["label"], df["dataset"]]
    flags = pd.DataFrame({"done": df["status"] == "completed", "unsupported": df["status"] == "unsupported"})
    cells = flags.groupby(keys).any()
    cells = cells[~cells["done"]]
    return {k: "n/a" if u else "failed" for k, u in zip(cells.index, cells["unsupported"])}


# robustness column -> the predictions.npz target whose per-image outcomes give its value (bench/predictions.py)
ROBUSTNESS_TARGETS = {"imagenet_a_top1": "imagenet_a", "imagenet_r_top1": "imagenet_r"}
MCE_NO_INTERVAL = "mCE: no interval (a ratio of errors over 75 corruption sets of the same images)"


def robustness_records(df: pd.DataFrame, metric: str = "test_top1") -> pd.DataFrame:
    """ImageNet records reshaped for `leaderboard(..., metric="value", mean=False)`.

    One pseudo-dataset per robustness metric (ImageNet-A / -R top-1, ImageNet-C mCE, lower is
    better) next to `imagenet/imagenet`, the value in `value`; a record without the optional
    `robustness` field gives NaN there (shown "—"), never a guess. `predictions_target` names the
    predictions.npz entries that reproduce each value ("" the test split), for intervals and paired
    comparisons (bench/analysis/stats.py); None where none does, `predictions_reason` says why.
    """
    im = df[df["benchmark"] == "imagenet"]
    if metric not in im:
        im = im.assign(**{metric: math.nan})
    rob = im["robustness"] if "robustness" in im else pd.Series(None, index=im.index, dtype=object)
    same = metric == "test_top1"  # the test split's arrays reproduce test_top1 only
    parts = [im.assign(value=pd.to_numeric(im[metric], errors="coerce"), predictions_target="" if same else None,
                       predictions_reason=None if same else f"predictions score test_top1, not {metric}")]
    for key in ROBUSTNESS:
        values = [r.get(key, math.nan) if isinstance(r, dict) else math.nan for r in rob]
        parts.append(im.assign(dataset=key, value=pd.to_numeric(pd.Series(values, index=im.index), errors="coerce"),
                               predictions_target=ROBUSTNESS_TARGETS.get(key),
                               predictions_reason=None if key in ROBUSTNESS_TARGETS else MCE_NO_INTERVAL))
    return pd.concat(parts, ignore_index=True)


def _joined(df: pd.DataFrame, keys: list[str], values, index: pd.Index) -> pd.Series:
    """The distinct non-missing `values` of each `keys` group, sorted and joined by '/' ("" if none)."""
    v = df[keys].assign(value=values).dropna(subset=["value"]).drop_duplicates().sort_values("value")
    return v.groupby(keys)["value"].agg("/".join).reindex(index).fillna("")


def cost_table(df: pd.DataFrame, by: tuple[str, ...] = ("benchmark", "protocol", "backbone")) -> pd.DataFrame:
    """Per benchmark x protocol x backbone x method (or `by` x method), from completed runs: what the method costs.

    Parameters are means over the runs (head sizes differ by dataset); throughput, memory and
    the inference ratio are medians (robust to a slow node). `inference_extra_params` and
    `inference_images_per_s_ratio` (deployed model vs untouched backbone) are optional record
    fields: NaN when no run recorded them. `peak_memory_kind` says what the memory number is
    (CUDA allocator peak, or the run's own peak RSS on CPU); a process-wide RSS peak, which in a
    multirun covers the earlier runs too, is not a per-run cost and is left out (NaN);
    `merged` whether the deployed model was merged into the backbone (optional field
    `deployed_merged`); `hardware` where the runs ran (GPU name, else device type): throughput means nothing without it.
    `by=("protocol", "backbone")` pools the benchmarks: a backbone fixes the input size, so its
    throughput and memory hardly depend on the dataset.
    """
    mean_cols = ("tunable_params", "tunable_params_no_head", "inference_extra_params")
    median_cols = ("train_images_per_s", "peak_memory_mb", "inference_images_per_s_ratio")
    df = with_labels(df)
    df = df.assign(**{c: pd.to_numeric(df[c], errors="coerce") if c in df else math.nan
                      for c in (*mean_cols, *median_cols)})
    # memory only where it is the run's own: a process-wide peak (older CPU records) is the peak of
    # every run before it in the same process, not a cost of this method
    kind = df["peak_memory_kind"] if "peak_memory_kind" in df else pd.Series(None, index=df.index, dtype=object)
    per_run = kind.isin(PER_RUN_MEMORY)
    df = df.assign(peak_memory_mb=df["peak_memory_mb"].where(per_run), peak_memory_kind=kind.where(per_run))
    done = df[df["status"] == "completed"]
    keys = [*by, "label"]
    g = done.groupby(keys)
    out = pd.DataFrame({"runs": g.size()})
    for c in mean_cols:
        out[c] = g[c].mean()
    for c in median_cols:
        out[c] = g[c].median()
    out["peak_memory_kind"] = _joined(done, keys, done["peak_memory_kind"] if "peak_memory_kind" in done else None,
                                      out.index)
    merged = done["deployed_merged"] if "deployed_merged" in done else [None] * len(done)
    out["merged"] = _joined(done, keys, [None if m is None or m != m else "yes" if m else "no" for m in merged],
                            out.index)
    hardware = done["hardware"] if "hardware" in done else [None] * len(done)
    out["hardware"] = _joined(done, keys, [h.get("gpu") or h.get("device") if isinstance(h, dict) else None
                                           for h in hardware], out.index)
    out = out.rename_axis([*by, "method"])
    order = sorted(out.index, key=lambda r: (*r[:-1], _row_key(r[-1])))
    return out.reindex(pd.MultiIndex.from_tuples(order, names=out.index.names) if order else out.index)


# --- rendering -------------------------------------------------------------------------------

def fmt_params(n: float) -> str:
    if n != n:  # NaN
        return "—"
    if n == 0:
        return "0"
    return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n / 1e3:.1f}K"


_fmt_params = fmt_params  # old name


def fmt_value(v: float, digits: int = 1) -> str:
    return "—" if v != v else f"{v:.{digits}f}"


def fmt_cell(mean: float, std: float = math.nan, seeds: int | None = None) -> str:
    """`55.0 ± 7.1 (2)`: mean ± std over seeds and the number of seeds; `70.0 (1)` for one seed."""
    if seeds is None:
        return fmt_value(mean)
    spread = f" ± {std:.1f}" if std == std else ""
    return f"{mean:.1f}{spread} ({seeds})"


def layout(table: pd.DataFrame) -> tuple[list[str], list[str]]:
    """(task columns, group columns) of a leaderboard, from its attrs or, failing that, by elimination."""
    if "tasks" in table.attrs:
        return list(table.attrs["tasks"]), list(table.attrs.get("groups", []))
    return [c for c in table.columns if c not in INFO_COLUMNS], []


def mean_columns(table: pd.DataFrame, average: str = "both") -> list[str]:
    """The average columns to show: `mean` (over tasks), `mean_of_groups`, or both where they exist."""
    have = [c for c in ("mean", "mean_of_groups") if c in table.columns]
    want = {"both": have, "tasks": ["mean"], "groups": ["mean_of_groups"]}[average]
    return [c for c in want if c in have] or have[:1]


def mean_header(table: pd.DataFrame, column: str) -> str:
    tasks, groups = layout(table)
    if column == "mean_of_groups":
        return f"mean of {len(groups)} group means"
    return f"mean of {len(tasks)} tasks" if groups else "mean"


def fmt_interval(text: str, bounds: tuple[float, float] | None, mark: str = "") -> str:
    """`73.1 [72.4, 73.8]` (and a ▲/▼ significance mark) where an interval exists; `text` unchanged otherwise."""
    if bounds is None or text == "—":
        return text + mark
    return f"{text} [{bounds[0]:.1f}, {bounds[1]:.1f}]{mark}"


def with_intervals(table: pd.DataFrame, intervals: dict) -> pd.DataFrame:
    """The leaderboard for CSV: `<column>_ci_low` and `<column>_ci_high` beside each value column."""
    tasks, groups = layout(table)
    out = table.copy()
    cols = list(table.columns)
    for c in [*tasks, *groups, "mean", "mean_of_groups"]:
        if c not in table.columns:
            continue
        bounds = [intervals.get((*r, c), (math.nan, math.nan)) for r in table.index]
        out[f"{c}_ci_low"] = [b[0] for b in bounds]
        out[f"{c}_ci_high"] = [b[1] for b in bounds]
        i = cols.index(c) + 1
        cols[i:i] = [f"{c}_ci_low", f"{c}_ci_high"]
    out = out[cols]
    out.attrs = table.attrs
    return out


def table_rows(table: pd.DataFrame, marks: dict | None = None, stats: pd.DataFrame | None = None,
               average: str = "both", intervals: dict | None = None, signs: dict | None = None
               ) -> tuple[list[str], list[list[str]], set[int]]:
    """Header, formatted rows and the bold (headline average) column indices of a leaderboard.

    Shared by the markdown and HTML renderers so both always show the same strings. With
    `stats` (from `cell_stats`), each cell reads `mean ± std (seeds)`; with `intervals`
    ((backbone, method, column) -> (low, high)) a cell that has one reads `mean [low, high] (seeds)`
    instead, and `signs` adds ▲/▼ where a cell is significantly above/below the baseline.
    """
    intervals, signs = intervals or {}, signs or {}
    marks = marks or {}
    tasks, groups = layout(table)
    means = mean_columns(table, average)
    header = ["backbone", "method", *[short_name(t) for t in tasks], *[g.capitalize() for g in groups],
              *[mean_header(table, m) for m in means], "tasks", "seeds", "tunable (w/ head)", "tunable (no head)"]
    bold = set(range(2 + len(tasks) + len(groups), 2 + len(tasks) + len(groups) + len(means)))
    lookup = stats.to_dict("index") if stats is not None and not stats.empty else {}
    rows = []
    for (backbone, label), row in zip(table.index, table.to_dict("records")):
        cells = []
        for t in tasks:
            v = row[t]
            if v != v:
                cells.append(marks.get((backbone, label, t), "—"))
            elif (backbone, label, t) in intervals:
                s = lookup.get((backbone, label, t), {"seeds": 1})
                seeds = f" ({int(s['seeds'])})" if s["seeds"] > 1 else ""
                cells.append(fmt_interval(fmt_value(v), intervals[(backbone, label, t)],
                                          signs.get((backbone, label, t), "")) + seeds)
            elif stats is not None and (backbone, label, t) in lookup:
                s = lookup[(backbone, label, t)]
                cells.append(fmt_cell(s["mean"], s["std"], int(s["seeds"])) + signs.get((backbone, label, t), ""))
            else:
                cells.append(fmt_value(v))
        cells += [fmt_interval(fmt_value(row[c]), intervals.get((backbone, label, c)),
                               signs.get((backbone, label, c), "")) for c in [*groups, *means]]
        rows.append([backbone, label, *cells, row["tasks"], str(row["seeds"]),
                     fmt_params(row["tunable_params"]), fmt_params(row["tunable_params_no_head"])])
    return header, rows, bold


def markdown(header: list[str], rows: list[list[str]], bold: set[int] = frozenset()) -> str:
    """GitHub markdown table from strings; bold columns wrapped in ** unless empty ("—")."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [f"**{c}**" if i in bold and c != "—" else c for i, c in enumerate(r)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def to_markdown(table: pd.DataFrame, marks: dict | None = None, stats: pd.DataFrame | None = None,
                average: str = "both") -> str:
    """GitHub markdown; accuracies with one decimal, params as K/M, missing cells as n/a / failed / —."""
    return markdown(*table_rows(table, marks, stats, average))


def cost_rows(cost: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Header and formatted rows of `cost_table`."""
    header = [*cost.index.names, "runs", "tunable (w/ head)", "tunable (no head)",
              "merged for inference", "extra params at inference", "train img/s", "peak run memory (MB)", "memory kind",
              "inference img/s vs backbone", "hardware"]
    rows = []
    for key, r in zip(cost.index, cost.to_dict("records")):
        ratio = r["inference_images_per_s_ratio"]
        extra = r["inference_extra_params"]
        rows.append([*key, str(r["runs"]), fmt_params(r["tunable_params"]), fmt_params(r["tunable_params_no_head"]),
                     r["merged"] or "—", "0" if extra == 0 else fmt_params(extra), fmt_value(r["train_images_per_s"], 0),
                     fmt_value(r["peak_memory_mb"], 0), r["peak_memory_kind"] or "—",
                     "—" if ratio != ratio else f"{ratio:.2f}×", r["hardware"] or "—"])
    return header, rows


def status_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Runs per benchmark x protocol x backbone x method by status, with one error message each.

    Failed and unsupported runs never reach a cell; this is where they are counted and explained.
    """
    df = with_labels(df)
    keys = ["benchmark", "protocol", "backbone", "label"]
    counts = df.groupby([*keys, "status"]).size().unstack(fill_value=0)
    for s in ("completed", "failed", "unsupported"):
        if s not in counts:
            counts[s] = 0
    bad = df[df["status"] != "completed"]
    errors = bad["error"] if "error" in bad else pd.Series(None, index=bad.index, dtype=object)
    text = [f"{e.get('type', '')}: {e.get('message', '')}"[:200] if isinstance(e, dict) else "" for e in errors]
    first = pd.Series(text, index=bad.index, dtype=object).groupby([bad[k] for k in keys]).first()
    counts["error"] = [first.get(k, "") for k in counts.index]
    counts = counts.rename_axis(["benchmark", "protocol", "backbone", "method"]).rename_axis(None, axis=1)
    order = sorted(counts.index, key=lambda r: (r[0], r[1], r[2], _row_key(r[3])))
    return counts.reindex(order)
