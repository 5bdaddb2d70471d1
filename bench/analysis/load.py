"""Load the records' summary fields for analyze.py: fast, torch-free, with declared dtypes.

`load_records` (the one loader: same files, identity check, `(frame, problems)`
result and warnings) with a parser that drops the per-epoch `history`. On a 100-epoch record
the history is about 90 % of the bytes, and parsing it made reading 10,000 records take 2 s on
2 cores, most of the 3 s budget; no table or figure reads it. So the history is cut from the
text before `json.loads` and the rest parsed. If the cut text does not parse, or what was cut
was not the top-level history (a history that is not a flat list of objects, a truncated
file), the whole text is parsed instead, so a truncated or corrupt record is reported as
`load_records` would report it. The one difference: damage confined to the inside of the
history of an otherwise complete file goes unnoticed, since the history is never read.
"""
import json
import warnings
from pathlib import Path

import pandas as pd

from bench.records import IDENTITY, find_records

NUMERIC = ("tunable_params", "tunable_params_no_head", "total_params", "test_top1", "val_top1",
           "test_top1_best_epoch_optimistic", "train_images_per_s", "peak_memory_mb", "wall_time_s",
           "inference_extra_params", "inference_images_per_s_ratio")
TEXT = ("status", "method", "variant", "dataset", "benchmark", "group", "backbone", "backbone_arch", "protocol",
        "peak_memory_kind", "recipe")
_HISTORY = b'"history": ['
_SENTINEL = "<cut by report_load>"  # tells the top-level history from a nested key of that name
_CUT = b'"history": "' + _SENTINEL.encode() + b'"'


def load_records(root: str | Path, parse=json.loads) -> tuple[pd.DataFrame, list[str]]:
    """All records under `root` as one DataFrame (one row per run; nested fields kept as objects).

    Args:
        parse: bytes -> dict; `parse_summary` skips the per-epoch history.
    Returns:
        (frame, problems): `problems` names each file that was skipped (unreadable, not JSON,
        or missing the identity fields) with the reason; the frame holds the rest.
    """
    rows, problems = [], []
    for path in find_records(root):
        try:
            with open(path, "rb") as f:
                rec = parse(f.read())
            missing = [k for k in IDENTITY if k not in rec]
            if missing:
                raise ValueError(f"missing fields {missing}")
        except (OSError, ValueError) as e:
            problems.append(f"{path}: {e}")
            continue
        rec["path"] = path
        rows.append(rec)
    for p in problems:
        warnings.warn(f"skipped record {p}", stacklevel=2)
    return pd.DataFrame(rows), problems


def parse_summary(data: bytes) -> dict:
    """A record's JSON without its top-level `history` list; raises ValueError like json.loads on bad input."""
    i = data.find(_HISTORY)
    if i >= 0:
        j = data.find(b"]", i)
        if j > 0:
            try:
                rec = json.loads(data[:i] + _CUT + data[j + 1:])
                if isinstance(rec, dict) and rec.get("history") == _SENTINEL:
                    del rec["history"]
                    return rec
            except ValueError:
                pass
    rec = json.loads(data)
    if not isinstance(rec, dict):
        raise ValueError("not a JSON object")
    rec.pop("history", None)
    return rec


def load_summaries(root: str | Path) -> tuple[pd.DataFrame, list[str]]:
    """Every record under `root` (without history) as one DataFrame with declared dtypes.

    Returns:
        (frame, problems): `problems` names each skipped file (unreadable, not JSON, missing
        identity fields) with the reason. Numeric fields are float64 (NaN when absent), text
        fields strings, `variant` "" when absent; `benchmark` falls back to the dataset's prefix;
        `config_hash` each record's configuration hash (`config_hashes`).
    """
    df, problems = load_records(root, parse=parse_summary)
    df = declare_dtypes(df)
    return (df.assign(config_hash=config_hashes(df)) if len(df) else df), problems  # once, not per table


def _text(v) -> str | None:
    return None if v is None or (isinstance(v, float) and v != v) else str(v)


def declare_dtypes(df: pd.DataFrame) -> pd.DataFrame:
    """Numeric fields as float64 (NaN when absent), text fields as strings (missing: None/NaN).

    `variant` is "" when absent, `protocol` "unknown", and `benchmark` falls back to the
    dataset's prefix (`vtab/dtd` -> `vtab`), so grouping never drops a record silently.
    """
    if df.empty:
        return df
    nan = pd.Series(float("nan"), index=df.index)
    none = pd.Series(None, index=df.index, dtype=object)
    cols = {c: pd.to_numeric(df[c] if c in df else nan, errors="coerce").astype("float64") for c in NUMERIC}
    # pandas >= 3 infers a string dtype (str or missing) for all-text columns; only others need a pass.
    text = {c: df[c] if c in df and isinstance(df[c].dtype, pd.StringDtype) else (df[c] if c in df else none).map(_text)
            for c in TEXT}
    text["variant"] = text["variant"].fillna("")
    text["protocol"] = text["protocol"].fillna("unknown")
    text["benchmark"] = text["benchmark"].fillna(text["dataset"].str.split("/").str[0])
    return df.assign(**cols, **text)


def config_hashes(df: pd.DataFrame) -> pd.Series:
    """Each record's configuration hash (bench.config.record_hash: its `config_hash`, else worked out once from
    its `config`), None where the record says neither; a `config_hash` column already worked out is kept."""
    from bench.config import record_hash

    if "config_hash" in df and "config" not in df:
        return df["config_hash"].where(df["config_hash"].notna(), None).astype(object)
    stored = df["config_hash"] if "config_hash" in df else pd.Series(None, index=df.index, dtype=object)
    config = df["config"] if "config" in df else pd.Series(None, index=df.index, dtype=object)
    return pd.Series([h if isinstance(h, str) and h else record_hash({"config": c}) for h, c in zip(stored, config)],
                     index=df.index, dtype=object)


def config_notes(df: pd.DataFrame) -> list[str]:
    """One note per method row whose runs of one task were run with several configurations (analyze.py gives
    each its own row, `[config <hash>]`, bench.analysis.tables.with_labels): the settings that differ, oldest
    configuration first. `df` has `label` and `config_hash` (with_labels)."""
    from bench.config import config_changes, config_key

    if "config_hash" not in df or not df["label"].str.contains("[config ", regex=False).any():
        return []
    split = df[df["label"].str.contains("[config ", regex=False) & df["config_hash"].notna()]
    base = split["label"].str.replace(r"\[config [^\]]*\]$", "", regex=True)
    when = split["started_at"].fillna("").astype(str) if "started_at" in split else pd.Series("", index=split.index)
    cells: dict[str, list[str]] = {}  # what differs -> the tasks where it does
    for (backbone, label, dataset), g in split.groupby([split["backbone"], base, split["dataset"]]):
        first = g.assign(when=when[g.index]).sort_values("when").drop_duplicates("config_hash")
        configs = list(zip(first["config_hash"], first["config"] if "config" in first else [None] * len(first)))
        (h0, c0), rest = configs[0], configs[1:]
        for h, c in rest:
            changes = config_changes(config_key(c0), config_key(c)) if isinstance(c0, dict) and isinstance(c, dict) \
                else ["(the records hold no config)"]
            what = f"{label}[config {h0[:8]}] -> {label}[config {h[:8]}] ({backbone}): {', '.join(changes)}"
            cells.setdefault(what, []).append(dataset)
    return [f"Configurations: {what}; on {', '.join(sorted(tasks)) if len(tasks) <= 3 else f'{len(tasks)} tasks'}. "
            "Runs of one task with other settings are never pooled: each configuration has its own row."
            for what, tasks in sorted(cells.items())]
