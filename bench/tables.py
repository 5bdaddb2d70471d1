"""Leaderboard tables as pure functions over the records DataFrame (torch-free).

Rows are methods (method-variant labels), per backbone; columns are the benchmark's tasks,
their mean and the tunable-parameter counts. A cell is the mean test top-1 over seeds; a
row that lacks a task gets no mean (it is marked "4/5" in `tasks` instead of being averaged
over what exists). Failed and unsupported runs stay visible in the markdown.
"""
import math

import pandas as pd

from bench.records import method_label

# Canonical row order: the order the SSF paper's tables use; other methods follow, sorted.
METHOD_ORDER = ("full", "linear", "bias", "adapter", "vpt_shallow", "vpt", "lora", "ssf")


def with_labels(df: pd.DataFrame) -> pd.DataFrame:
    variant = df["variant"].fillna("") if "variant" in df else pd.Series("", index=df.index)
    return df.assign(label=[method_label(m, v) for m, v in zip(df["method"], variant)])


def _row_key(label: str) -> tuple:
    base = label.split("-", 1)[0]
    return (METHOD_ORDER.index(base) if base in METHOD_ORDER else len(METHOD_ORDER), label)


def leaderboard(df: pd.DataFrame, tasks: list[str] | None = None) -> pd.DataFrame:
    """One benchmark, one protocol: mean test top-1 per (backbone, label) x dataset.

    Args:
        df: records (any statuses) of one benchmark and protocol.
        tasks: dataset names in column order; default: every dataset present, sorted.
    Returns:
        DataFrame indexed by (backbone, method) with one column per task, `mean`, `tasks`
        ("done/total"), `seeds` (min seeds over the row's cells), `tunable_params`,
        `tunable_params_no_head` (means over the row's tasks).
    """
    df = with_labels(df)
    tasks = tasks or sorted(df["dataset"].unique())
    done = df[df["status"] == "completed"]
    cells = done.pivot_table(index=["backbone", "label"], columns="dataset", values="test_top1", aggfunc="mean")
    cells = cells.reindex(columns=tasks)
    seeds = done.groupby(["backbone", "label", "dataset"])["seed"].nunique().groupby(["backbone", "label"]).min()
    params = done.groupby(["backbone", "label"])[["tunable_params", "tunable_params_no_head"]].mean()
    rows = sorted({(b, lab) for b, lab in zip(df["backbone"], df["label"])}, key=lambda r: (r[0], _row_key(r[1])))
    table = cells.reindex(pd.MultiIndex.from_tuples(rows, names=["backbone", "method"]))
    n_done = table[tasks].notna().sum(axis=1)
    table["mean"] = table[tasks].mean(axis=1).where(n_done == len(tasks))
    table["tasks"] = [f"{n}/{len(tasks)}" for n in n_done]
    table["seeds"] = [seeds.get(r, 0) for r in rows]
    for col in params.columns:
        table[col] = [params[col].get(r, math.nan) for r in rows]
    return table


def status_cells(df: pd.DataFrame) -> dict[tuple[str, str, str], str]:
    """(backbone, label, dataset) -> 'failed' / 'n/a' for cells with no completed run."""
    df = with_labels(df)
    out = {}
    for (b, lab, d), group in df.groupby(["backbone", "label", "dataset"]):
        statuses = set(group["status"])
        if "completed" not in statuses:
            out[(b, lab, d)] = "n/a" if "unsupported" in statuses else "failed"
    return out


def _fmt_params(n: float) -> str:
    if n != n:  # NaN
        return "—"
    return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n / 1e3:.1f}K"


def to_markdown(table: pd.DataFrame, marks: dict | None = None) -> str:
    """GitHub markdown; accuracies with one decimal, params as K/M, missing cells as n/a / failed / —."""
    marks = marks or {}
    tasks = [c for c in table.columns if c not in ("mean", "tasks", "seeds", "tunable_params", "tunable_params_no_head")]
    header = ["backbone", "method", *[t.split("/")[-1] for t in tasks], "mean", "tasks", "seeds",
              "tunable (w/ head)", "tunable (no head)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for (backbone, label), row in table.iterrows():
        cells = []
        for t in tasks:
            v = row[t]
            cells.append(f"{v:.1f}" if v == v else marks.get((backbone, label, t), "—"))
        mean = f"**{row['mean']:.1f}**" if row["mean"] == row["mean"] else "—"
        lines.append("| " + " | ".join([backbone, label, *cells, mean, row["tasks"], str(row["seeds"]),
                                        _fmt_params(row["tunable_params"]),
                                        _fmt_params(row["tunable_params_no_head"])]) + " |")
    return "\n".join(lines)
