"""Figures from the tables (matplotlib, headless, torch-free).

Each figure function takes tables (never records) and returns a Figure, or None when there is
nothing to draw; `render` builds one and writes it in the requested formats. Tunable parameters
are on a symlog axis: log above 1,000, linear below, so linear probing (0 parameters outside the
head) still has a place.

Speed matters (analyze.py draws a score of figures within its 3 s budget for 10,000 records):
margins are computed from label lengths instead of `tight_layout` (which draws the figure once
more), tick labels are plain text (no mathtext parsing), and SVG keeps text as text.
"""
import io
from pathlib import Path

import numpy as np
import pandas as pd

from bench.analysis.benchmarks import short_name
from bench.analysis.tables import base_method, layout, mean_columns, mean_header

MIN_FONT_PT = 8.5  # every text in a figure; at dpi 100 shown 1:1 in the report that is 8.9 pt on screen
_CHAR_IN = 0.55 / 72  # width of one character per point of font size, in inches (DejaVu Sans, roughly)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # No glyph hinting: a third less time per text (2 ms each on a slow core), invisible at 100 dpi.
    plt.rcParams.update({"svg.fonttype": "none", "font.size": MIN_FONT_PT, "axes.titlesize": 9.5,
                         "figure.titlesize": 9.5, "legend.fontsize": MIN_FONT_PT,
                         "svg.hashsalt": "peft-bench", "text.hinting": "no_hinting"})  # hashsalt: reproducible SVG
    return plt


def warm_up() -> None:
    """Import matplotlib and load its fonts by drawing a small figure: the first figure of a
    process costs several times the next ones, so worker processes do this while they wait."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.text(0.5, 0.5, "warm-up 0123456789")
    ax.set_title("x")
    save(fig, None, ("png", "svg"))


def save(fig, stem: Path | None, render: tuple[str, ...] = ("png", "svg"), write: tuple[str, ...] | None = None
         ) -> dict[str, bytes]:
    """Render `fig` in each of `render` (png, svg, pdf), write `stem.<fmt>` for those in `write`
    (default: all rendered), close it; returns {format: bytes} for embedding in the HTML report."""
    write = render if write is None else write
    out = {}
    for fmt in render:
        buf = io.BytesIO()
        # No software version (PNG) or date (SVG): the same figure, the same bytes.
        fig.savefig(buf, format=fmt, dpi=100, metadata={"png": {"Software": None}, "svg": {"Date": None}}.get(fmt))
        out[fmt] = buf.getvalue()
        if stem is not None and fmt in write:
            tmp = stem.with_name(f".{stem.name}.{fmt}.tmp")
            tmp.write_bytes(out[fmt])
            tmp.replace(stem.with_name(f"{stem.name}.{fmt}"))
    _plt().close(fig)
    return out


def render(kind: str, args: tuple, stem: Path | None, formats: tuple[str, ...], write: tuple[str, ...]
           ) -> dict[str, bytes]:
    """Build figure `kind` (a function of this module) from `args` and save it: one picklable job,
    so analyze.py can hand figures to worker processes."""
    fig = FIGURES[kind](*args)
    return {} if fig is None else save(fig, stem, formats, write)


def _params_label(x: float, _pos=None) -> str:
    if x == 0:
        return "0"
    for unit, scale in (("M", 1e6), ("K", 1e3)):
        if x >= scale:
            return f"{x / scale:g}{unit}"
    return f"{x:g}"


def _symlog_params(ax, values, label: str) -> None:
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    top = max([v for v in values if v == v] + [1e3])
    ticks = [0] + [10.0 ** k for k in range(3, len(str(int(top))) + 1)]
    ax.set_xscale("symlog", linthresh=1e3, linscale=0.5)
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(_params_label))
    ax.set_xlim(-300, top * 8)  # room for the labels right of the largest point
    ax.set_xlabel(label)
    ax.grid(True, alpha=0.3)


LABEL_POINTS = 24  # up to this many rows of ours, each point carries its method's name
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p")


def accuracy_vs_params(table: pd.DataFrame, title: str, published: pd.DataFrame | None = None,
                       columns: list[str] | None = None, params: str = "tunable_params_no_head",
                       flagged: set | None = None):
    """Accuracy against tunable parameters, one panel per column (default: the table's first average).

    Our rows are filled markers: the shape is the method, the colour the backbone (a legend,
    not a label per point: with several backbones, per-point labels pile up and cost 2 ms each
    to draw here). Published rows (a leaderboard-shaped table from bench.analysis.published) are hollow
    black circles labelled with the published name. Rows of ours in `flagged` ((backbone, label)
    pairs whose recipe or checkpoint is not their published row's) get a † beside them. Rows
    without the value or the parameter count are not placed, and the figure says which published
    ones were left out.
    """
    from matplotlib.lines import Line2D

    plt = _plt()
    columns = columns or [c for c in ("mean", "mean_of_groups") if c in table.columns][:1] or layout(table)[0][:1]
    fig, axes = plt.subplots(1, len(columns), figsize=(1.6 + 4.2 * len(columns), 3.9), squeeze=False)
    labels = list(dict.fromkeys(lab for _, lab in table.index))
    backbones = list(dict.fromkeys(b for b, _ in table.index))
    marker = {lab: MARKERS[i % len(MARKERS)] for i, lab in enumerate(labels)}
    colour = {b: f"C{i % 10}" for i, b in enumerate(backbones)}
    left_out, has_published = [], False
    for ax, col in zip(axes[0], columns):
        rows = table.dropna(subset=[col, params])
        xs = list(rows[params])
        for label, group in rows.groupby(level="method", sort=False):
            ax.scatter(group[params], group[col], marker=marker[label], s=24, zorder=3,
                       c=[colour[b] for b, _ in group.index])
            for key, x, y in zip(group.index, group[params], group[col]):
                if len(table) <= LABEL_POINTS:  # few points: each named where it is, beside the legend
                    ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 3), fontsize=MIN_FONT_PT,
                                color=colour[key[0]])
                if key in (flagged or ()):
                    ax.annotate("†", (x, y), textcoords="offset points", xytext=(3, 2), fontsize=MIN_FONT_PT, color="C3")
        if published is not None and col in published:
            placed = published.dropna(subset=[col, params])
            left_out = [r for _, r in published.index.difference(placed.index, sort=False)]
            has_published = True
            xs += list(placed[params])
            ax.scatter(placed[params], placed[col], facecolors="none", edgecolors="black", s=30, zorder=4)
            for (_, label), x, y in zip(placed.index, placed[params], placed[col]):
                ax.annotate(label, (x, y), textcoords="offset points", xytext=(3, -6), fontsize=MIN_FONT_PT, color="0.35")
        _symlog_params(ax, xs, "tunable parameters without head (symlog)")
        name = mean_header(table, col) if col in ("mean", "mean_of_groups") else short_name(col)
        ax.set_ylabel(f"{name}, top-1 (%)")
    handles = [Line2D([], [], ls="", marker=marker[lab], color="0.3", label=lab) for lab in labels]
    handles += [Line2D([], [], ls="", marker="o", color=colour[b], label=f"ours: {b}") for b in backbones]
    if has_published:
        handles.append(Line2D([], [], ls="", marker="o", mfc="none", color="black",
                              label="published (ViT-B/16 IN-21k)"))
    if flagged:
        handles.append(Line2D([], [], ls="", marker="$†$", color="C3",
                              label="† other recipe or checkpoint than the published row"))
    axes[0][-1].legend(handles=handles, fontsize=MIN_FONT_PT, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.suptitle(title)
    if left_out:
        fig.text(0.01, 0.01, "published, not placed (no agreed parameter count): " + ", ".join(left_out),
                 fontsize=MIN_FONT_PT, color="0.35")
    legend_in = 0.45 + max(len(h.get_label()) for h in handles) * MIN_FONT_PT * _CHAR_IN
    fig.set_figwidth(fig.get_figwidth() - 1.55 + legend_in)
    width = fig.get_figwidth()
    fig.subplots_adjust(left=0.75 / width, right=1 - legend_in / width, bottom=0.15, top=0.9, wspace=0.25)
    return fig


def reference_rows(table: pd.DataFrame, reference: str = "full") -> dict[str, tuple[str, str]]:
    """backbone -> the (backbone, label) row the others are compared with: `full`, else its first variant."""
    out = {}
    for b, lab in table.index:
        if base_method(lab) == reference and (b not in out or lab == reference):
            out[b] = (b, lab)
    return out


def delta_heatmap(table: pd.DataFrame, title: str, reference: str = "full", average: str = "both"):
    """Each method's difference to full fine-tuning of the same backbone, per task and average.

    Red is worse than full fine-tuning, blue better, white equal; grey cells have no value.
    None when no backbone has a full fine-tuning row or no other method.
    """
    tasks, groups = layout(table)
    columns = tasks + groups + mean_columns(table, average)
    refs = reference_rows(table, reference)
    rows = [r for r in table.index if r[0] in refs and r != refs[r[0]]]
    if not rows:
        return None
    values = (table.loc[rows, columns].to_numpy(dtype=float)
              - table.loc[[refs[b] for b, _ in rows], columns].to_numpy(dtype=float))
    plt = _plt()
    finite = values[~pd.isna(values)]
    vmax = max(1.0, float(abs(finite).max())) if finite.size else 1.0
    names = [lab for _, lab in rows]
    xnames = [mean_header(table, c) if c in ("mean", "mean_of_groups") else c.capitalize() if c in groups
              else short_name(c) for c in columns]
    left = 0.2 + max(map(len, names)) * MIN_FONT_PT * _CHAR_IN + (0.2 if len(refs) > 1 else 0)
    bottom = 0.35 + max(map(len, xnames)) * MIN_FONT_PT * _CHAR_IN * 0.9  # labels at 60 degrees: sin 60 of their length
    w, h = left + 0.5 * len(columns) + 1.2, bottom + 0.26 * len(rows) + 0.45
    fig, ax = plt.subplots(figsize=(w, h))
    fig.subplots_adjust(left=left / w, right=1 - 0.9 / w, bottom=bottom / h, top=1 - 0.3 / h)
    cmap = plt.get_cmap("RdBu").with_extremes(bad="0.85")
    im = ax.imshow(values, cmap=cmap, vmin=-vmax, vmax=vmax, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(len(columns)), xnames, rotation=60, ha="right", rotation_mode="anchor", fontsize=MIN_FONT_PT)
    ax.set_yticks(range(len(rows)), names, fontsize=MIN_FONT_PT)
    if len(refs) > 1:
        _backbone_blocks(ax, [b for b, _ in rows], left)
    if values.size <= 150:  # beyond that the numbers are unreadable, and slow to draw (2 ms a text here)
        for i, j in zip(*(~pd.isna(values)).nonzero()):
            v = values[i, j]
            ax.text(j, i, f"{v:+.1f}", ha="center", va="center", fontsize=MIN_FONT_PT,
                    color="white" if abs(v) > 0.6 * vmax else "black")
    for x in (len(tasks) - 0.5, len(tasks) + len(groups) - 0.5):
        ax.axvline(x, color="black", linewidth=0.6)
    cax = fig.add_axes((1 - 0.8 / w, bottom / h, 0.1 / w, 1 - (bottom + 0.3) / h))
    fig.colorbar(im, cax=cax, label=f"minus {reference} (points)")
    ax.set_title(title)
    return fig


def _backbone_blocks(ax, backbones: list[str], left_in: float, names: bool = True) -> None:
    """Name each run of rows sharing a backbone once, at the far left, with a line between runs:
    the row labels then carry the method only (long labels cost draw time and width)."""
    start = 0
    for i in range(1, len(backbones) + 1):
        if i == len(backbones) or backbones[i] != backbones[start]:
            if names:
                ax.annotate(backbones[start], xy=(0, (start + i - 1) / 2), xycoords=("axes fraction", "data"),
                            xytext=(-(left_in - 0.12) * 72, 0), textcoords="offset points", rotation=90,
                            ha="center", va="center", fontsize=MIN_FONT_PT, annotation_clip=False)
            if i < len(backbones):
                ax.axhline(i - 0.5, color="black", linewidth=0.6)
            start = i


def _bars(ax, ys, widths, height, colors, alpha, label):
    """Horizontal bars as one PolyCollection: one artist instead of one Rectangle per bar (10x faster to draw)."""
    from matplotlib.collections import PolyCollection

    verts = [[(0, y), (w, y), (w, y + height), (0, y + height)] for y, w in zip(ys, widths)]
    ax.add_collection(PolyCollection(verts, facecolors=colors, edgecolors="none", alpha=alpha, label=label))
    ax.update_datalim([(0, min(ys)), (max(widths + [0]), max(ys) + height)])
    ax.autoscale_view()


def cost_figure(cost: pd.DataFrame, title: str):
    """Training throughput, peak training memory and (when recorded) deployed inference speed per method.

    `cost` is `tables.cost_table(df, by=("protocol", "backbone"))`: one bar per backbone x method,
    one per protocol where there are several (never merged; the second paler). None if empty.
    """
    if cost.empty:
        return None
    plt = _plt()
    from matplotlib.ticker import MaxNLocator

    panels = [("train_images_per_s", "training images/s")]
    if cost["peak_memory_mb"].notna().any():  # per-run memory only (tables.cost_table)
        panels.append(("peak_memory_mb", "peak memory of the run (MB)"))
    if cost["inference_images_per_s_ratio"].notna().any():
        panels.append(("inference_images_per_s_ratio", "inference images/s vs untouched backbone"))
    rows = list(dict.fromkeys(k[1:] for k in cost.index))
    protocols = list(dict.fromkeys(cost.index.get_level_values("protocol")))
    labels = [m for _, m in rows]
    multi = len({bb for bb, _ in rows}) > 1
    left = 0.2 + max(map(len, labels)) * MIN_FONT_PT * _CHAR_IN + (0.2 if multi else 0)
    w, h = left + 2.6 * len(panels), 1.0 + 0.17 * len(rows) * len(protocols)
    fig, axes = plt.subplots(1, len(panels), figsize=(w, h), sharey=True, squeeze=False)
    fig.subplots_adjust(left=left / w, right=0.98, bottom=0.45 / h, top=1 - 0.45 / h, wspace=0.08)
    palette = {bb: f"C{i}" for i, bb in enumerate(dict.fromkeys(r[0] for r in rows))}
    height = 0.8 / len(protocols)
    for ax, (col, name) in zip(axes[0], panels):
        for p_i, protocol in enumerate(protocols):
            sub = cost.xs(protocol, level="protocol")[col]
            values = [sub.get(r, float("nan")) for r in rows]
            ys = [i - 0.4 + height * p_i for i in range(len(rows))]
            _bars(ax, ys, [0 if v != v else v for v in values], height, [palette[r[0]] for r in rows],
                  1.0 - 0.45 * p_i, f"{protocol} protocol")
        ax.set_xlabel(name)
        ax.xaxis.set_major_locator(MaxNLocator(4))
        ax.grid(True, axis="x", alpha=0.3)
        if col == "inference_images_per_s_ratio":
            ax.axvline(1.0, color="black", linewidth=0.6)
    axes[0][0].set_yticks(range(len(rows)), labels, fontsize=MIN_FONT_PT)
    axes[0][0].set_ylim(len(rows) - 0.5, -0.5)  # first row on top
    if multi:
        for k, ax in enumerate(axes[0]):
            _backbone_blocks(ax, [bb for bb, _ in rows], left, names=k == 0)
    if len(protocols) > 1:
        axes[0][-1].legend(fontsize=MIN_FONT_PT, loc="lower right")
    kinds = sorted({k for k in cost["peak_memory_kind"] if k})
    fig.suptitle(title + (f" (memory: {', '.join(kinds)})" if kinds else ""))
    return fig



def _per_dataset(long: pd.DataFrame, title: str, x: str, xlabel: str, log_base: int):
    """One panel per dataset, one line (mean, std band) per backbone and method."""
    if long.empty:
        return None
    plt = _plt()
    datasets = sorted(long["dataset"].unique())
    fig, axes = plt.subplots(1, len(datasets), figsize=(3.2 * len(datasets), 2.8), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        part = long[(long["dataset"] == dataset) & long[x].notna()]
        for (backbone, row), line in part.groupby(["backbone", "row"], sort=True):
            line = line.sort_values(x)
            name = row if long["backbone"].nunique() == 1 else f"{row} ({backbone})"
            ax.plot(line[x], line["mean"], marker="o", markersize=3, label=name)
            std = line["std"].fillna(0)
            ax.fill_between(line[x], line["mean"] - std, line["mean"] + std, alpha=0.15)
        ax.set_xscale("log", base=log_base)
        ax.set_xticks(sorted(part[x].unique()), [f"{int(v):,}" for v in sorted(part[x].unique())])
        ax.minorticks_off()
        ax.set_title(short_name(dataset))
        ax.set_xlabel(xlabel)
    axes[0][0].set_ylabel("top-1 %")
    axes[0][-1].legend(fontsize=MIN_FONT_PT, loc="lower right")
    fig.suptitle(title)
    fig.subplots_adjust(left=0.3 / len(datasets), right=0.98, bottom=0.18, top=0.82, wspace=0.3)
    return fig


def accuracy_vs_shots(long: pd.DataFrame, title: str):
    """Few-shot: accuracy against shots per class (log 2), mean and std over list seeds."""
    return _per_dataset(long, title, "shots", "shots per class", 2)


def manyshot_curve(long: pd.DataFrame, title: str):
    """Many-shot: accuracy against training images (log); the whole split is the table's `full` column."""
    return _per_dataset(long, title, "train_images", "training images", 10)


def nemenyi_bars(ranks, cd: float) -> list[tuple[int, int]]:
    """The bars of a critical-difference diagram: (first, last) positions in `ranks` (average ranks, ascending)
    of each maximal run of two methods or more whose ranks lie within the Nemenyi critical difference `cd`.

    Two methods differ by the Nemenyi test exactly where their average ranks differ by more than `cd`
    (the studentized range quantile `stats.nemenyi_cd` scales; scikit-posthocs' `posthoc_nemenyi_friedman`
    p-values say the same, tests/test_stats.py checks the bars against its diagram's), so the methods no
    test tells apart are contiguous in rank order: each bar is such a run, not contained in another.
    """
    bars, reach = [], -1
    for i in range(len(ranks)):
        j = i
        while j + 1 < len(ranks) and ranks[j + 1] - ranks[i] <= cd:
            j += 1
        if j > i and j > reach:  # ranks ascending: a run ending where the last one did lies inside it
            bars.append((i, j))
        reach = max(reach, j)
    return bars


def cd_diagram(scores: pd.DataFrame, title: str, cd: float, alpha: float = 0.05):
    """Critical-difference diagram (Demšar 2006) of (tasks x methods) accuracies.

    Average ranks on the axis (1 = best); a bar joins methods the Nemenyi test cannot tell apart at
    `alpha`: average ranks within `cd` (`nemenyi_bars`). Drawn here rather than by scikit-posthocs'
    `critical_difference_diagram`, with its layout (the better half named on the left, the rest on the
    right, bars stacked below the axis) and the same bars, in a handful of artists: one line collection
    and one scatter instead of a line and a scatter per method, the title placed rather than fitted
    above the ticks, and no scikit-posthocs (seaborn) import in the figure workers. scikit-posthocs' own
    diagram was 40 % of the time of each of the score of diagrams a first analysis draws, and stacked
    its bars in the order of a set (PYTHONHASHSEED), so two runs drew different PNGs. Here every position
    follows from the ranks: the same inputs, the same bytes.
    """
    from matplotlib.collections import LineCollection

    plt = _plt()
    mean_ranks = scores.rank(axis=1, ascending=False).mean()
    order = np.argsort(mean_ranks.to_numpy(), kind="stable")
    names = [str(scores.columns[i]) for i in order]
    ranks = mean_ranks.to_numpy()[order]
    k = len(names)
    h = 1.6 + 0.25 * k
    label_in = (max(map(len, names)) + 8) * MIN_FONT_PT * _CHAR_IN  # "name (rank)" beside the axis
    w = 5.0 + 2 * label_in
    fig = plt.figure(figsize=(w, h))
    ax = fig.add_axes((label_in / w, 0.1 / h, 1 - 2 * label_in / w, 1 - 0.85 / h))
    ax.yaxis.set_visible(False)
    for side in ("right", "left", "bottom"):
        ax.spines[side].set_visible(False)
    ax.xaxis.set_ticks_position("top")
    ax.spines["top"].set_position("zero")

    levels: list[list[tuple[float, float]]] = []  # each level's bars, (low, high) in ranks
    bars = []
    for i, j in nemenyi_bars(ranks, cd):
        low, high = ranks[i], ranks[j]
        level = next((n for n, taken in enumerate(levels) if not any(low <= b and a <= high for a, b in taken)),
                     len(levels))
        if level == len(levels):
            levels.append([])
        levels[level].append((low, high))
        bars.append([(low, -level - 1), (high, -level - 1)])
    half = (k + 1) // 2
    first_row = -len(levels) - 1
    margin = 0.02
    elbows, colours = [], []
    for slot, i in enumerate(list(range(half)) + list(range(k - 1, half - 1, -1))):
        left = i < half
        x = ranks[0] - margin if left else ranks[-1] + margin
        y = first_row - (slot if left else slot - half)
        colour = f"C{slot % 10}"
        elbows.append([(x, y), (ranks[i], y), (ranks[i], 0)])
        colours.append(colour)
        ax.text(x, y, f"{names[i]} ({ranks[i]:.2g})" if left else f"({ranks[i]:.2g}) {names[i]}", color=colour,
                ha="right" if left else "left", va="center", fontsize=MIN_FONT_PT)
    ax.add_collection(LineCollection(elbows, colors=colours, linewidths=1.5))
    if bars:
        ax.add_collection(LineCollection(bars, colors="black", linewidths=2, capstyle="projecting", zorder=3))
    ax.scatter([e[1][0] for e in elbows], [0] * k, c=colours, zorder=3)
    x0, x1 = ranks[0] - margin, ranks[-1] + margin
    y0 = first_row - max(half, k - half) + 1
    ax.set_xlim(x0 - 0.05 * (x1 - x0), x1 + 0.05 * (x1 - x0))
    ax.set_ylim(y0 + 0.05 * y0, -0.05 * y0)
    ax.set_title(f"{title}; Nemenyi CD = {cd:.2f} at {alpha:g}", y=1 + 0.45 / (h - 0.85))
    return fig


def budget_curves(curves: pd.DataFrame, title: str):
    """Accuracy as a function of the tuning budget: one panel per backbone x benchmark mean, per method the
    expected best val top-1 (dashed) and the expected test top-1 of the selected trial (solid), with bands."""
    if curves.empty:
        return None
    plt = _plt()
    panels = sorted(curves.groupby(["backbone", "benchmark", "protocol"]).groups)
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.0), squeeze=False)
    for ax, (backbone, benchmark, protocol) in zip(axes[0], panels):
        part = curves[(curves["backbone"] == backbone) & (curves["benchmark"] == benchmark)
                      & (curves["protocol"] == protocol)]
        for i, (label, line) in enumerate(part.groupby("label", sort=True)):
            line = line.sort_values("n")
            color = f"C{i % 10}"
            ax.plot(line["n"], line["test_selected"], marker="o", markersize=3, color=color, label=f"{label} test")
            ax.fill_between(line["n"], line["test_lo"], line["test_hi"], color=color, alpha=0.15)
            ax.plot(line["n"], line["val_best"], linestyle="--", color=color, label=f"{label} best val")
        ax.set_xlabel("trials n (budget)")
        ax.set_title(f"{benchmark} mean ({backbone})")
        ax.set_xticks(sorted(part["n"].unique()))
    axes[0][0].set_ylabel("top-1 %")
    axes[0][-1].legend(fontsize=MIN_FONT_PT, loc="best")
    fig.suptitle(title)
    fig.subplots_adjust(left=0.3 / len(panels), right=0.98, bottom=0.18, top=0.82, wspace=0.3)
    return fig


FIGURES = {"cd_diagram": cd_diagram, "accuracy_vs_params": accuracy_vs_params, "delta_heatmap": delta_heatmap, "cost_figure": cost_figure,
           "accuracy_vs_shots": accuracy_vs_shots, "manyshot_curve": manyshot_curve, "budget_curves": budget_curves}
