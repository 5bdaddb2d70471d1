"""Published results (results/reference/) next to ours: loading, leaderboard shape, comparison.

Every published number comes from the shipped CSVs, which keep their sources; this module only
renames their columns to our dataset names and derives what the papers did not print (VTAB
group means and the mean of the group means, from the published cells; marked "derived").
Each row also says which average its printed mean is (`published_rows.csv` `average`: AVERAGES):
the SSF paper's 19-task mean or the mean of the three group means (Adapter+, NOAH, DyT); the
printed number lands in that column only, the other is derived from the cells, so no printed
mean is ever set beside our other average.
`published_rows.csv` says which of our methods each published row compares with, which
pre-trained checkpoint it used (AugReg vs original IN-21k ViT-B/16 weights), which recipe
trained it (conf/recipe/<name>.yaml: ssf, noah, vpt; `vpetl` is V-PETL Bench's, not one of
ours), which pixels it was scored on (`data`: DATA_PIPELINES) and how its number was selected. A
cell whose run used another checkpoint, recipe or data pipeline is not like for like: `compare`
says so per cell, and the renderers mark it.
"""
import math
from pathlib import Path

import pandas as pd

from bench import PROJECT_ROOT
from bench.analysis.tables import ROW_NAMES, base_method, fmt_value, mean_columns

REFERENCE_DIR = PROJECT_ROOT / "results" / "reference"
FILES = {"vtab": "vtab1k_vitb16_in21k.csv", "fgvc": "fgvc_vitb16_in21k.csv"}
ROWS_FILE = "published_rows.csv"
# Published column -> our dataset name (NOAH/SSF folder names, the configs' paths).
COLUMNS = {
    "vtab": {"cifar100": "vtab/cifar", "caltech101": "vtab/caltech101", "dtd": "vtab/dtd",
             "flowers102": "vtab/oxford_flowers102", "pets": "vtab/oxford_iiit_pet", "svhn": "vtab/svhn",
             "sun397": "vtab/sun397", "patch_camelyon": "vtab/patch_camelyon", "eurosat": "vtab/eurosat",
             "resisc45": "vtab/resisc45", "retinopathy": "vtab/diabetic_retinopathy",
             "clevr_count": "vtab/clevr_count", "clevr_dist": "vtab/clevr_dist", "dmlab": "vtab/dmlab",
             "kitti_dist": "vtab/kitti", "dsprites_loc": "vtab/dsprites_loc", "dsprites_ori": "vtab/dsprites_ori",
             "smallnorb_azi": "vtab/smallnorb_azi", "smallnorb_ele": "vtab/smallnorb_ele"},
    "fgvc": {"cub200": "fgvc/cub", "nabirds": "fgvc/nabirds", "oxford_flowers": "fgvc/oxford_flowers",
             "stanford_dogs": "fgvc/stanford_dogs", "stanford_cars": "fgvc/stanford_cars"},
}
META = ("method", "checkpoint", "timm_arch", "recipe", "data", "selection", "evidence", "average", "source")
# published_rows.csv `average` -> the leaderboard column its printed mean belongs in: the plain mean of the
# tasks (the SSF paper's 19-task VTAB-1k mean; FGVC's 5-dataset mean) or the mean of the group means (Adapter+)
AVERAGES = {"tasks": "mean", "groups": "mean_of_groups"}
DERIVED_MARK = "ᵈ"  # a published value computed from the published cells, not printed
MISMATCH = "†"  # marks a cell of ours whose recipe, checkpoint or data pipeline is not the published row's
WITHIN, OUTSIDE = "within noise", "outside"  # the published value inside / outside our interval
NOISE_MARKS = {WITHIN: " ≈", OUTSIDE: " ≠", "": ""}
# The pixels a row was scored on (published_rows.csv `data`; ours from the records, `data_pipeline`). NOAH's
# converter's JPEGs alone move CIFAR-100 by about 10 points against the TFDS tensors (anchors.md 0, 11).
DATA_PIPELINES = {
    "tfds": "TFDS tensors (VPT), or lossless PNG of them (python -m bench.data prepare tfds)",
    "noah_jpeg": "NOAH's converter's JPEG files at PIL's default quality 75 (SSF, NOAH, V-PETL Bench)",
    "official_jpeg": "the datasets' own JPEG files (FGVC archives)",
}


def data_pipeline(data, benchmark: str = "") -> str | None:
    """Which of DATA_PIPELINES a record's `data` describes; another name where none fits (`png`, `jpeg_q90`,
    `generated`), None where the record does not say (older records without pixel formats)."""
    if not isinstance(data, dict):
        return None
    source = ((data.get("manifest") or {}).get("source") or {}).get("kind")
    fmt = data.get("pixel_format")
    if fmt is None:  # records before pixel formats: the files' suffixes
        suffixes = {k.lower() for s in (data.get("splits") or {}).values() if isinstance(s, dict)
                    for k in (s.get("image_types") or {})}
        fmt = "jpeg" if suffixes and suffixes <= {".jpg", ".jpeg"} else "png" if suffixes == {".png"} else None
    if data.get("format") == "generated" or fmt == "generated":
        return "generated"
    if source == "tfds" and fmt == "png":
        return "tfds"
    if fmt == "jpeg":
        if benchmark == "fgvc" or str(data.get("format", "")).startswith(("fgvc", "cub", "nabirds", "stanford")):
            return "official_jpeg"
        quality = data.get("jpeg_quality")
        return "noah_jpeg" if quality in (None, 75) else f"jpeg_q{quality}"
    return fmt


def family(arch: str | None) -> str:
    """`vit_base_patch16_224.augreg_in21k` -> `vit_base_patch16_224` (the architecture, not the weights)."""
    return (arch or "").split(".", 1)[0]


def load_published(ref_dir: str | Path = REFERENCE_DIR) -> dict[str, pd.DataFrame]:
    """benchmark -> published rows, indexed by the published row name, in file order.

    Columns: our dataset names (accuracy %), `mean` (as published), `tunable_params` (count, from
    the published millions; NaN where the sources disagree), and META. Missing files give no
    entry; a file whose columns changed raises ValueError naming them.
    """
    ref_dir = Path(ref_dir)
    rows_path = ref_dir / ROWS_FILE
    meta = pd.read_csv(rows_path, dtype=str, keep_default_na=False) if rows_path.exists() else None
    out = {}
    for bench, name in FILES.items():
        path = ref_dir / name
        if not path.exists():
            continue
        pub = pd.read_csv(path, dtype={"method": str, "source": str})
        missing = [c for c in (*COLUMNS[bench], "mean", "method", "tunable_params_M") if c not in pub.columns]
        if missing:
            raise ValueError(f"{path}: expected columns {missing}")
        pub = pub.rename(columns=COLUMNS[bench]).set_index("method").rename_axis("row")
        pub["tunable_params"] = pub.pop("tunable_params_M") * 1e6
        rows = (meta[meta["benchmark"] == bench].set_index("row").drop(columns="benchmark")
                if meta is not None else pd.DataFrame(index=pub.index, columns=list(META[:6])))
        pub = pub.join(rows.reindex(pub.index).fillna(""))
        for c in META:
            pub[c] = pub[c].fillna("").astype(str) if c in pub else ""
        out[bench] = pub
    return out


def published_family(pub: pd.DataFrame) -> str:
    """The architecture all rows of a published table share (from the rows' timm names)."""
    fams = {family(a) for a in pub["timm_arch"] if a}
    return fams.pop() if len(fams) == 1 else ""


def published_leaderboard(pub: pd.DataFrame, tasks: list[str], groups: dict[str, list[str]] | None = None,
                          backbone: str = "published") -> pd.DataFrame:
    """The published rows shaped like `tables.leaderboard` (same columns, `seeds` 0).

    The printed mean goes in the column of the row's `average` (AVERAGES: `mean` for a mean of
    the tasks, `mean_of_groups` for a mean of the group means); the other average and the group
    means are derived from the published cells (only where every cell they need is published).
    `attrs["printed"]`: row -> the column holding its printed mean.

    Raises:
        ValueError: a row whose `average` is not one of AVERAGES, or `groups` without groups.
    """
    groups = dict(groups or {})
    table = pub.reindex(columns=tasks).astype(float)
    for name, members in groups.items():
        table[name] = table[members].mean(axis=1).where(table[members].notna().all(axis=1))
    average = (pub["average"] if "average" in pub else pd.Series("", index=pub.index)).replace("", "tasks")
    bad = sorted(set(average) - set(AVERAGES) | ({"groups"} & set(average) if not groups else set()))
    if bad:
        raise ValueError(f"published rows with average {bad}: valid: {', '.join(AVERAGES) if groups else 'tasks'} "
                         "(results/reference/published_rows.csv `average`)")
    printed = pub["mean"].astype(float)
    table["mean"] = printed.where(average == "tasks", table[tasks].mean(axis=1).where(table[tasks].notna().all(axis=1)))
    if groups:
        derived = table[list(groups)].mean(axis=1).where(table[list(groups)].notna().all(axis=1))
        table["mean_of_groups"] = printed.where(average == "groups", derived)
    table["tasks"] = [f"{n}/{len(tasks)}" for n in table[tasks].notna().sum(axis=1)]
    table["seeds"] = 0
    table["tunable_params"] = math.nan
    table["tunable_params_no_head"] = pub["tunable_params"]  # the papers' counts leave the head out (Linear = 0)
    table.index = pd.MultiIndex.from_tuples([(backbone, r) for r in pub.index], names=ROW_NAMES)
    table.attrs = {"tasks": list(tasks), "groups": list(groups), "metric": "published",
                   "printed": {r: AVERAGES[a] for r, a in average.items()}}
    return table


def noise(published: float, bounds: tuple[float, float] | None) -> str:
    """'within noise' where the published value lies inside our interval, 'outside' where not, '' without one."""
    if bounds is None or published != published:
        return ""
    return WITHIN if bounds[0] <= published <= bounds[1] else OUTSIDE


def compare(ours: pd.DataFrame, pub: pd.DataFrame, pub_table: pd.DataFrame, archs: dict[str, str],
            recipes: dict[tuple[str, str], str] | None = None,
            data: dict[tuple[str, str], str] | None = None, intervals: dict | None = None) -> pd.DataFrame:
    """Our leaderboard joined to the published one, cell by cell.

    Each published row is paired with every row of ours whose method is the published row's
    `method` and whose backbone has the published architecture (any weights and any recipe:
    `same_checkpoint` and `same_recipe` say whether they match). A published row with no
    partner appears once, ours NaN.

    Args:
        ours: `tables.leaderboard` of one benchmark and protocol.
        pub: `load_published()[benchmark]`.
        pub_table: `published_leaderboard(pub, ...)` with the same task and group columns.
        archs: our backbone name -> its `backbone_arch` (timm name with tag).
        recipes: (backbone, label) of our rows -> the recipe name(s) their records ran, '/'-joined.
        data: (backbone, label) of our rows -> their data pipeline(s) (`data_pipeline`), '/'-joined.
        intervals: (backbone, label, column) -> our interval (`stats.table_stats`), for `noise`.
    Returns:
        Long frame: backbone, method, row (published), checkpoint, our_arch, same_checkpoint
        (True/False, None when the published row names none), recipe (the published row's),
        selection (how its number was chosen), our_recipe, same_recipe (True/False, None when
        either is unknown), data (the published row's pipeline), our_data, same_data (as same_recipe),
        like_for_like (False when the checkpoint or the recipe differs or is unknown, or the data pipeline differs),
        column, ours, published, diff (ours - published), derived (the published value was
        computed, not printed), ci_low, ci_high (ours), noise ('within noise' / 'outside' / '' when
        ours has no interval).
    """
    recipes, data, intervals = recipes or {}, data or {}, intervals or {}
    tasks = list(pub_table.attrs["tasks"])
    columns = tasks + [c for c in pub_table.columns if c not in tasks and c in ours.columns
                       and c not in ("tasks", "seeds", "tunable_params", "tunable_params_no_head")]
    derived = set(pub_table.attrs.get("groups", [])) | set(AVERAGES.values())  # but the printed one, per row
    printed = pub_table.attrs.get("printed", {})
    fam = published_family(pub)
    mine = dict(zip(ours.index, ours.to_dict("records")))
    records = []
    for (_, row), prow in zip(pub_table.index, pub_table.to_dict("records")):
        meta = pub.loc[row]
        partners = [(b, lab) for b, lab in mine
                    if meta["method"] and base_method(lab) == meta["method"] and family(archs.get(b)) == fam]
        for b, lab in partners or [(None, None)]:
            arch = archs.get(b) if b else None
            same = None if not (meta["timm_arch"] and arch) else arch == meta["timm_arch"]
            our_recipe = recipes.get((b, lab), "") if b else ""
            same_recipe = None if not (meta["recipe"] and our_recipe) else our_recipe == meta["recipe"]
            our_data = data.get((b, lab), "") if b else ""
            same_data = None if not (meta["data"] and our_data) else our_data == meta["data"]
            values = mine.get((b, lab), {})
            for c in columns:
                o = float(values.get(c, math.nan))
                records.append({"backbone": b, "method": lab, "row": row, "checkpoint": meta["checkpoint"],
                                "our_arch": arch, "same_checkpoint": same, "recipe": meta["recipe"],
                                "selection": meta["selection"], "our_recipe": our_recipe, "same_recipe": same_recipe,
                                "data": meta["data"], "our_data": our_data, "same_data": same_data,
                                # a pipeline not known on either side is shown "?" but not marked: records
                                # before pixel formats say nothing, and that is no evidence of a difference
                                "like_for_like": None if b is None else bool(same and same_recipe)
                                and same_data is not False,
                                "column": c, "ours": o, "published": prow[c], "diff": o - prow[c],
                                "derived": c in derived and c != printed.get(row, "mean"),
                                "ci_low": intervals.get((b, lab, c), (math.nan, math.nan))[0],
                                "ci_high": intervals.get((b, lab, c), (math.nan, math.nan))[1],
                                "noise": noise(prow[c], intervals.get((b, lab, c)))})
    return pd.DataFrame(records)


def _yes_no(v) -> str:
    return "?" if v is None or v != v else ("yes" if v else "no")  # None or NaN: not known


def comparison_rows(long: pd.DataFrame, table: pd.DataFrame, average: str = "both"
                    ) -> tuple[list[str], list[list[str]], set[int]]:
    """Wide rendering of `compare`: one row per (ours, published row); cells `ours / published (diff)`.

    Tasks with one decimal, averages with two (the published precision); `table` is the
    published leaderboard (for column order and names). A row whose checkpoint or recipe is not
    the published row's has every value of ours marked `†`: the difference is not the method's alone.
    A published average computed from the cells rather than printed is marked DERIVED_MARK.
    """
    from bench.analysis.benchmarks import short_name
    from bench.analysis.tables import layout, mean_header

    tasks, groups = layout(table)
    means = mean_columns(table, average)
    columns = tasks + groups + means
    header = ["backbone", "method", "published row", "published checkpoint", "same checkpoint",
              "published recipe", "our recipe", "same recipe", "published data", "our data", "same data",
              "within noise",
              *[short_name(t) for t in tasks], *[f"{g.capitalize()} (derived)" for g in groups],
              *[mean_header(table, m) for m in means]]
    bold = set(range(12 + len(tasks) + len(groups), len(header)))
    rows = []
    if long.empty:
        return header, rows, bold
    groups: dict[tuple, dict] = {}
    for r in long.to_dict("records"):
        groups.setdefault((r["row"], r["backbone"], r["method"]), {})[r["column"]] = r
    for (row, b, lab), cells in groups.items():
        first = next(iter(cells.values()))
        mark = MISMATCH if first.get("like_for_like") is False else ""
        out = ["—" if b is None or b != b else b, "—" if lab is None or lab != lab else lab, row,
               first["checkpoint"] or "—", _yes_no(first["same_checkpoint"]), first.get("recipe") or "—",
               first.get("our_recipe") or "—", _yes_no(first.get("same_recipe")), first.get("data") or "—",
               first.get("our_data") or "—", _yes_no(first.get("same_data"))]
        judged = [cells[c].get("noise", "") for c in columns if cells[c].get("noise", "")]
        out.append(f"{judged.count(WITHIN)}/{len(judged)}" if judged else "—")
        for c in columns:
            digits = 1 if c in tasks else 2
            o, p, d = cells[c]["ours"], cells[c]["published"], cells[c]["diff"]
            diff = "" if d != d else f" ({d:+.{digits}f})"
            ours = fmt_value(o, digits) + (mark if o == o else "")
            derived = c in means and cells[c].get("derived") and p == p
            published = fmt_value(p, digits) + (DERIVED_MARK if derived else "")
            out.append(f"{ours} / {published}{diff}{NOISE_MARKS[cells[c].get('noise', '')]}")
        rows.append(out)
    return header, rows, bold
