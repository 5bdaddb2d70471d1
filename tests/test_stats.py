"""Intervals, paired tests, Holm, ranks (bench/analysis/stats.py) on known answers and synthetic run folders
(record.json + predictions.npz, the predictions contract), and analyze.py's uncertainty outputs."""
import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest

from bench import records
from bench.analysis import stats
from bench.analysis.benchmarks import BENCHMARK_TASKS
from conftest import ROOT, run_cli
from test_analyze import rec, write

OPTS = stats.CIOptions()
MINI = BENCHMARK_TASKS["mini"]


def fingerprint(n: int) -> str:
    return "sha256:" + hashlib.sha256(str(n).encode()).hexdigest()


def correct_vector(rng, n: int, acc: float) -> np.ndarray:
    """Exactly round(acc n) correct images, in random places."""
    c = np.zeros(n, bool)
    c[rng.choice(n, int(round(acc * n)), replace=False)] = True
    return c


def write_run(root, r, correct: np.ndarray, classes: int = 10, complete: bool = True, fp: str | None = None):
    """A run folder as a finished run leaves it: predictions.npz (pred/target/fingerprint) and its record."""
    n = len(correct)
    target = np.arange(n) % classes
    pred = np.where(correct, target, (target + 1) % classes)
    fp = fp or fingerprint(n)
    r = r | {"test_top1": 100.0 * correct.mean(), "test_fingerprint": fp, "predictions": "predictions.npz",
             "predictions_images": n}
    if not complete:
        r["predictions_complete"] = False
    path = write(root, r)
    np.savez_compressed(path.parent / "predictions.npz", pred=pred, target=target, fingerprint=np.array(fp))
    return path


def cell(*vectors, fp="x") -> stats.Cell:
    return stats.Cell(correct=list(vectors), fingerprint=fp)


# --- known answers ------------------------------------------------------------------------------

def test_identical_predictions_give_zero_difference_and_p_one():
    c = correct_vector(np.random.default_rng(0), 1000, 0.7)
    cmp = stats.compare_cells(cell(c), cell(c.copy()), OPTS, "a")
    assert (cmp.diff, cmp.ci_low, cmp.ci_high, cmp.p_value) == (0.0, 0.0, 0.0, 1.0)
    assert stats.verdict(cmp.diff, cmp.p_value, OPTS.alpha) == "not distinguishable"
    two = stats.compare_cells(cell(c, c), cell(c, c), OPTS, "b")  # several seeds: bootstrap p
    assert (two.diff, two.ci_low, two.ci_high, two.p_value) == (0.0, 0.0, 0.0, 1.0)


def test_five_point_gap_on_10000_images_is_better():
    rng = np.random.default_rng(1)
    base = correct_vector(rng, 10_000, 0.70)
    better = base.copy()
    better[rng.choice(np.flatnonzero(~base), 500, replace=False)] = True  # +5 points on the same images
    cmp = stats.compare_cells(cell(better), cell(base), OPTS, "gap")
    assert cmp.diff == pytest.approx(5.0) and cmp.p_value < 1e-6 and cmp.ci_low > 4
    assert stats.verdict(cmp.diff, cmp.p_value, OPTS.alpha) == "better"


def test_small_gap_on_500_images_is_not_distinguishable():
    rng = np.random.default_rng(2)
    base = correct_vector(rng, 500, 0.70)
    other = base.copy()
    wrong, right = np.flatnonzero(~base), np.flatnonzero(base)
    other[rng.choice(wrong, 30, replace=False)] = True  # 30 gained, 29 lost: +0.2 points
    other[rng.choice(right, 29, replace=False)] = False
    cmp = stats.compare_cells(cell(other), cell(base), OPTS, "small")
    assert cmp.diff == pytest.approx(0.2) and cmp.ci_low < 0 < cmp.ci_high
    assert stats.verdict(cmp.diff, cmp.p_value, OPTS.alpha) == "not distinguishable"


def test_bootstrap_interval_covers_the_true_accuracy_about_95_percent():
    rng = np.random.default_rng(3)
    truth, n, runs, covered = 0.62, 800, 400, 0
    for k in range(runs):
        c = rng.random(n) < truth  # one simulated single-seed run of a model of known accuracy
        lo, hi = stats.interval(stats.cell_draws(cell(c), OPTS, str(k)), OPTS.level)
        covered += lo <= 100 * truth <= hi
    assert 0.92 <= covered / runs <= 0.98, covered / runs


def test_two_level_interval_is_wider_with_seed_to_seed_spread():
    rng = np.random.default_rng(4)
    seeds = [rng.random(2000) < p for p in (0.55, 0.65, 0.75)]
    lo, hi = stats.interval(stats.cell_draws(cell(*seeds), OPTS, "s"), OPTS.level)
    one_lo, one_hi = stats.interval(stats.cell_draws(cell(seeds[1]), OPTS, "s"), OPTS.level)
    assert hi - lo > 2 * (one_hi - one_lo)


def test_mcnemar_equals_binomtest_on_the_discordant_pairs():
    a = np.array([1, 1, 1, 1, 1, 1, 0, 0, 1, 0, 1, 1], bool)
    b = np.array([1, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1], bool)
    # discordant: a only at 1, 2, 3, 4, 8, 10 (6); b only at 7 (1)
    assert stats.mcnemar(a, b) == pytest.approx(binomtest(6, 7, 0.5).pvalue) == pytest.approx(16 / 128)
    for k, n in [(0, 1), (3, 10), (7, 10), (50, 100), (40, 130), (5, 5)]:
        assert stats.sign_test_p(k, n) == pytest.approx(binomtest(k, n, 0.5).pvalue, rel=1e-9), (k, n)


def test_holm_on_a_hand_made_list():
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 -> monotone 0.02, 0.03, 0.06, 0.06
    expected = [0.03, 0.06, 0.06, 0.02]
    assert stats.holm(p) == pytest.approx(expected)
    from statsmodels.stats.multitest import multipletests

    assert stats.holm(p) == pytest.approx(multipletests(p, method="holm")[1])
    assert stats.holm([]).size == 0


def test_friedman_and_average_ranks_on_a_hand_made_table():
    scores = np.array([[90, 80, 70], [85, 86, 60], [70, 60, 50], [75, 75, 65], [88, 70, 72]], float)
    # ranks per task (1 = best): [1,2,3] [2,1,3] [1,2,3] [1.5,1.5,3] [1,3,2]
    assert stats.average_ranks(scores) == pytest.approx([6.5 / 5, 9.5 / 5, 14 / 5])
    stat, p = stats.friedman(scores)
    # Friedman with ties: 12/(n k (k+1)) sum R_j^2 - 3 n (k+1), corrected by 1 - sum(t^3 - t) / (n (k^3 - k))
    n, k = 5, 3
    raw = 12 / (n * k * (k + 1)) * (6.5 ** 2 + 9.5 ** 2 + 14 ** 2) - 3 * n * (k + 1)
    assert stat == pytest.approx(raw / (1 - 6 / (n * (k ** 3 - k))))
    assert 0 < p < 0.1
    assert stats.nemenyi_cd(3, 5) == pytest.approx(2.343 * np.sqrt(3 * 4 / 30), abs=2e-3)  # Demšar's q_0.05 table


def test_friedman_is_scipys_bit_for_bit_and_refuses_what_it_refuses():
    """Computed without scipy.stats (its import cost analyze.py half a second), the same numbers as
    `scipy.stats.friedmanchisquare`: continuous scores, heavily tied ones, one task, every task tied."""
    from scipy.stats import friedmanchisquare

    rng = np.random.default_rng(0)
    tables = [rng.random((n, k)) for n, k in [(1, 3), (5, 3), (19, 20), (26, 7)]]
    tables += [rng.integers(0, 4, (n, k)).astype(float) for n, k in [(2, 3), (5, 9), (26, 20)]]
    for scores in tables:
        res = friedmanchisquare(*scores.T)
        assert stats.friedman(scores) == (float(res.statistic), float(res.pvalue))
    with np.errstate(all="ignore"):
        assert all(np.isnan(stats.friedman(np.ones((4, 5)))))  # no ranking at all: scipy's nan, not an error
        assert all(np.isnan(stats.friedman(np.ones((0, 4)))))  # no task: scipy's nan too
    with pytest.raises(ValueError):
        friedmanchisquare(*np.ones((5, 2)).T)
    with pytest.raises(ValueError, match="at least 3 methods"):
        stats.friedman(np.ones((5, 2)))


def test_studentized_range_quantile_is_scipys():
    from scipy.stats import studentized_range

    for k in [2, 3, 4, 7, 10, 20, 41, 100]:
        for alpha in (0.01, 0.05, 0.1, 0.5):
            expected = studentized_range.ppf(1 - alpha, k, np.inf)
            assert stats.studentized_range_quantile(1 - alpha, k) == pytest.approx(expected, rel=1e-12), (k, alpha)
    for p, k in [(0.0, 3), (1.0, 3), (0.95, 1)]:
        with pytest.raises(ValueError, match="studentized range"):
            stats.studentized_range_quantile(p, k)


@pytest.mark.process
def test_rank_statistics_do_not_import_scipy_stats():
    """A fresh interpreter: the Friedman test and the Nemenyi difference leave scipy.stats unimported."""
    code = ("import sys, numpy as np; from bench.analysis import stats; "
            "stats.friedman(np.random.default_rng(0).random((5, 4))); stats.nemenyi_cd(4, 5); "
            "print('scipy.stats' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"

def test_probability_of_improvement():
    assert stats.probability_of_improvement([([2.0], [1.0]), ([1.0], [1.0]), ([0.0], [1.0])]) == pytest.approx(0.5)
    assert stats.probability_of_improvement([([1.0, 3.0], [2.0])]) == pytest.approx(0.5)


def test_detectable_difference_shrinks_with_more_images():
    small = stats.detectable_difference(500, 0.2)
    large = stats.detectable_difference(10_000, 0.2)
    assert 0 < large < small < 20


# --- run folders and analyze.py ---------------------------------------------------------------------

def sweep(root, methods=("full", "linear", "ssf"), seeds=(0, 1), n=600, gaps=None):
    """The mini benchmark, `methods` x `seeds`, per-image predictions; ssf clearly above full, linear below."""
    rng = np.random.default_rng(5)
    gaps = gaps or {"full": 0.0, "linear": -0.15, "ssf": 0.08}
    for t in MINI:
        base = rng.random(n)  # image difficulty shared by all methods: the pairs are correlated, as real ones
        for m in methods:
            for s in seeds:
                c = base < 0.55 + gaps[m] + rng.normal(0, 0.01)
                write_run(root, rec(m, t, 0, seed=s, backbone="vit_tiny_mini", arch="vit_tiny_patch16_224",
                                    protocol="val"), c)


def test_cell_without_predictions_or_with_incomplete_ones_has_a_reason(tmp_path):
    old = write(tmp_path, rec("ssf", "mini/digits", 50.0))
    part = write_run(tmp_path, rec("full", "mini/digits", 0), np.ones(10, bool), complete=False)
    store = stats.Predictions()
    assert stats.cell_predictions([{"path": str(old), "seed": 0}], store).reason.startswith("no predictions")
    full = json.loads(part.read_text()) | {"path": str(part)}
    assert "incomplete" in stats.cell_predictions([full], store).reason


@pytest.mark.process
def test_cli_end_to_end_intervals_significance_ranks_and_report(tmp_path, analyze_py):
    results = tmp_path / "results"
    sweep(results)
    write(results, rec("bias", "mini/digits", 40.0, backbone="vit_tiny_mini", protocol="val"))  # an old record
    out = tmp_path / "out"
    proc = analyze_py(str(results), "--out", str(out), "--jobs", "1")
    assert proc.returncode == 0, proc.stderr
    names = {p.name for p in out.iterdir()}
    for stem in ("significance_mini_val", "noise_mini_val", "ranks_mini_val", "improvement_mini_val"):
        assert {f"{stem}.csv", f"{stem}.md"} <= names, stem
    assert {"critical_difference_mini_val.png", "critical_difference_mini_val.svg"} <= names
    sig = pd.read_csv(out / "significance_mini_val.csv")
    assert set(sig.columns) >= {"backbone", "method", "baseline", "dataset", "diff", "ci_low", "ci_high", "p_value",
                                "p_adjusted", "verdict", "n_images", "seeds"}
    assert set(sig["baseline"]) == {"full"}
    ssf = sig[(sig["method"] == "ssf") & (sig["dataset"] == "mean")].iloc[0]
    assert ssf["verdict"] == "better" and ssf["ci_low"] > 0
    lin = sig[(sig["method"] == "linear") & sig["dataset"].isin(MINI)]
    assert (lin["verdict"] == "worse").all() and (lin["p_adjusted"] >= lin["p_value"]).all()
    assert (lin["compares"] == "methods").all() and lin["test"].str.startswith("Welch t").all()
    board = pd.read_csv(out / "leaderboard_mini_val.csv")
    assert {"mini/digits_ci_low", "mini/digits_ci_high", "mean_ci_low", "mean_ci_high"} <= set(board.columns)
    row = board[board["method"] == "ssf"].iloc[0]
    assert row["mini/digits_ci_low"] < row["mini/digits"] < row["mini/digits_ci_high"]
    md = (out / "leaderboard_mini_val.md").read_text()
    assert "▲" in md and "▼" in md and "resamples" in md and "no predictions (older record): bias digits" in md
    html = (out / "report.html").read_text()
    assert "critical-difference diagram" in html and "each method minus the baseline" in html
    assert "No run failed and none was unsupported." in html
    ranks = pd.read_csv(out / "ranks_mini_val.csv")
    assert ranks["method"].tolist() == ["ssf", "full", "linear"] and ranks["average_rank"].tolist() == [1, 2, 3]
    # twice: byte-identical tables
    again = tmp_path / "again"
    assert run_cli("analyze.py", str(results), "--out", str(again), "--formats", "csv,md", "--quiet").returncode == 0
    tables = [p for p in again.iterdir() if p.suffix in (".csv", ".md")]
    assert len(tables) >= 12
    for p in tables:
        assert p.read_bytes() == (out / p.name).read_bytes(), p.name
    # a changed predictions file is seen: that table's statistics are computed again, not read back
    run = next((results / "runs").rglob("ssf/val-seed0/predictions.npz"))
    with np.load(run) as z:
        flipped = dict(z) | {"pred": np.where(z["pred"] == z["target"], (z["target"] + 1) % 10, z["target"])}
    np.savez_compressed(run, **flipped)
    rec_path = run.parent / records.RECORD
    records.write_json_atomic(rec_path, json.loads(rec_path.read_text()) | {
        "test_top1": 100.0 * float(np.mean(flipped["pred"] == flipped["target"]))})
    assert run_cli("analyze.py", str(results), "--out", str(again), "--formats", "csv", "--quiet").returncode == 0
    assert (again / "significance_mini_val.csv").read_bytes() != (out / "significance_mini_val.csv").read_bytes()


@pytest.mark.process
def test_cli_ci_none_baseline_choice_and_bad_inputs(tmp_path, capsys, analyze_py):
    results = tmp_path / "results"
    sweep(results, seeds=(0,))
    out = tmp_path / "out"
    proc = analyze_py(str(results), "--out", str(out), "--formats", "csv,md", "--quiet", "--ci", "none")
    assert proc.returncode == 0, proc.stderr
    assert not (out / "significance_mini_val.csv").exists()
    assert "mini/digits_ci_low" not in pd.read_csv(out / "leaderboard_mini_val.csv").columns
    proc = analyze_py(str(results), "--out", str(out), "--formats", "csv", "--quiet", "--baseline", "linear")
    assert proc.returncode == 0, proc.stderr
    sig = pd.read_csv(out / "significance_mini_val.csv")
    assert set(sig["baseline"]) == {"linear"} and (sig[sig["dataset"].isin(MINI)]["test"] == "exact McNemar").all()
    # bad inputs, in this process (analyze.py is `sys.exit(bench.analysis.cli.main())`)
    from bench.analysis.cli import main

    assert main([str(results), "--out", str(out), "--baseline", "nope"]) == 2
    err = capsys.readouterr().err
    assert "--baseline nope" in err and "full, linear, ssf" in err
    with pytest.raises(SystemExit) as exit_:
        main([str(results), "--ci-level", "1.5"])
    assert exit_.value.code == 2 and "--ci-level" in capsys.readouterr().err


@pytest.mark.process
def test_runs_on_different_test_images_get_no_verdict_end_to_end(tmp_path, analyze_py):
    """Issue 31: linear's digits run was scored on other test images (another fingerprint): it would be far below
    full, but the row says "not comparable", has no p-value, stays out of linear's Holm family, and the
    leaderboard cell carries the mark instead of a ▼."""
    results = tmp_path / "results"
    sweep(results, seeds=(0,))
    digits = [p for p in (results / "runs").rglob("record.json")
              if (json.loads(p.read_text())["method"], json.loads(p.read_text())["dataset"]) == ("linear", "mini/digits")]
    assert len(digits) == 1
    r = json.loads(digits[0].read_text())
    records.write_json_atomic(digits[0], r | {"test_fingerprint": "sha256:0123456789abcdef"})
    out = tmp_path / "out"
    proc = analyze_py(str(results), "--out", str(out), "--formats", "csv,md", "--quiet")
    assert proc.returncode == 0, proc.stderr
    sig = pd.read_csv(out / "significance_mini_val.csv")
    lin = sig[sig["method"] == "linear"].set_index("dataset")
    row = lin.loc["mini/digits"]
    assert row["verdict"].startswith("not comparable: different test images (linear: 600 images 01234567, full: ")
    assert row[["p_value", "p_adjusted", "ci_low", "ci_high"]].isna().all()
    others = lin.loc[[t for t in MINI if t != "mini/digits"]]
    assert (others["verdict"] == "worse").all() and (others["compares"] == "runs").all()
    assert others["p_adjusted"].tolist() == pytest.approx(stats.holm(others["p_value"]).tolist())  # a family of 4
    assert "mean" not in lin.index  # no average over a task that is not comparable
    md = (out / "leaderboard_mini_val.md").read_text()
    line = next(x for x in md.splitlines() if x.startswith("| vit_tiny_mini | linear |"))
    digits_cell = line.split(" | ")[2 + MINI.index("mini/digits")]
    assert digits_cell.endswith(stats.NOT_COMPARABLE) and "▼" not in digits_cell and line.count("▼") == 4
    assert f"{stats.NOT_COMPARABLE}: scored on other test images than the baseline" in md
    assert "compares the two trained runs, not the methods" in md
    sig_md = (out / "significance_mini_val.md").read_text()
    assert "| compares |" in sig_md and "not comparable: different test images" in sig_md


def test_published_value_within_or_outside_our_interval():
    from bench.analysis.benchmarks import BENCHMARK_GROUPS
    from bench.analysis.published import compare, comparison_rows, load_published, published_leaderboard
    from bench.analysis.tables import leaderboard

    vtab = BENCHMARK_TASKS["vtab"]
    pub = load_published()["vtab"]
    published_dtd = float(pub.at["SSF", "vtab/dtd"])
    ours = pd.DataFrame([rec("ssf", t, 60.0, recipe="ssf") for t in vtab])
    table = leaderboard(ours, vtab, BENCHMARK_GROUPS["vtab"])
    pub_table = published_leaderboard(pub, vtab, BENCHMARK_GROUPS["vtab"])
    intervals = {("vitb", "ssf", "vtab/dtd"): (published_dtd - 1, published_dtd + 1),
                 ("vitb", "ssf", "vtab/cifar"): (0.0, 1.0)}
    long = compare(table, pub, pub_table, {"vitb": "vit_base_patch16_224.augreg_in21k"}, {("vitb", "ssf"): "ssf"},
                   intervals=intervals)
    ssf = long[long["row"] == "SSF"].set_index("column")
    assert ssf.at["vtab/dtd", "noise"] == "within noise" and ssf.at["vtab/cifar", "noise"] == "outside"
    assert ssf.at["vtab/caltech101", "noise"] == ""  # no interval of ours: no judgement
    header, rows, _ = comparison_rows(long, pub_table)
    row = next(r for r in rows if r[2] == "SSF")
    assert row[header.index("within noise")] == "1/2"
    assert row[header.index("dtd")].endswith(" ≈") and row[header.index("cifar")].endswith(" ≠")


@pytest.mark.process
def test_robustness_table_has_intervals_and_comparisons_from_the_targets_arrays(tmp_path, analyze_py):
    """Issue 31: ImageNet-A and -R get intervals and paired tests from pred__<target> in predictions.npz; mCE
    (a ratio over corruption sets) says why it has none."""
    rng = np.random.default_rng(7)
    n, targets = 800, {"imagenet_a": 300, "imagenet_r": 500}
    for method, gap in (("full", 0.0), ("ssf", 0.2)):
        for seed in (0, 1, 2):
            test = rng.random(n) < 0.8  # each seed's own draw: accuracies differ between seeds, as real ones do
            extra, rob = {}, {"imagenet_c_mce": 55.0 - 10 * gap}
            for t, k in targets.items():
                ok = rng.random(k) < 0.3 + gap
                extra |= predictions_arrays(ok, t)
                rob[f"{t}_top1"] = 100.0 * ok.mean()
            path = write_run(tmp_path, rec(method, "imagenet/imagenet", 0, seed=seed, robustness=rob), test)
            add_targets(path.parent / "predictions.npz", extra)
    out = tmp_path / "out"
    proc = analyze_py(str(tmp_path), "--out", str(out), "--formats", "csv,md", "--quiet")
    assert proc.returncode == 0, proc.stderr
    board = pd.read_csv(out / "robustness_paper.csv").set_index("method")
    for col in ("imagenet/imagenet", "imagenet_a_top1", "imagenet_r_top1"):
        assert (board[f"{col}_ci_low"] < board[col]).all() and (board[col] < board[f"{col}_ci_high"]).all(), col
    assert board["imagenet_c_mce_ci_low"].isna().all()
    md = (out / "robustness_paper.md").read_text()
    assert "mCE: no interval" in md and "pred__<target>" in md
    sig = pd.read_csv(out / "significance_robustness_paper.csv").set_index("dataset")
    a = sig.loc["imagenet_a_top1"]
    assert a["method"] == "ssf" and a["compares"] == "methods" and a["verdict"] == "better" and a["n_images"] == 300
    assert sig.loc["imagenet_c_mce", "verdict"] == "no interval"


def add_targets(path, extra: dict) -> None:
    """Add robustness targets' entries to a run's predictions.npz."""
    with np.load(path) as z:
        np.savez_compressed(path, **dict(z), **extra)


def predictions_arrays(correct: np.ndarray, target: str, classes: int = 200) -> dict:
    """A robustness target's entries of predictions.npz (bench/predictions.py): pred__, target__, fingerprint__<t>."""
    labels = np.arange(len(correct)) % classes
    return {f"pred__{target}": np.where(correct, labels, (labels + 1) % classes), f"target__{target}": labels,
            f"fingerprint__{target}": np.array(fingerprint(len(correct) + 7))}


@pytest.mark.process
def test_domain_generalisation_table_has_intervals_and_comparisons(tmp_path, analyze_py):
    """NOAH's domain shift: the source and each target get intervals and paired tests from their arrays; each run
    (list seed x run seed) counts as one training draw."""
    rng = np.random.default_rng(8)
    domain = ("imagenet_v2", "imagenet_sketch", "imagenet_a", "imagenet_r")
    for method, gap in (("full", 0.0), ("lora", 0.25)):
        for list_seed in (0, 1, 2):
            extra, rob = {}, {}
            for t in domain:
                ok = rng.random(400) < 0.3 + gap
                extra |= predictions_arrays(ok, t, classes=1000)
                rob[f"{t}_top1"] = 100.0 * ok.mean()
            r = rec(method, "dg/imagenet", 0, robustness=rob, shots=16, fewshot_seed=list_seed,
                    variant=f"shots16_fewshot_seed{list_seed}")
            path = write_run(tmp_path, r, rng.random(500) < 0.6 + gap)
            add_targets(path.parent / "predictions.npz", extra)
    out = tmp_path / "out"
    proc = analyze_py(str(tmp_path), "--out", str(out), "--formats", "csv,md", "--quiet")
    assert proc.returncode == 0, proc.stderr
    dg = pd.read_csv(out / "domain_generalization_paper.csv").set_index("row")
    assert dg.loc["lora", "runs"] == 3
    for c in ("source", *domain):
        assert (dg[f"{c}_ci_low"] < dg[c]).all() and (dg[c] < dg[f"{c}_ci_high"]).all(), c
    sig = pd.read_csv(out / "significance_domain_generalization_paper.csv").set_index("dataset")
    assert set(sig.index) == {"source", *domain} and (sig["seeds"] == "3 vs 3").all()
    assert (sig["verdict"] == "better").all() and (sig["compares"] == "methods").all()
    assert "▲" in (out / "domain_generalization_paper.md").read_text()


def test_sign_test_rejects_is_sign_test_p_below_alpha():
    """The power simulations' critical values decide as the p-values do, draw for draw (no discordant pair: never)."""
    rng = np.random.default_rng(7)
    for n in (0, 1, 6, 40, 700, 30_000):
        disc = rng.binomial(n, rng.uniform(0, 1, (30, 200)))
        only_a = rng.binomial(disc, rng.uniform(0.2, 0.8, disc.shape))
        for alpha in (0.001, 0.05, 0.5):
            assert np.array_equal(stats.sign_test_rejects(only_a, disc, alpha), stats.sign_test_p(only_a, disc) < alpha)


def test_pair_moments_are_the_moments_of_both_cells():
    rng = np.random.default_rng(8)
    a = stats.Cell([rng.random(1001) < p for p in (0.6, 0.7, 0.65)], "fp")
    b = stats.Cell([rng.random(1001) < p for p in (0.5, 0.55)], "fp")
    for got, want in zip(stats.pair_moments(a, b), stats.moments(a.correct + b.correct)):
        assert np.array_equal(got, want)


def test_cd_diagram_bars_are_scikit_posthocs_crossbars():
    """`plots.nemenyi_bars` (ranks within the critical difference) joins what scikit-posthocs' own diagram joins
    from its Nemenyi p-values (its crossbars' rank spans)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import scikit_posthocs as sp

    from bench.analysis import plots

    rng = np.random.default_rng(9)
    for trial in range(12):
        k = 4 + trial % 8
        scores = pd.DataFrame(rng.normal(0, 3, (12, 1)) + np.arange(k) * rng.uniform(0.2, 1.5)
                              + rng.normal(0, 2, (12, k)), columns=[f"m{i}" for i in range(k)])
        ranks = scores.rank(axis=1, ascending=False).mean()
        sig = sp.posthoc_nemenyi_friedman(scores.to_numpy())
        sig.index = sig.columns = list(scores.columns)
        fig, ax = plt.subplots()
        drawn = sp.critical_difference_diagram(ranks, sig, ax=ax)["crossbars"]
        plt.close(fig)
        theirs = sorted((min(line.get_xdata()), max(line.get_xdata())) for (line,) in drawn)
        r = np.sort(ranks.to_numpy())
        ours = sorted((r[i], r[j]) for i, j in plots.nemenyi_bars(r, stats.nemenyi_cd(k, len(scores), 0.05)))
        assert ours == theirs, trial


@pytest.mark.process
def test_cd_diagram_same_inputs_same_bytes(tmp_path):
    """Two processes (other PYTHONHASHSEEDs) draw the same critical-difference diagram, byte for byte (PNG and SVG)."""
    import subprocess
    import sys

    script = ("import sys, hashlib, numpy as np, pandas as pd\n"
              "from bench.analysis import plots\n"
              "rng = np.random.default_rng(0)\n"
              "s = pd.DataFrame(rng.normal(0, 4, (19, 8)) + np.arange(8), columns=[f'method{i}' for i in range(8)])\n"
              "out = plots.render('cd_diagram', (s, 't', 2.5, 0.05), None, ('png', 'svg'), ())\n"
              "print(hashlib.sha256(out['png']).hexdigest(), hashlib.sha256(out['svg']).hexdigest())\n")
    digests = {subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True,
                              env={**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)}).stdout
               for seed in ("1", "2")}
    assert len(digests) == 1, digests


def test_improvement_matrix_is_probability_of_improvement_per_pair():
    """The matrix (all pairs of a task counted at once) holds `probability_of_improvement`'s numbers exactly,
    ties and unequal seed counts included."""
    rng = np.random.default_rng(10)
    rows = [{"status": "completed", "backbone": "b", "label": m, "dataset": t, "seed": s,
             "test_top1": float(rng.integers(0, 4))}
            for m in ("x", "y", "z") for t in ("t1", "t2", "t3") for s in range(2 + (m == "y") + (t == "t2"))]
    recs = pd.DataFrame(rows)
    got = stats.improvement_matrix(recs, "test_top1", "b", ["x", "y", "z"], ["t1", "t2", "t3"])
    seeds = {k: g.sort_values("seed")["test_top1"].to_numpy() for k, g in recs.groupby(["label", "dataset"])}
    for a in "xyz":
        for b in "xyz":
            want = np.nan if a == b else stats.probability_of_improvement([(seeds[(a, t)], seeds[(b, t)])
                                                                           for t in ("t1", "t2", "t3")])
            assert got.at[a, b] == want or (a == b and np.isnan(got.at[a, b])), (a, b)
