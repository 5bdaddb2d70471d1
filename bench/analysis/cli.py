"""Aggregate run records into leaderboards, comparisons with published results, cost tables and figures.

    python analyze.py RESULTS_DIR [RESULTS_DIR ...] [--out OUT_DIR] [--benchmark vtab,fgvc] [--backbone 'vit_base*']
                      [--method 'ssf*,full'] [--protocol paper] [--average both|tasks|groups]
                      [--metric test_top1] [--formats csv,md,html,png,svg] [--jobs 2] [--quiet] [--redraw]

Reads every record.json under the RESULTS_DIRs (never logs, never recomputing a metric; a truncated
or corrupt record is skipped, warned about and counted). For each protocol (`val`, `paper`:
never averaged together) and each table (VTAB-1k, FGVC, CIFAR-100 + ImageNet, mini, and any
other benchmark found) it writes into OUT_DIR (default: the first RESULTS_DIR's leaderboard/):

    leaderboard_<table>_<protocol>.csv/.md   mean per cell, group means, both averages, params
    cells_<table>_<protocol>.csv             mean, std, seeds and 95 % interval per cell, or its status
    significance_<table>_<protocol>.csv/.md  each method minus the baseline per task and average: interval,
                                             p-value, Holm-adjusted p, verdict; runs (one seed) or methods
                                             (seeds); also for robustness_ and domain_generalization_
    noise_<table>_<protocol>.csv/.md         per task: interval half-width, smallest detectable difference
    ranks_<table>_<protocol>.csv/.md         average ranks, Friedman test, Nemenyi critical difference
    improvement_<table>_<protocol>.csv/.md   P(row method > column method) over tasks
    published_<table>_<protocol>.csv/.md     ours / published / difference per cell (VTAB, FGVC)
    robustness_<protocol>.csv/.md            ImageNet top-1, ImageNet-A/-R top-1, ImageNet-C mCE
    fewshot_<protocol>.csv/.md/.png          few-shot: dataset x shots, mean ± std over list seeds; accuracy vs shots
    domain_generalization_<protocol>.csv/.md source and target top-1 (ImageNet-V2, -Sketch, -A, -R)
    manyshot_<protocol>.csv/.md/.png         accuracy against training-subset size
    cost.csv/.md, status.csv/.md             cost per method x backbone; runs by status
    budget_curves.csv/.md/.png, budget_at_n.csv/.md, tuning_cost.csv/.md
                                             budgeted searches (scripts/search.py): expected best val and the
                                             selected trial's test top-1 against the number of trials n, the
                                             leaderboard at equal budget n (--budget), device-seconds spent
    accuracy_vs_params_<table>_<protocol>, delta_to_full_<table>_<protocol>,
    critical_difference_<table>_<protocol>_<backbone>, cost   figures (.png, .svg)
    report.html                              everything above in one self-contained file

and prints the markdown leaderboards.
"""
# analyze.py's body (a thin entry point over `main`); torch-free, as tests/test_layout.py checks.
import argparse
import fnmatch
import functools
import gc
import hashlib
import json
import math
import multiprocessing
import os
import pickle
import sys
import warnings
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bench.analysis import shots, stats, stats_cache
from bench.analysis.benchmarks import table_specs
from bench.analysis.load import config_notes, load_summaries
from bench.analysis.published import (REFERENCE_DIR, compare, comparison_rows, data_pipeline, load_published,
                                      published_leaderboard)
from bench.analysis.report import Report
from bench.analysis.tables import (AVERAGES, ROBUSTNESS, cell_stats, cost_rows, cost_table, fmt_value, leaderboard,
                                   markdown, mean_columns, robustness_records, short_name, status_cells, status_summary,
                                   table_rows, with_intervals, with_labels)
from bench.records import atomic_file

FORMATS = ("csv", "md", "html", "png", "svg", "pdf")
METRICS = ("test_top1", "test_top1_best_epoch_optimistic", "val_top1")
AVERAGE_NOTE = ("Two VTAB-1k averages: 'mean of 19 tasks' is the SSF paper's (plain mean of the task accuracies); "
                "'mean of 3 group means' (Natural, Specialized, Structured) is NOAH's, Convpass's and DyT's. "
                "For the same cells they differ by 2-5 points; compare like with like. A row missing a task "
                "has no mean (see 'tasks', e.g. 17/19); a group mean needs the whole group.")


def _write_text_atomic(path: Path, text: str) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(text)


def _patterns(values: list[str] | None) -> list[str]:
    return [p.strip() for v in values or [] for p in v.split(",") if p.strip()]


def select(df, benchmarks=None, backbones=None, methods=None, protocols=None):
    """Rows matching every given filter; each filter is a list of shell patterns (any may match).

    A method pattern matches the method-variant label (`ssf-lr0.01`) or the method (`ssf`).
    Adds the `label` column the tables use.
    """
    def match(column, patterns):
        values = df[column].dropna().unique()
        return df[column].isin([v for v in values if any(fnmatch.fnmatchcase(str(v), p) for p in patterns)])

    df = with_labels(df)
    keep = pd.Series(True, index=df.index)
    for column, patterns in (("benchmark", benchmarks), ("backbone", backbones), ("protocol", protocols)):
        if patterns:
            keep &= match(column, patterns)
    if methods:
        keep &= match("label", methods) | match("method", methods)
    return df[keep]


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 2)[2],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results_dirs", type=Path, nargs="+", metavar="RESULTS_DIR",
                    help="folder searched recursively for record.json files; several folders (sweeps) are read "
                         "together")
    ap.add_argument("--out", type=Path, default=None,
                    help="output folder (default: the first RESULTS_DIR's leaderboard/)")
    ap.add_argument("--benchmark", action="append", metavar="NAMES",
                    help="keep only these benchmarks: comma-separated shell patterns, e.g. vtab,fgvc "
                         "(benchmarks: mini, vtab, fgvc, cifar100, imagenet); repeatable")
    ap.add_argument("--backbone", action="append", metavar="PATTERNS",
                    help="keep only these backbones (record field `backbone`), e.g. 'vit_base*'; repeatable")
    ap.add_argument("--method", action="append", metavar="PATTERNS",
                    help="keep only these methods: matches the method (ssf) or the method-variant label "
                         "(ssf-lr0.01), e.g. 'full,ssf*'; repeatable")
    ap.add_argument("--protocol", action="append", metavar="NAMES",
                    help="keep only these protocols (val, paper); each protocol always gets its own tables")
    ap.add_argument("--average", choices=AVERAGES, default="both",
                    help="which VTAB/mini average the markdown, HTML, comparison and figures show: 'tasks' = "
                         "plain mean of the tasks (SSF paper), 'groups' = mean of the group means (NOAH, DyT), "
                         "'both' (default; figures then use 'tasks'). The CSVs always hold both")
    ap.add_argument("--metric", choices=METRICS, default="test_top1",
                    help="record field tabulated (default test_top1, the final epoch's test top-1). "
                         "test_top1_best_epoch_optimistic (paper protocol only) is the best epoch chosen on "
                         "the test set, as the SSF, NOAH and V-PETL papers selected: optimistic, "
                         "but like-for-like with their tables")
    ap.add_argument("--formats", default="csv,md,html,png,svg", metavar="LIST",
                    help=f"comma-separated outputs among {','.join(FORMATS)} (default csv,md,html,png,svg); "
                         "figures are drawn only if png, svg, pdf or html is asked for")
    ap.add_argument("--reference", type=Path, default=REFERENCE_DIR,
                    help="folder of published tables with their sources (default: results/reference in this project)")
    ap.add_argument("--no-published", action="store_true", help="skip the comparison with published results")
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                    help="processes drawing figures in parallel with the tables (default: 2, or 1 on a 1-core "
                         "machine: 1 draws them in this process, after the tables)")
    ap.add_argument("--ci", choices=stats.CI_METHODS, default="bootstrap",
                    help="intervals in every cell: 'bootstrap' (default) over test images, and over seeds where a "
                         "cell has several, from each run's predictions.npz; 'none' leaves them (and the "
                         "significance tables) out")
    ap.add_argument("--ci-level", type=float, default=stats.CIOptions.level, metavar="LEVEL",
                    help="confidence level of the intervals and of the tests (default 0.95)")
    ap.add_argument("--ci-seed", type=int, default=stats.CIOptions.seed, metavar="SEED",
                    help="seed of the resampling (default 0; recorded in the tables' notes: same seed, same tables)")
    ap.add_argument("--ci-resamples", type=int, default=stats.CIOptions.resamples, metavar="B",
                    help="bootstrap resamples per cell (default 1000)")
    ap.add_argument("--baseline", default=None, metavar="METHOD",
                    help="method label every other method is compared with on the same test images "
                         "(default: full where it ran, else each backbone's first method)")
    ap.add_argument("--budget", type=int, default=None, metavar="N",
                    help="the equal-budget leaderboard's number of trials n (default: the most every searched "
                         "method of a benchmark had)")
    ap.add_argument("--quiet", action="store_true", help="print only the summary line, not the markdown tables")
    ap.add_argument("--log-to", choices=("tensorboard", "wandb", "mlflow"), default=None,
                    help="also send the tables and figures to this experiment tracker, beside the runs "
                         "(docs/trackers.md); needs its extra, e.g. pip install -e '.[wandb]'")
    ap.add_argument("--redraw", action="store_true",
                    help="draw every figure, even those whose inputs are unchanged since OUT/.figures.json")
    args = ap.parse_args(argv)
    args.formats = tuple(f.strip() for f in args.formats.split(",") if f.strip())
    bad = [f for f in args.formats if f not in FORMATS]
    if bad:
        ap.error(f"unknown format(s) {bad}; choose from {', '.join(FORMATS)}")
    if not 0.5 <= args.ci_level < 1:
        ap.error(f"--ci-level {args.ci_level}: choose a level in [0.5, 1), e.g. 0.95")
    if args.ci_resamples < 100:
        ap.error(f"--ci-resamples {args.ci_resamples}: choose at least 100 (default 1000)")
    args.ci_opts = stats.CIOptions(args.ci, args.ci_level, args.ci_seed, args.ci_resamples)
    return args


def _warm_up() -> None:
    """Worker initializer where workers are spawned, not forked: import matplotlib and load its fonts."""
    from bench.analysis import plots

    plots.warm_up()


class Workers:
    """`jobs` figure-drawing processes, started at the first figure to draw rather than at start-up.

    A run whose figures are all unchanged starts none. This process imports matplotlib and loads its
    fonts (`plots.warm_up`) just before the workers fork, so they inherit both rather than each doing
    it (0.6 s of CPU apiece); and they fork with this process's objects frozen (`gc.freeze`, undone by
    `main` at the end; skipped when `freeze` is False, where the caller froze objects of its own), so neither
    their garbage collector nor this one walks the records, tables and matplotlib's objects again. Quacks like
    the executor.
    """

    def __init__(self, jobs: int, freeze: bool = True):
        self.jobs, self.freeze, self._pool = jobs, freeze, None

    def submit(self, fn, *args):
        if self._pool is not None:
            return self._pool.submit(fn, *args)
        fork = "fork" in multiprocessing.get_all_start_methods()
        if fork:  # what the workers inherit; a spawned worker warms up on its own
            from bench.analysis import plots

            plots.warm_up()
        ctx = multiprocessing.get_context("fork" if fork else None)
        self._pool = ProcessPoolExecutor(self.jobs, mp_context=ctx, initializer=None if fork else _warm_up)
        # The first submit forks every worker. Frozen, this process's objects (records, tables, the index)
        # are never traversed by the workers' garbage collector, which would otherwise walk them all in
        # each worker's full collections (and copy the pages it touches): a few tenths of a second each.
        if self.freeze:
            gc.freeze()
        return self._pool.submit(fn, *args)

    def shutdown(self, **kwargs) -> None:
        if self._pool is not None:
            self._pool.shutdown(**kwargs)


def start_workers(jobs: int, freeze: bool = True) -> Workers | None:
    """`jobs` figure-drawing processes (`Workers`; None for 1: draw in this one)."""
    return Workers(jobs, freeze) if jobs >= 2 else None


FIGURE_CACHE = ".figures.json"  # in OUT: figure name -> digest of what it was drawn from


class Outputs:
    """Writes the files of the requested formats and collects the HTML report alongside.

    Figures are the slow part (0.1-0.3 s each, a score of them). With a worker pool they are
    queued as soon as their table exists and drawn while the main process goes on with the tables.
    A figure whose inputs (its table, title and formats, and bench/analysis/plots.py itself) have not changed
    since it was last drawn into OUT is not drawn again: its files are read back (OUT/.figures.json
    keeps a digest of each figure's inputs; --redraw ignores it).
    """

    def __init__(self, out: Path, formats: tuple[str, ...], quiet: bool, pool: "Workers | None" = None,
                 redraw: bool = False):
        self.out, self.formats, self.quiet, self.pool = out, formats, quiet, pool
        self.image_formats = tuple(f for f in formats if f in ("png", "svg", "pdf"))
        self.figures = bool(self.image_formats) or "html" in formats
        self.report = Report("PEFT benchmark results")
        self.pending: list[tuple[str, object]] = []
        self.started: dict[str, tuple[str, object]] = {}  # figures `early` queued: name -> (digest, future)
        self._writer: ThreadPoolExecutor | None = None  # one thread: the files are written in order
        self.writes: list = []  # their futures
        self.images: dict[str, dict] = {}
        self.failed: list[str] = []
        self.digests: dict[str, str] = {}
        try:
            self.drawn = {} if redraw else json.loads((out / FIGURE_CACHE).read_text())
        except (OSError, ValueError):
            self.drawn = {}

    def _write(self, path: Path, text: str) -> None:
        """Write `path` atomically in the writer thread: its fsync waits on the disk, not this process
        (150 of them, half a second of a first run's wall time). `finish` waits for every write."""
        if self._writer is None:
            self._writer = ThreadPoolExecutor(1)
        self.writes.append(self._writer.submit(_write_text_atomic, path, text))

    def frame(self, name: str, df, index: bool = True) -> None:
        if "csv" in self.formats:
            self._write(self.out / f"{name}.csv", df.to_csv(index=index))

    def table(self, name: str, title: str, header, rows, bold=frozenset(), notes: list[str] = (),
              echo: bool = False, empty: str = "Nothing to show.") -> None:
        """Markdown file, echo and report section; a table without rows is `empty`, one sentence, not headers only."""
        md = markdown(header, rows, bold) if rows else empty
        if "md" in self.formats:
            text = f"# {title}\n\n" + "".join(f"{n}\n\n" for n in notes) + md + "\n"
            self._write(self.out / f"{name}.md", text)
        if echo and not self.quiet:
            print(f"\n## {title}\n\n{md}")
        self.report.heading(title, 3)
        if not rows:
            self.report.note(empty)
            return
        for n in notes:
            self.report.note(n)
        self.report.table(header, rows, bold)

    def _job(self, name: str, kind: str, args: tuple) -> tuple[tuple, str | None, list[Path]]:
        """(the `render` call, the digest of its inputs (None: not kept), the files it writes)."""
        # The report embeds a PNG, or an SVG when only that was asked for; render one for it if needed.
        extra = ("png",) if "html" in self.formats and not {"png", "svg"} & set(self.image_formats) else ()
        job = (kind, args, self.out / name, self.image_formats + extra, self.image_formats)
        digest = _digest(job[:2] + job[3:]) if not extra else None
        return job, digest, [self.out / f"{name}.{f}" for f in self.image_formats]

    def _unchanged(self, name: str, digest: str | None, files: list[Path]) -> bool:
        return digest is not None and self.drawn.get(name) == digest and all(f.is_file() for f in files)

    def early(self, name: str, kind: str, args: tuple) -> None:
        """Start drawing figure `name` in a worker now, before its place in the report: `figure` with the same
        inputs takes it there. The workers draw while this process computes the statistics, not after."""
        from bench.analysis.plots import render

        if self.pool is None or not self.figures:
            return
        job, digest, files = self._job(name, kind, args)
        if digest is not None and not self._unchanged(name, digest, files):
            self.started[name] = (digest, self.pool.submit(render, *job))

    def figure(self, name: str, kind: str, args: tuple, caption: str) -> None:
        """Draw `plots.<kind>(*args)` as OUT/name.<format>, now or in a worker; the report gets it either way."""
        from bench.analysis.plots import render

        job, digest, files = self._job(name, kind, args)
        early_digest, early_future = self.started.pop(name, (None, None))
        if early_digest is not None and early_digest != digest:  # other inputs since: let it end before redrawing
            _settle(early_future)
            early_future = None
        if self._unchanged(name, digest, files):
            self.images[name] = {f.suffix[1:]: f.read_bytes() for f in files}  # unchanged: read back, not drawn
            self.digests[name] = digest
        elif early_future is not None:  # `early` started it from these inputs
            self.digests[name] = digest
            self.pending.append((name, early_future))
        elif self.pool is None:
            self.digests[name] = digest
            self.images[name] = self._result(name, lambda: render(*job))
        else:
            self.digests[name] = digest
            self.pending.append((name, self.pool.submit(render, *job)))
        self.report.figure(lambda: self.images.get(name, {}), caption)

    def _result(self, name: str, get) -> dict:
        try:
            return get()
        except Exception as e:  # a figure that cannot be drawn must not cost the tables
            self.failed.append(f"{name}: {type(e).__name__}: {e}")
            return {}

    def finish(self) -> None:
        """Collect the figures from the workers, write the report and the digests of what was drawn."""
        for _, future in self.started.values():  # started early and never placed (none, as analyze.py runs)
            _settle(future)
        for name, future in self.pending:
            self.images[name] = self._result(name, future.result)
        if self.pool is not None:
            self.pool.shutdown()
        if self._writer is not None:
            self._writer.shutdown()
            for w in self.writes:
                w.result()  # a write that failed (a full disk) fails here
        if "html" in self.formats:
            _write_text_atomic(self.out / "report.html", self.report.render())
        drawn = {n: d for n, d in self.digests.items() if d is not None and self.images.get(n)}
        if drawn != self.drawn:
            _write_text_atomic(self.out / FIGURE_CACHE, json.dumps(drawn, indent=0, sort_keys=True))
        for f in self.failed:
            print(f"warning: figure not drawn: {f}", file=sys.stderr)


def _settle(future) -> None:
    """Cancel a figure's job, or wait for it to end (its files written, whatever it raised)."""
    if not future.cancel():
        future.exception()


@functools.lru_cache(maxsize=1)
def _plots_code() -> bytes:
    return (Path(__file__).resolve().parent / "plots.py").read_bytes()


def _digest(job: tuple) -> str:
    """What a figure is drawn from (kind, its data, its formats) and the drawing code, as one digest."""
    return hashlib.sha256(_plots_code() + pickle.dumps(job, protocol=4)).hexdigest()


def _archs(df) -> dict[str, str]:
    """backbone -> its timm arch (the most frequent, should a name have been reused)."""
    if "backbone_arch" not in df:
        return {}
    arch = df.dropna(subset=["backbone_arch"]).groupby("backbone")["backbone_arch"]
    return {b: s.value_counts().index[0] for b, s in arch}


def _recipes(df) -> dict[tuple[str, str], str]:
    """(backbone, label) -> the recipe(s) its records ran, '/'-joined ("" where no record says)."""
    if "recipe" not in df:
        return {}
    done = with_labels(df).dropna(subset=["recipe"])
    return {k: "/".join(sorted(set(v))) for k, v in done.groupby(["backbone", "label"])["recipe"]}


def _data(df) -> dict[tuple[str, str], str]:
    """(backbone, label) -> the data pipeline(s) its records read (bench.analysis.published.data_pipeline), '/'-joined."""
    if "data" not in df:
        return {}
    d = with_labels(df)
    bench = d["benchmark"] if "benchmark" in d else pd.Series("", index=d.index)
    pipes = pd.Series([data_pipeline(x, b) for x, b in zip(d["data"], bench)], index=d.index, dtype=object)
    return {k: "/".join(sorted(set(v))) for k, v in pipes.dropna().groupby([d["backbone"], d["label"]])}


def _cells_frame(cells, marks, ci: stats.TableStats):
    """Long per-cell CSV: mean, std, seeds, interval of completed cells plus the status of cells without a value."""
    keys = list(cells.index)
    done = cells.reset_index().assign(
        status="completed", ci_low=[ci.intervals.get(k, (math.nan,))[0] for k in keys],
        ci_high=[ci.intervals.get(k, (math.nan, math.nan))[1] for k in keys],
        no_interval=[ci.reasons.get(k, "") for k in keys])
    missing = pd.DataFrame([{"backbone": b, "method": m, "dataset": d, "status": s}
                            for (b, m, d), s in marks.items()], columns=["backbone", "method", "dataset", "status"])
    return pd.concat([done, missing], ignore_index=True) if len(missing) else done


def _delta_args(table, title: str, args) -> tuple:
    return table, f"{title}: minus full fine-tuning", "full", args.average


def leaderboards(df, protocol: str, published: dict, archs: dict, args, out: Outputs,
                 store: stats.Predictions | None = None) -> None:
    """Every table of one protocol: leaderboards, cells, significance, published comparison, robustness, figures."""
    store = store or stats.Predictions()
    out.report.heading(f"{protocol} protocol")
    for spec in table_specs(list(df["benchmark"].unique())):
        recs = df[df["benchmark"].isin(spec.benchmarks)]
        stem = f"{spec.name}_{protocol}"
        unknown = sorted(set(recs["dataset"]) - set(spec.tasks)) if spec.tasks else []
        if unknown:  # a dataset name the papers' table does not have: say so rather than drop it silently
            print(f"warning: {stem}: records of datasets outside the table ignored: {', '.join(unknown)}",
                  file=sys.stderr)
        title = f"{spec.name} ({protocol} protocol), {args.metric} %"
        cells, marks = cell_stats(recs, args.metric), status_cells(recs)
        table = leaderboard(recs, list(spec.tasks) or None, spec.groups, args.metric, spec.mean, cells)
        if spec.mean and len(table.attrs["tasks"]) > 1:  # drawn from the table alone: while the statistics run
            out.early(f"delta_to_full_{stem}", "delta_heatmap", _delta_args(table, title, args))
        ci = cached_table_stats(out.out, stem, table, with_labels(recs), spec.groups, args, store)
        out.frame(f"leaderboard_{stem}", with_intervals(table, ci.intervals) if args.ci != "none" else table)
        out.frame(f"cells_{stem}", _cells_frame(cells, marks, ci), index=False)
        notes = [AVERAGE_NOTE] if spec.groups else []
        notes.append("Cells: mean ± std over seeds (number of seeds), or mean [low, high] (seeds) where the runs' "
                     "predictions give an interval. n/a: method unsupported on this backbone; failed: every run "
                     "failed (see the status table).")
        notes += _interval_notes(ci, args)
        pipelines = {}
        for (b, lab), pipe in sorted(_data(recs).items()):
            pipelines.setdefault(pipe, []).append(f"{lab} ({b})")
        if pipelines:  # which pixels each row read; runs of one task on other data have rows of their own
            notes.append("Data: " + "; ".join(f"{p}: {', '.join(rows)}" for p, rows in sorted(pipelines.items()))
                         + ". A label ending in [data <version>] holds the runs of one data version where a task "
                         "was run on several (other images, labels or bytes).")
        notes += config_notes(with_labels(recs))  # a label ending in [config <hash>]: which settings differ
        out.table(f"leaderboard_{stem}", title,
                  *table_rows(table, marks, cells, args.average, ci.intervals, ci.marks), notes=notes, echo=True)
        significance_tables(table, ci, spec, stem, args, out)

        pub_table = None
        if spec.name in published:
            pub = published[spec.name]
            pub_table = published_leaderboard(pub, list(spec.tasks), spec.groups)
            long = compare(table, pub, pub_table, archs, _recipes(recs), _data(recs), ci.intervals)
            out.frame(f"published_{stem}", long, index=False)
            checkpoints = [f"{row}: {pub.at[row, 'checkpoint'] or 'not stated'}"
                           + (f" ({pub.at[row, 'timm_arch']})" if pub.at[row, 'timm_arch'] else "")
                           + f", recipe {pub.at[row, 'recipe'] or 'not stated'}, data {pub.at[row, 'data'] or 'not stated'}"
                           + f", {pub.at[row, 'selection'] or ''}"
                           for row in pub.index]
            out.table(f"published_{stem}", f"{spec.name}: ours ({protocol} protocol, {args.metric}) vs published",
                      *comparison_rows(long, pub_table, args.average),
                      notes=["Each cell: ours / published (ours minus published). Published rows are ViT-B/16 "
                             "pre-trained on ImageNet-21k, but not all on the same weights: 'same checkpoint' says "
                             "whether our backbone's timm tag is the row's, 'same recipe' whether our runs used the "
                             "recipe the row was trained with (docs/recipes.md), 'same data' whether our runs read "
                             "the row's pixels (tfds: TFDS tensors or lossless PNG of them; noah_jpeg: NOAH's "
                             "JPEGs at quality 75, about 10 points lower on CIFAR-100; official_jpeg: the FGVC "
                             "files). † marks ours where the checkpoint or recipe differs or is not known, or the data "
                             "differs: that difference is not the method's alone. ≈: the published value lies inside "
                             f"our {args.ci_level:.0%} interval (within noise); ≠: outside it (docs/statistics.md: Reading "
                             "differences); 'within noise' counts the cells that have an interval. A one-seed cell's "
                             "interval covers its test images only: ≠ there says the published number is not this "
                             "run's, and another seed could land nearer; with several seeds it is the method's. "
                             "Published numbers: results/reference "
                             "(sources there). Derived columns are computed from the published cells; ᵈ marks a published "
                             "average computed from the cells: each row prints one average (published_rows.csv "
                             "`average`: the SSF paper's rows the 19-task mean, Adapter+ the mean of the group means), "
                             "only ever set beside the same average of ours. SSF and NOAH "
                             "picked the best epoch on the test set (--metric test_top1_best_epoch_optimistic "
                             "reproduces that selection); VPT's rows are final-epoch test after a val grid.",
                             "Published checkpoints, recipes and selection: " + "; ".join(checkpoints)])
        if out.figures:
            cols = [mean_columns(table, args.average)[0]] if spec.mean else list(table.attrs["tasks"])
            flagged = []
            if pub_table is not None and len(long):
                bad = long[long["like_for_like"] == False]  # noqa: E712 (None: no partner)
                flagged = sorted(set(zip(bad["backbone"], bad["method"])))  # sorted: the figure's digest is stable
            out.figure(f"accuracy_vs_params_{stem}", "accuracy_vs_params", (table, title, pub_table, cols,
                                                                            "tunable_params_no_head", flagged),
                       f"{spec.name}, {protocol} protocol: accuracy against tunable parameters without the head "
                       "(symlog). Filled: ours; hollow: published; †: ours with another recipe, checkpoint "
                       "or data pipeline than the published row of its method.")
            if spec.mean and len(table.attrs["tasks"]) > 1:
                out.figure(f"delta_to_full_{stem}", "delta_heatmap", _delta_args(table, title, args),
                           f"{spec.name}, {protocol} protocol: difference to full fine-tuning of the same backbone, "
                           "per task and average (points).")

    shot_tables(df, protocol, args, out, store)
    if (df["benchmark"] == "imagenet").any():
        rob = with_labels(robustness_records(df, args.metric))
        table = leaderboard(rob, ["imagenet/imagenet", *ROBUSTNESS], metric="value", mean=False)
        # intervals and comparisons from each target's per-image arrays, as for a test split (few runs: not cached)
        ci = stats.table_stats(table, rob, "value", args.ci_opts, store, args.baseline)
        out.frame(f"robustness_{protocol}", with_intervals(table, ci.intervals) if args.ci != "none" else table)
        header, rows, bold = table_rows(table, status_cells(rob), cell_stats(rob, "value"), intervals=ci.intervals,
                                        signs=ci.marks)
        header[2:6] = ["ImageNet top-1", "ImageNet-A top-1", "ImageNet-R top-1", "ImageNet-C mCE (lower is better)"]
        out.table(f"robustness_{protocol}", f"Robustness ({protocol} protocol): models fine-tuned on ImageNet-1k",
                  header, rows, bold, notes=["— where the record has no robustness evaluation. Intervals and ▲/▼ "
                                             "from each target's per-image predictions (pred__<target> in "
                                             "predictions.npz), as for a test split.", *_interval_notes(ci, args)],
                  echo=True)
        significance_tables(table, ci, TargetTable("Robustness"), f"robustness_{protocol}", args, out)


@dataclass(frozen=True)
class TargetTable:
    """What `significance_tables` needs of a table that is no benchmark's (robustness, domain shift): its name."""
    name: str


STATS_CACHE = ".stats"  # in OUT: one JSON file per table, its statistics and the digest of what they came from


def _stat(path: str, name) -> tuple:
    if not isinstance(name, str):
        return ()
    try:
        st = os.stat(os.path.join(os.path.dirname(path), name))
    except OSError:
        return (name,)
    return name, st.st_mtime_ns, st.st_size


def cached_table_stats(out_dir: Path, stem: str, table, recs, groups, args, store) -> stats.TableStats:
    """`stats.table_stats`, or its result from OUT/.stats/<stem>.json when nothing it reads has changed.

    Reading every run's predictions and resampling is most of what intervals cost: with 10,000 runs
    on full-size test sets the files alone take seconds. The digest covers the options, the code of
    bench/analysis/stats.py, the table and every record field the statistics read, and each predictions
    file's size and modification time; any change recomputes the table's statistics. The cache is
    JSON (bench/analysis/stats_cache.py), never unpickled: the folder may be someone else's. A file
    that is not such a cache is ignored, recomputed over, and named in one warning per analyze.py.
    """
    if args.ci == "none":
        return stats.TableStats(ranks=stats.ranks_with_improvement(table, recs, args.metric, args.ci_opts.alpha))
    fields = [c for c in ("path", "label", "seed", "status", "test_fingerprint", "predictions_complete", args.metric)
              if c in recs]
    runs = recs[fields].astype(str).to_numpy().tolist()
    names = recs["predictions"] if "predictions" in recs else [None] * len(recs)
    files = [_stat(p, n) for p, n in zip(recs["path"], names)]
    digest = hashlib.sha256(_stats_code() + pickle.dumps(  # pickled to hash only: never read back
        (args.ci_opts, args.baseline, args.metric, groups, table.to_csv(), runs, files), protocol=4)).hexdigest()
    path = out_dir / STATS_CACHE / f"{stem}.json"
    try:
        ci = stats_cache.loads(path.read_bytes(), digest)
        if ci is not None:
            return ci
    except OSError:  # none yet
        pass
    except stats_cache.CacheError as e:
        if not getattr(args, "cache_warned", False):
            args.cache_warned = True
            print(f"warning: {path}: not a statistics cache of this program ({e}); ignored, statistics "
                  f"recomputed", file=sys.stderr)
    ci = stats.table_stats(table, recs, args.metric, args.ci_opts, store, args.baseline, groups)
    ci.ranks = stats.ranks_with_improvement(table, recs, args.metric, args.ci_opts.alpha)
    ci.cells = {}  # the per-image vectors: not needed past this point, and large
    try:
        text = stats_cache.dumps(digest, ci)
    except TypeError:  # something the cache does not keep (a stats.py change): computed each time
        return ci
    with atomic_file(path) as tmp:
        tmp.write_text(text)
    return ci


@functools.lru_cache(maxsize=1)
def _stats_code() -> bytes:
    return (Path(__file__).resolve().parent / "stats.py").read_bytes()


def _interval_notes(ci: stats.TableStats, args) -> list[str]:
    """The leaderboard's notes on intervals: how they were drawn, the markers' legend, cells without one."""
    if args.ci == "none":
        return [args.ci_opts.note()]
    notes = [args.ci_opts.note()]
    if ci.baselines:
        base = ", ".join(f"{lab} ({b})" for b, lab in ci.baselines.items())
        notes.append(f"▲ / ▼: significantly above / below the baseline ({base}) on the same test images "
                     f"(Holm-adjusted over the tasks, level {args.ci_opts.alpha:g}; see the significance table). "
                     "With one seed on each side the test compares the two trained runs, not the methods: "
                     "another seed could reverse it.")
    few = sorted({r["verdict"].split(" (")[0] for r in ci.significance if r["verdict"].startswith("too few seeds")})
    if few:
        notes.append(f"No verdict where one side has one seed and the other several ({', '.join(few)}): "
                     f"a test of methods needs {stats.MIN_SEEDS} seeds or more on each side (significance table).")
    if stats.NOT_COMPARABLE in ci.marks.values():
        notes.append(f"{stats.NOT_COMPARABLE}: scored on other test images than the baseline (a different "
                     "test_fingerprint): no comparison, no verdict (docs/statistics.md).")
    if ci.reasons:
        by_reason: dict[str, list[str]] = {}
        for (b, m, d), why in sorted(ci.reasons.items()):
            by_reason.setdefault(why, []).append(f"{m} {short_name(d)}" + (f" ({b})" if len(ci.baselines) > 1 else ""))
        notes.append("Without an interval (mean only): " + "; ".join(
            f"{why}: {', '.join(cells[:8])}" + (f" and {len(cells) - 8} more" if len(cells) > 8 else "")
            for why, cells in by_reason.items()) + ".")
    return notes


SIGNIFICANCE_COLUMNS = ["backbone", "method", "baseline", "dataset", "diff", "ci_low", "ci_high", "p_value",
                        "p_adjusted", "verdict", "n_images", "seeds", "compares", "paired", "test"]
SIGNIFICANCE_NOTE = (
    "diff: method minus baseline (points). compares: 'runs' where each side has one seed (the exact McNemar test on "
    "the images the two runs score differently, interval from the paired bootstrap: these two trained models on "
    "these test images; another seed could reverse it), 'methods' where each side has {min_seeds} seeds or more "
    "(a Welch t test on the mean over seeds: the between-seed variance of each side, divisor S-1, plus the test "
    "images' paired share, Welch-Satterthwaite degrees of freedom). One seed on one side and several on the "
    "other: no test ('too few seeds'). Runs scored on different test images (test_fingerprint) are not compared: "
    "'not comparable', no verdict. p is Holm-adjusted over the tested tasks of this benchmark for each method; "
    "the averages are tested alone, over the tasks' images and seeds. Verdict at level {alpha:g}: better / worse "
    "/ not distinguishable.")


def _p(p: float) -> str:
    return "—" if p != p else "<1e-6" if p < 1e-6 else f"{p:.2g}" if p < 0.01 else f"{p:.3f}"


def significance_tables(table, ci: stats.TableStats, spec, stem: str, args, out: Outputs) -> None:
    """Paired comparisons against the baseline, the noise table, ranks across tasks and the CD diagram."""
    level = f"{args.ci_level:.0%}"
    if ci.significance:
        sig = pd.DataFrame(ci.significance).reindex(columns=SIGNIFICANCE_COLUMNS)
        out.frame(f"significance_{stem}", sig, index=False)
        header = ["backbone", "method", "baseline", "dataset", "diff", f"{level} interval", "p", "p (Holm)",
                  "verdict", "images", "seeds", "compares", "paired"]
        rows = [[r["backbone"], r["method"], r["baseline"], short_name(r["dataset"]), f"{r['diff']:+.1f}",
                 "—" if r["ci_low"] != r["ci_low"] else f"[{r['ci_low']:+.1f}, {r['ci_high']:+.1f}]",
                 _p(r["p_value"]), _p(r["p_adjusted"]), r["verdict"],
                 "—" if r["n_images"] is None or r["n_images"] != r["n_images"] else f"{int(r['n_images']):,}",
                 r["seeds"] if isinstance(r["seeds"], str) and r["seeds"] else "—",
                 r["compares"] if isinstance(r["compares"], str) and r["compares"] else "—", r["paired"]]
                for r in sig.to_dict("records")]
        out.table(f"significance_{stem}", f"{spec.name}: each method minus the baseline, same test images", header,
                  rows, echo=True, notes=[SIGNIFICANCE_NOTE.format(min_seeds=stats.MIN_SEEDS, alpha=args.ci_opts.alpha),
                                          args.ci_opts.note()])
    elif args.ci != "none":
        out.report.heading(f"{spec.name}: each method minus the baseline", 3)
        out.report.note("No comparison: no backbone has a baseline and another method with a value.")
    if ci.noise:
        noise = pd.DataFrame(ci.noise)
        out.frame(f"noise_{stem}", noise, index=False)
        out.table(f"noise_{stem}", f"{spec.name}: how large a difference these runs can resolve",
                  ["dataset", "test images", "seeds", f"{level} interval half-width (median)",
                   "discordant images (median)", f"smallest difference detected with {stats.POWER:.0%} power"],
                  [[short_name(r["dataset"]), f"{r['n_images']:,}", str(r["seeds"]), f"±{r['half_width']:.1f}",
                    "—" if r["discordance"] != r["discordance"] else f"{100 * r['discordance']:.1f} %",
                    "—" if r["detectable_diff"] != r["detectable_diff"] else f"{r['detectable_diff']:.1f} points"]
                   for r in ci.noise],
                  notes=["Half-width: median over the task's cells. Smallest detectable difference: simulated exact "
                         f"McNemar tests at level {args.ci_opts.alpha:g} on this many images, with the share of "
                         "images two methods score differently as observed against the baseline (median); a true "
                         f"gap below it is missed in more than {1 - stats.POWER:.0%} of comparisons. More test "
                         "images lower it; more seeds narrow the seed-to-seed part of the intervals. It is the runs' "
                         "test (one seed a side); a test of methods over a few seeds also carries the between-seed "
                         "spread, and resolves less."])
    ranked = ci.ranks or []
    for r in ranked:
        suffix = f"_{r['backbone']}" if len(ranked) > 1 else ""
        order = np.argsort(r["ranks"], kind="stable")
        frame = pd.DataFrame({"backbone": r["backbone"], "method": [r["methods"][i] for i in order],
                              "average_rank": r["ranks"][order], "friedman_chi2": r["friedman"],
                              "friedman_p": r["p_value"], "nemenyi_cd": r["cd"], "tasks": len(r["tasks"])})
        out.frame(f"ranks_{stem}{suffix}", frame, index=False)
        out.table(f"ranks_{stem}{suffix}", f"{spec.name} ({r['backbone']}): average rank over {len(r['tasks'])} tasks",
                  ["method", "average rank (1 = best)"],
                  [[m, f"{v:.2f}"] for m, v in zip(frame["method"], frame["average_rank"])],
                  notes=[f"Friedman test over the tasks: chi² = {r['friedman']:.2f}, p = {_p(r['p_value'])} "
                         f"({len(r['methods'])} methods with every task). Nemenyi critical difference at level "
                         f"{args.ci_opts.alpha:g}: {r['cd']:.2f} ranks; methods whose average ranks differ by less "
                         "are not distinguishable across these tasks (Demšar 2006)."])
        imp = r["improvement"]
        out.frame(f"improvement_{stem}{suffix}", imp.rename_axis("method"))
        out.table(f"improvement_{stem}{suffix}", f"{spec.name} ({r['backbone']}): P(row method > column method)",
                  ["method", *imp.columns], [[a, *[fmt_value(v * 100, 0) + ("" if v != v else " %") for v in row]]
                                             for a, row in zip(imp.index, imp.to_numpy())],
                  notes=["Probability of improvement (Agarwal et al. 2021): per task, the share of seed pairs in "
                         "which the row's run beats the column's (ties half), averaged over the tasks."])
        if out.figures:
            scores = pd.DataFrame(r["scores"], index=r["tasks"], columns=r["methods"])
            out.figure(f"critical_difference_{stem}{suffix}", "cd_diagram",
                       (scores, f"{spec.name} ({r['backbone']}): average ranks over {len(r['tasks'])} tasks",
                        r["cd"], args.ci_opts.alpha),
                       f"{spec.name}, {r['backbone']}: critical-difference diagram. Average rank per method (1 = "
                       "best); methods joined by a bar are not distinguishable by the Nemenyi test "
                       f"(CD = {r['cd']:.2f}).")


def shot_tables(df, protocol: str, args, out: Outputs, store: stats.Predictions | None = None) -> None:
    """Few-shot (dataset x shots), domain generalisation (source and targets) and many-shot curves, where records have them."""
    fs = shots.fewshot_long(df, args.metric)
    if len(fs):
        out.frame(f"fewshot_{protocol}", fs, index=False)
        out.table(f"fewshot_{protocol}", f"Few-shot ({protocol} protocol), {args.metric} %", *shots.fewshot_rows(fs),
                  notes=["Cells: mean ± std over NOAH's list seeds and run seeds (runs). Published NOAH few-shot "
                         "numbers are not shown: NOAH gives them as figures, and no table of them is shipped in "
                         "results/reference."], echo=True)
        if out.figures:
            out.figure(f"fewshot_{protocol}", "accuracy_vs_shots", (fs, f"Few-shot ({protocol} protocol)"),
                       "Few-shot: top-1 against shots per class, mean and one std over list seeds.")
    dg = shots.domain_long(df, args.metric)
    if len(dg):
        # intervals and comparisons from each target's per-image arrays, as for a test split (few runs: not cached)
        dom = shots.domain_records(df, args.metric)
        table = leaderboard(dom, ["source", *shots.DOMAIN], metric="value", mean=False)
        ci = stats.table_stats(table, dom, "value", args.ci_opts, store or stats.Predictions(), args.baseline)
        rows = list(zip(dg["backbone"], dg["row"]))
        for c in ("source", *shots.DOMAIN):
            bounds = [ci.intervals.get((b, r, c), (math.nan, math.nan)) for b, r in rows]
            dg[f"{c}_ci_low"], dg[f"{c}_ci_high"] = [lo for lo, _ in bounds], [hi for _, hi in bounds]
        out.frame(f"domain_generalization_{protocol}", dg, index=False)
        out.table(f"domain_generalization_{protocol}", f"Domain generalisation ({protocol} protocol), top-1 %",
                  *shots.domain_rows(dg, ci.intervals, ci.marks),
                  notes=["Trained on the source (NOAH: ImageNet, 16 shots per class), scored on each target; means "
                         "over runs. -A and -R: arg-max over their 200 classes (as the robustness evaluation); the "
                         "1000-way columns take it over all 1,000, as NOAH's code scores them. Mean of targets: the "
                         "four 200/1000-class columns. Intervals and ▲/▼ (source and each target) from the per-image "
                         "predictions (pred__<target> in predictions.npz), each run (list seed and run seed) one "
                         "seed.", *_interval_notes(ci, args)], echo=True)
        significance_tables(table, ci, TargetTable("Domain generalisation"), f"domain_generalization_{protocol}",
                            args, out)
    ms = shots.manyshot_long(df, args.metric)
    if len(ms):
        out.frame(f"manyshot_{protocol}", ms, index=False)
        out.table(f"manyshot_{protocol}", f"Many-shot ({protocol} protocol), {args.metric} %", *shots.manyshot_rows(ms),
                  notes=["Columns: training images (a stratified subset, dataset.train_subset) and the whole split; "
                         "mean ± std over subset and run seeds (runs)."], echo=True)
        if out.figures:
            out.figure(f"manyshot_{protocol}", "manyshot_curve", (ms, f"Many-shot ({protocol} protocol)"),
                       "Many-shot: top-1 against training images (the whole split in the table only).")


def budget_tables(args, out: Outputs) -> None:
    """Budgeted searches (bench/analysis/budget.py): curves, the leaderboard at equal budget, tuning cost."""
    from bench.analysis import budget

    trials = pd.concat([budget.load_trials(d) for d in args.results_dirs], ignore_index=True)
    if trials.empty:
        return
    match = lambda values, patterns: np.array([any(fnmatch.fnmatchcase(str(v), q) for q in patterns) for v in values],
                                              dtype=bool)
    for column, patterns in (("benchmark", args.benchmark), ("backbone", args.backbone), ("protocol", args.protocol)):
        if _patterns(patterns):
            trials = trials[match(trials[column], _patterns(patterns))]
    if _patterns(args.method):  # the label (ssf-lr0.01_search4) or the method (ssf)
        methods = trials["label"].str.split("-", n=1).str[0]
        trials = trials[match(trials["label"], _patterns(args.method)) | match(methods, _patterns(args.method))]
    if trials.empty:
        return
    curves = budget.budget_curves(trials, args.ci_resamples, args.ci_seed, args.ci_level)
    cost = budget.tuning_cost(trials)
    out.report.heading("Tuning budget")
    level = f"{args.ci_level:.0%}"
    out.frame("budget_curves", curves, index=False)
    out.table("budget_curves", "Accuracy as a function of the number of trials", *budget.budget_rows(curves, cost),
              notes=["Expected best val top-1 over n trials drawn with replacement from a search's K (Dodge et al. "
                     "2019), and the expected test top-1 (of the val run) of the trial that n trials select; mean "
                     f"over the benchmark's tasks, {level} bootstrap bands over the trials (seed {args.ci_seed}). "
                     "Tuning device-seconds: every trial's fit_time_s x devices, summed over all K trials and tasks "
                     "(docs/recipes.md)."], echo=True)
    if out.figures and not curves.empty:
        out.figure("budget_curves", "budget_curves", (curves, "Accuracy against the tuning budget"),
                   "Per method: the expected test top-1 of the configuration selected among n trials (solid, with "
                   f"its {level} band) and the expected best val top-1 (dashed); one panel per benchmark mean.")
    if not curves.empty:
        reach = curves.groupby(["backbone", "benchmark", "protocol", "label"])["n"].max()
        n = args.budget or int(reach.groupby(level=[0, 1, 2]).min().min())
        board = budget.at_budget(curves, n)
        out.frame("budget_at_n", board, index=False)
        header, rows = budget.budget_rows(board, cost)
        out.table("budget_at_n", f"Leaderboard at equal budget: n = {n} trials per method", header, rows,
                  notes=["Every method given the same number of trials n; methods searched with fewer have no row."],
                  echo=True, empty=f"No method was searched with {n} trials.")
    out.frame("tuning_cost", cost, index=False)
    out.table("tuning_cost", "Tuning cost per method and task", *budget.cost_rows(cost),
              notes=["device-s: fit_time_s (training and per-epoch val evaluation, to the final score) x devices, "
                     "summed over the trials; GPU-seconds on a GPU, else CPU process-seconds. Train images: the "
                     "training images the trials processed. Dataset 'all': the method's total."])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.log_to:  # a missing client library stops here, before the analysis
        from bench.config import ConfigError
        from bench.trackers import settings

        try:
            settings({args.log_to: {}})
        except ConfigError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    missing = [d for d in args.results_dirs if not d.is_dir()]
    if missing:
        print(f"error: results folder {', '.join(map(str, missing))} does not exist", file=sys.stderr)
        return 2
    draws = any(f in args.formats for f in ("png", "svg", "pdf", "html"))
    # This function freezes objects only where nothing is frozen yet (analyze.py's own process): `gc.unfreeze`
    # cannot tell its objects from a caller's, so a caller that froze its own (the test workers) keeps them
    # frozen, and the analysis's objects stay collectable there.
    freeze = gc.get_freeze_count() == 0
    pool = start_workers(args.jobs, freeze) if draws else None
    # The statistics make hundreds of thousands of short-lived containers: young collections every 50,000
    # allocations rather than 700 (a tenth of a second less on 10,000 records); restored on the way out.
    threshold = gc.get_threshold()
    gc.set_threshold(50_000, *threshold[1:])
    try:
        return run(args, pool, freeze)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        gc.set_threshold(*threshold)
        if freeze:
            gc.unfreeze()  # what `run` and the workers froze: collectable again by a caller that goes on


def run(args, pool, freeze: bool = True) -> int:
    """Load, select, tabulate, draw and report (main() handles the workers' lifetime and the collector: `freeze`
    says whether this process's objects may be frozen)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = [load_summaries(d) for d in args.results_dirs]
    df = pd.concat([f for f, _ in loaded], ignore_index=True) if len(loaded) > 1 else loaded[0][0]
    # The records live to the end: frozen, the collector's full passes no longer walk their objects
    # (10,000 records: about 0.2 s of the statistics' CPU). `main` unfreezes them.
    if freeze:
        gc.freeze()
    problems = [p for _, ps in loaded for p in ps]
    where = ", ".join(map(str, args.results_dirs))
    for w in caught[:20]:
        print(f"warning: {w.message}", file=sys.stderr)
    if len(caught) > 20:
        print(f"warning: ... and {len(caught) - 20} more skipped records", file=sys.stderr)
    if df.empty:
        print(f"error: no readable record.json under {where}"
              + (f" ({len(problems)} unreadable)" if problems else ""), file=sys.stderr)
        return 2
    n_all = len(df)
    df = select(df, _patterns(args.benchmark), _patterns(args.backbone), _patterns(args.method),
                _patterns(args.protocol))
    if df.empty:
        print(f"error: none of the {n_all} records under {where} matches the filters", file=sys.stderr)
        return 2
    out_dir = args.out or args.results_dirs[0] / "leaderboard"
    out_dir.mkdir(parents=True, exist_ok=True)
    out = Outputs(out_dir, args.formats, args.quiet, pool, args.redraw)
    counts = df["status"].value_counts().to_dict()
    summary = (f"{len(df)} records ({', '.join(f'{v} {k}' for k, v in counts.items())}); "
               f"{len(problems)} unreadable skipped" + (f"; {n_all - len(df)} filtered out" if n_all > len(df) else ""))
    print(summary)
    if out.figures:  # the cost figure needs the records alone: drawn while the statistics run
        cost_figure = (cost_table(df, by=("protocol", "backbone")), "Cost per method and backbone")
        out.early("cost", "cost_figure", cost_figure)

    published = {}
    if not args.no_published:
        try:
            published = load_published(args.reference)
        except (OSError, ValueError) as e:
            print(f"warning: published tables not used: {e}", file=sys.stderr)
    archs = _archs(df)
    if args.baseline is not None and args.baseline not in set(df["label"]):
        print(f"error: --baseline {args.baseline}: no such method among the selected records; choose from "
              f"{', '.join(sorted(set(df['label'])))}", file=sys.stderr)
        return 2
    store = stats.Predictions(args.results_dirs)  # each folder's index of prediction summaries, kept up to date

    out.report.heading("Summary")
    out.report.items([summary, f"metric: {args.metric}; averaging shown: {args.average}",
                      *[f"skipped: {p}" for p in problems[:50]]])
    for protocol in sorted(df["protocol"].unique()):
        leaderboards(df[df["protocol"] == protocol], protocol, published, archs, args, out, store)

    out.report.heading("Cost")
    cost = cost_table(df)
    out.frame("cost", cost)
    out.table("cost", "Cost per method and backbone", *cost_rows(cost),
              notes=["From completed records: parameters are means over runs, throughput, memory and the inference "
                     "ratio medians. Extra parameters at inference and the inference ratio (deployed model vs the "
                     "untouched backbone) are shown only where the records hold them."], echo=True)
    if out.figures:
        out.figure("cost", "cost_figure", cost_figure,
                   "Training throughput, peak training memory and deployed inference speed per method and backbone: "
                   "medians over all benchmarks' runs of a backbone (which fixes the input size); "
                   "one bar per protocol.")

    budget_tables(args, out)

    status = status_summary(df)
    out.frame("status", status)
    shown = status[(status["failed"] > 0) | (status["unsupported"] > 0)]
    out.report.heading("Failed and unsupported runs")
    out.table("status", "Runs by status (rows with a failed or unsupported run)",
              ["benchmark", "protocol", "backbone", "method", "completed", "failed", "unsupported", "first error"],
              [[*k, str(r["completed"]), str(r["failed"]), str(r["unsupported"]), r["error"]]
               for k, r in zip(shown.index, shown.to_dict("records"))],
              empty="No run failed and none was unsupported.")
    out.finish()
    for problem in store.save():  # analysing a folder one cannot write works, only without the index
        print(f"warning: index of predictions not written: {problem}", file=sys.stderr)
    print(f"\nwrote {', '.join(args.formats)} outputs to {out_dir}")
    if args.log_to:
        from bench.trackers import log_leaderboard, redact

        try:
            where = log_leaderboard(args.log_to, out_dir, args.results_dirs[0])
        except Exception as e:  # the tool's failure (a server down): the tables are written all the same
            message = redact(e).strip().splitlines()[0][:300] if str(e).strip() else ""
            print(f"error: --log-to {args.log_to}: {type(e).__name__}: {message}; the outputs are in {out_dir}",
                  file=sys.stderr)
            return 1
        print(f"sent the tables and figures to {args.log_to}: {where}")
    return 0

