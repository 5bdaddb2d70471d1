"""analyze.py and its pure functions on hand-made records: averages, missing tasks, seeds, protocols,
corrupt records, the published-table join, cost and robustness tables, and the whole CLI output."""
import csv
import json
import math
import subprocess
import sys

import pandas as pd
import pytest

from bench import records
from bench.analysis.benchmarks import BENCHMARK_GROUPS, BENCHMARK_TASKS, TABLES
from bench.analysis.load import load_summaries, parse_summary
from bench.analysis.published import REFERENCE_DIR, compare, comparison_rows, load_published, published_leaderboard
from bench.analysis.tables import (cell_stats, cost_rows, cost_table, leaderboard, robustness_records, status_cells,
                                   to_markdown)
from conftest import ROOT, run_cli

VTAB = BENCHMARK_TASKS["vtab"]
AUGREG, ORIG = "vit_base_patch16_224.augreg_in21k", "vit_base_patch16_224.orig_in21k"


def rec(method, dataset, acc, seed=0, status="completed", variant="", backbone="vitb", arch=AUGREG,
        protocol="paper", **extra):
    bench = dataset.split("/")[0]
    group = next((g for g, ts in BENCHMARK_GROUPS.get(bench, {}).items() if dataset in ts), None)
    r = {"status": status, "error": None, "method": method, "variant": variant, "dataset": dataset,
         "benchmark": bench, "group": group, "backbone": backbone, "backbone_arch": arch, "protocol": protocol,
         "seed": seed, "tunable_params": 1000, "tunable_params_no_head": 900}
    if status == "completed":
        r |= {"test_top1": acc, "history": [{"epoch": 1, "test_top1": acc}], "train_images_per_s": 100.0,
              "peak_memory_mb": 2000.0, "peak_memory_kind": "cuda_max_allocated"}
    else:
        r["error"] = {"type": "Unsupported" if status == "unsupported" else "RuntimeError", "message": "boom"}
    return r | extra


def write(root, r):
    path = records.run_dir(root, r["backbone"], r["dataset"], r["method"], r["variant"], r["protocol"], r["seed"])
    records.write_json_atomic(path / records.RECORD, r)
    return path / records.RECORD


def frame(recs):
    return pd.DataFrame(recs)


# --- averages -----------------------------------------------------------------------------------

def test_vtab_group_means_and_both_averages_by_hand():
    # accuracy of task i (papers' order) = 10 + i: natural 10..16, specialized 17..20, structured 21..28
    df = frame([rec("ssf", t, 10.0 + i) for i, t in enumerate(VTAB)])
    t = leaderboard(df, VTAB, BENCHMARK_GROUPS["vtab"])
    row = t.loc[("vitb", "ssf")]
    natural, specialized, structured = 13.0, 18.5, 24.5  # (10+16)/2, (17+20)/2, (21+28)/2
    assert row["natural"] == pytest.approx(natural)
    assert row["specialized"] == pytest.approx(specialized)
    assert row["structured"] == pytest.approx(structured)
    assert row["mean"] == pytest.approx(19.0)  # (10+28)/2: the SSF paper's 19-task mean
    assert row["mean_of_groups"] == pytest.approx((natural + specialized + structured) / 3)  # 18.667
    assert row["tasks"] == "19/19"
    md = to_markdown(t, average="both")
    assert "| **19.0** | **18.7** |" in md and "mean of 19 tasks" in md and "mean of 3 group means" in md
    assert "mean of 3 group means" not in to_markdown(t, average="tasks")
    assert "mean of 19 tasks" not in to_markdown(t, average="groups")


def test_vtab_task_order_and_groups_follow_the_papers():
    assert len(VTAB) == 19 and VTAB[0] == "vtab/cifar" and VTAB[-1] == "vtab/smallnorb_ele"
    assert [len(v) for v in BENCHMARK_GROUPS["vtab"].values()] == [7, 4, 8]
    assert BENCHMARK_TASKS["fgvc"] == ["fgvc/cub", "fgvc/nabirds", "fgvc/oxford_flowers", "fgvc/stanford_dogs",
                                       "fgvc/stanford_cars"]


def test_missing_task_is_flagged_not_averaged():
    df = frame([rec("ssf", t, 50.0) for t in VTAB if t != "vtab/dmlab"])
    t = leaderboard(df, VTAB, BENCHMARK_GROUPS["vtab"])
    row = t.loc[("vitb", "ssf")]
    assert row["tasks"] == "18/19"
    assert math.isnan(row["mean"]) and math.isnan(row["mean_of_groups"]) and math.isnan(row["structured"])
    assert row["natural"] == 50.0 and row["specialized"] == 50.0  # complete groups keep their means
    md = to_markdown(t, status_cells(df))
    assert "| 18/19 |" in md


def test_seeds_mean_std_count_and_duplicates_counted_once():
    df = frame([rec("ssf", "fgvc/cub", 50.0, seed=0), rec("ssf", "fgvc/cub", 60.0, seed=1),
                rec("ssf", "fgvc/cub", 60.0, seed=1),  # the same run found in a second sweep folder
                rec("ssf", "fgvc/nabirds", 70.0)])
    stats = cell_stats(df)
    cub = stats.loc[("vitb", "ssf", "fgvc/cub")]
    assert cub["mean"] == 55.0 and cub["seeds"] == 2 and cub["std"] == pytest.approx(math.sqrt(50))
    t = leaderboard(df, BENCHMARK_TASKS["fgvc"], stats=stats)
    md = to_markdown(t, status_cells(df), stats)
    assert "| 55.0 ± 7.1 (2) | 70.0 (1) | — | — | — |" in md
    assert t.loc[("vitb", "ssf"), "seeds"] == 1 and t.loc[("vitb", "ssf"), "tasks"] == "2/5"


def test_failed_and_unsupported_are_shown_as_such():
    df = frame([rec("vpt", "fgvc/cub", 0, status="unsupported"), rec("lora", "fgvc/cub", 0, status="failed"),
                rec("lora", "fgvc/nabirds", 40.0)])
    t = leaderboard(df, BENCHMARK_TASKS["fgvc"])
    md = to_markdown(t, status_cells(df))
    assert "| vitb | vpt | n/a |" in md and "| vitb | lora | failed | 40.0 |" in md


# --- loading --------------------------------------------------------------------------------------

def test_corrupt_records_are_skipped_and_counted(tmp_path):
    good = write(tmp_path, rec("ssf", "fgvc/cub", 50.0))
    full = good.read_text()
    bad1 = tmp_path / "runs" / "a" / "record.json"
    bad2 = tmp_path / "runs" / "b" / "record.json"
    bad3 = tmp_path / "runs" / "c" / "record.json"
    for p in (bad1, bad2, bad3):
        p.parent.mkdir(parents=True)
    bad1.write_text(full[: full.index('"history"') + 30])  # truncated inside the history
    bad2.write_text(full[: len(full) - 5])  # truncated after it
    bad3.write_text(json.dumps({"status": "completed"}))  # identity fields missing
    with pytest.warns(UserWarning, match="skipped record"):
        df, problems = load_summaries(tmp_path)
    assert len(df) == 1 and len(problems) == 3
    assert all(any(str(p) in msg for msg in problems) for p in (bad1, bad2, bad3))


@pytest.mark.parametrize("obj", [
    {"status": "completed", "note": "a ] and a \"history\": [ in a string", "history": [{"e": 1}, {"e": 2}], "x": 1},
    {"status": "completed", "history": [], "x": [1, [2]]},
    {"status": "completed", "x": {"history": [1, 2]}},  # nested, not the record's history
    {"history": [[1, 2], [3]], "status": "failed"},  # not a flat list of objects: parsed in full
])
def test_parse_summary_equals_json_without_history(obj):
    for text in (json.dumps(obj), json.dumps(obj, indent=1)):
        expected = json.loads(text)
        expected.pop("history", None)
        assert parse_summary(text.encode()) == expected


def test_loaded_dtypes_are_declared(tmp_path):
    write(tmp_path, rec("ssf", "fgvc/cub", 50))
    write(tmp_path, rec("bias", "fgvc/cub", 0, status="failed"))
    df, _ = load_summaries(tmp_path)
    assert df["test_top1"].dtype == "float64" and df["inference_extra_params"].isna().all()
    assert set(df["variant"]) == {""} and "history" not in df


# --- protocols --------------------------------------------------------------------------------------

@pytest.mark.process
def test_protocols_are_never_averaged_together(tmp_path, analyze_py):
    for r in [rec("ssf", "fgvc/cub", 50.0, protocol="val"), rec("ssf", "fgvc/cub", 90.0, protocol="paper")]:
        write(tmp_path, r)
    out = tmp_path / "out"
    proc = analyze_py(str(tmp_path), "--out", str(out), "--formats", "csv", "--quiet")
    assert proc.returncode == 0, proc.stderr
    val = pd.read_csv(out / "leaderboard_fgvc_val.csv")
    paper = pd.read_csv(out / "leaderboard_fgvc_paper.csv")
    assert val["fgvc/cub"].tolist() == [50.0] and paper["fgvc/cub"].tolist() == [90.0]


# --- published results ----------------------------------------------------------------------------

def _published_csv(name):
    with open(REFERENCE_DIR / name, newline="") as f:
        return {r["method"]: r for r in csv.DictReader(f)}


def test_published_join_puts_each_number_in_its_cell():
    pub = load_published()["vtab"]
    raw = _published_csv("vtab1k_vitb16_in21k.csv")
    # Our accuracy of task i = 40 + i, for ssf on the AugReg backbone and full on the original one.
    ours = frame([rec(m, t, 40.0 + i, backbone=b, arch=a) for i, t in enumerate(VTAB)
                  for m, b, a in (("ssf", "augreg", AUGREG), ("full", "orig", ORIG))])
    table = leaderboard(ours, VTAB, BENCHMARK_GROUPS["vtab"])
    pub_table = published_leaderboard(pub, VTAB, BENCHMARK_GROUPS["vtab"])
    long = compare(table, pub, pub_table, {"augreg": AUGREG, "orig": ORIG},
                   {("augreg", "ssf"): "ssf", ("orig", "full"): "vpt"})
    ssf = long[long["row"] == "SSF"].set_index("column")
    # the published CSV's own names, independently of bench.analysis.published's mapping
    by_csv = {"cifar100": "vtab/cifar", "flowers102": "vtab/oxford_flowers102", "pets": "vtab/oxford_iiit_pet",
              "retinopathy": "vtab/diabetic_retinopathy", "kitti_dist": "vtab/kitti", "dtd": "vtab/dtd",
              "smallnorb_ele": "vtab/smallnorb_ele", "clevr_count": "vtab/clevr_count"}
    for col, ds in by_csv.items():
        assert ssf.at[ds, "published"] == float(raw["SSF"][col]), col
        assert ssf.at[ds, "ours"] == 40.0 + VTAB.index(ds)
        assert ssf.at[ds, "diff"] == pytest.approx(ssf.at[ds, "ours"] - ssf.at[ds, "published"])
    assert ssf.at["mean", "published"] == float(raw["SSF"]["mean"]) and not ssf.at["mean", "derived"]
    natural = [float(raw["SSF"][c]) for c in ("cifar100", "caltech101", "dtd", "flowers102", "pets", "svhn", "sun397")]
    assert ssf.at["natural", "published"] == pytest.approx(sum(natural) / 7) and ssf.at["natural", "derived"]
    assert ssf["backbone"].unique().tolist() == ["augreg"] and ssf["same_checkpoint"].unique().tolist() == [True]
    full = long[long["row"] == "Full fine-tuning"]
    assert full["backbone"].unique().tolist() == ["orig"] and full["same_checkpoint"].unique().tolist() == [True]
    noah = long[long["row"] == "NOAH"]  # no such method here: published only
    assert noah["ours"].isna().all() and noah["published"].notna().all()
    header, rows, _ = comparison_rows(long, pub_table)
    ssf_row = next(r for r in rows if r[2] == "SSF")
    cifar = float(raw["SSF"]["cifar100"])
    assert ssf_row[header.index("cifar")] == f"40.0 / {cifar:.1f} ({40.0 - cifar:+.1f})"
    assert ssf_row[header.index("same checkpoint")] == "yes" and ssf_row[header.index("same recipe")] == "yes"
    assert "AugReg" in ssf_row[header.index("published checkpoint")]


def test_published_comparison_flags_a_recipe_or_checkpoint_mismatch():
    """Adapter and LoRA's published rows are NOAH's recipe; ours under SSF's recipe are marked, not compared silently."""
    pub = load_published()["vtab"]
    assert pub.at["Adapter", "recipe"] == "noah" and pub.at["SSF", "recipe"] == "ssf"
    assert pub.at["VPT-Deep", "recipe"] == "vpt" and "val" in pub.at["VPT-Deep", "selection"]
    ours = frame([rec("adapter", t, 60.0, backbone="orig", arch=ORIG, recipe="ssf") for t in VTAB]
                 + [rec("adapter", t, 61.0, backbone="orig", arch=ORIG, recipe="noah", variant="noah") for t in VTAB]
                 + [rec("ssf", t, 62.0, backbone="orig", arch=ORIG, recipe="ssf") for t in VTAB])
    table = leaderboard(ours, VTAB, BENCHMARK_GROUPS["vtab"])
    assert {lab for _, lab in table.index} == {"adapter", "adapter-noah", "ssf"}  # recipes never averaged
    from bench.analysis.cli import _recipes

    pub_table = published_leaderboard(pub, VTAB, BENCHMARK_GROUPS["vtab"])
    long = compare(table, pub, pub_table, {"orig": ORIG}, _recipes(ours))
    adapter = long[long["row"] == "Adapter"].drop_duplicates("method").set_index("method")
    assert adapter.at["adapter", "same_recipe"] == False and adapter.at["adapter", "like_for_like"] == False  # noqa: E712
    assert adapter.at["adapter-noah", "same_recipe"] == True and adapter.at["adapter-noah", "like_for_like"] == True  # noqa: E712
    ssf = long[long["row"] == "SSF"].iloc[0]
    assert ssf["same_recipe"] == True and ssf["same_checkpoint"] == False and ssf["like_for_like"] == False  # noqa: E712
    header, rows, _ = comparison_rows(long, pub_table)
    cell = {(r[1], r[2]): r[header.index("dtd")] for r in rows}
    assert cell[("adapter", "Adapter")].startswith("60.0† / ")  # SSF's recipe against NOAH's row
    assert cell[("adapter-noah", "Adapter")].startswith("61.0 / ")  # like for like
    assert cell[("ssf", "SSF")].startswith("62.0† / ")  # the original checkpoint against SSF's AugReg row
    row = next(r for r in rows if r[1] == "adapter")
    assert (row[header.index("published recipe")], row[header.index("our recipe")]) == ("noah", "ssf")


def test_one_label_with_two_recipes_is_split():
    from bench.analysis.tables import with_labels

    df = frame([rec("lora", "vtab/dtd", 50.0, recipe="ssf"), rec("lora", "vtab/dtd", 70.0, recipe="noah", seed=1)])
    assert sorted(with_labels(df)["label"]) == ["lora[noah]", "lora[ssf]"]
    t = leaderboard(df, ["vtab/dtd"])
    assert t.loc[("vitb", "lora[ssf]"), "vtab/dtd"] == 50.0 and t.loc[("vitb", "lora[noah]"), "vtab/dtd"] == 70.0


def test_published_rows_name_their_checkpoint_and_other_architectures_are_not_compared():
    pubs = load_published()
    for bench, pub in pubs.items():
        assert (pub["checkpoint"] != "").all(), bench
        assert set(pub.columns) >= set(BENCHMARK_TASKS[bench])
    fgvc = pubs["fgvc"]
    swin = "swin_base_patch4_window7_224"
    ours = frame([rec("lora", t, 50.0, backbone="swin", arch=swin) for t in BENCHMARK_TASKS["fgvc"]])
    table = leaderboard(ours, BENCHMARK_TASKS["fgvc"])
    long = compare(table, fgvc, published_leaderboard(fgvc, BENCHMARK_TASKS["fgvc"]), {"swin": swin})
    assert long["backbone"].isna().all()  # a Swin row is never set against ViT-B/16 numbers


# --- cost and robustness ------------------------------------------------------------------------

def test_cost_table_from_records_and_optional_fields():
    df = frame([rec("ssf", "fgvc/cub", 50, train_images_per_s=100.0, peak_memory_mb=1000.0),
                rec("ssf", "fgvc/nabirds", 50, train_images_per_s=300.0, peak_memory_mb=3000.0),
                rec("adapter", "fgvc/cub", 50, inference_extra_params=160000, inference_images_per_s_ratio=0.9)])
    cost = cost_table(df)
    ssf = cost.loc[("fgvc", "paper", "vitb", "ssf")]
    assert ssf["runs"] == 2 and ssf["train_images_per_s"] == 200.0 and ssf["peak_memory_mb"] == 2000.0
    header, rows = cost_rows(cost)
    by_method = {r[3]: r for r in rows}
    assert by_method["ssf"][header.index("extra params at inference")] == "—"
    assert by_method["ssf"][header.index("inference img/s vs backbone")] == "—"
    assert by_method["adapter"][header.index("extra params at inference")] == "0.16M"
    assert by_method["adapter"][header.index("inference img/s vs backbone")] == "0.90×"


def test_robustness_table_shows_missing_fields_as_dashes():
    rob = {"imagenet_a_top1": 30.0, "imagenet_r_top1": 50.0, "imagenet_c_mce": 60.0}
    df = frame([rec("ssf", "imagenet/imagenet", 80.0, robustness=rob), rec("full", "imagenet/imagenet", 81.0)])
    long = robustness_records(df)
    t = leaderboard(long, ["imagenet/imagenet", *rob], metric="value", mean=False)
    assert t.loc[("vitb", "ssf")][["imagenet/imagenet", *rob]].tolist() == [80.0, 30.0, 50.0, 60.0]
    assert t.loc[("vitb", "full"), "imagenet/imagenet"] == 81.0 and t.loc[("vitb", "full"), list(rob)].isna().all()
    assert "mean" not in t


# --- the CLI ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fixture_results(tmp_path_factory):
    """The mini benchmark (val protocol) and a VTAB + FGVC sweep (paper protocol), two seeds, some failures."""
    root = tmp_path_factory.mktemp("results")
    methods = ["full", "linear", "ssf", "vpt"]
    for seed in (0, 1):
        for i, t in enumerate(BENCHMARK_TASKS["mini"]):
            for k, m in enumerate(methods):
                write(root, rec(m, t, 30.0 + i + k + seed, seed=seed, backbone="vit_tiny_mini",
                                arch="vit_tiny_patch16_224", protocol="val"))
        for i, t in enumerate(VTAB + BENCHMARK_TASKS["fgvc"]):
            for k, m in enumerate(methods):
                status = "failed" if (m, t, seed) == ("vpt", "vtab/dtd", 1) else "completed"
                write(root, rec(m, t, 40.0 + i % 7 + k + seed, seed=seed, status=status, backbone="vit_b_augreg",
                                arch=AUGREG, inference_extra_params=0 if m != "vpt" else 50000))
    bad = root / "runs" / "broken" / "record.json"
    bad.parent.mkdir(parents=True)
    bad.write_text('{"status": "completed", "method": "ss')
    return root


@pytest.fixture(scope="module")
def first_analysis(fixture_results, tmp_path_factory):
    """analyze.py's first run over a copy of fixture_results, every table and figure drawn: (the results, its
    output folder, the process). Read by the two tests below (one xdist_group), which draw nothing twice."""
    import shutil

    base = tmp_path_factory.mktemp("analysis")
    results, out = base / "results", base / "out"
    shutil.copytree(fixture_results, results)
    return results, out, run_cli("analyze.py", str(results), "--out", str(out))


@pytest.mark.process
@pytest.mark.xdist_group("analyze_cli")
def test_cli_writes_every_table_figure_and_the_report(first_analysis):
    _, tmp_path, proc = first_analysis
    assert proc.returncode == 0, proc.stderr
    assert "1 unreadable skipped" in proc.stdout and "skipped record" in proc.stderr
    names = {p.name for p in tmp_path.iterdir()}
    for stem in ("leaderboard_vtab_paper", "leaderboard_fgvc_paper", "leaderboard_mini_val", "published_vtab_paper",
                 "published_fgvc_paper", "cost", "status"):
        assert {f"{stem}.csv", f"{stem}.md"} <= names, stem
    for fig in ("accuracy_vs_params_vtab_paper", "accuracy_vs_params_fgvc_paper", "accuracy_vs_params_mini_val",
                "delta_to_full_vtab_paper", "delta_to_full_fgvc_paper", "delta_to_full_mini_val", "cost"):
        assert {f"{fig}.png", f"{fig}.svg"} <= names, fig
        assert (tmp_path / f"{fig}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (tmp_path / "report.html").read_text()
    assert html.count("data:image/png;base64,") == sum(n.endswith(".png") for n in names)
    assert "Full fine-tuning" in html and "AugReg" in html and "<table>" in html
    vtab = pd.read_csv(tmp_path / "leaderboard_vtab_paper.csv")
    assert {"natural", "specialized", "structured", "mean", "mean_of_groups"} <= set(vtab.columns)
    vpt = vtab[vtab["method"] == "vpt"].iloc[0]
    assert vpt["tasks"] == "19/19" and vpt["seeds"] == 1  # dtd lost seed 1 to a failure
    assert "| vit_tiny_mini | ssf |" in proc.stdout


@pytest.mark.process
@pytest.mark.xdist_group("analyze_cli")
def test_unchanged_figures_are_read_back_changed_ones_redrawn(first_analysis, tmp_path):
    import shutil

    # a copy of the first run's results and output (file times kept): later runs read its figures back
    results, out = tmp_path / "results", tmp_path / "out"
    shutil.copytree(first_analysis[0], results)
    shutil.copytree(first_analysis[1], out)
    digests = json.loads((out / ".figures.json").read_text())
    assert {"cost", "accuracy_vs_params_vtab_paper", "accuracy_vs_params_mini_val"} <= set(digests)
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")}
    html_before = (out / "report.html").read_text().replace(str(first_analysis[0]), str(results))  # it names the folder
    assert run_cli("analyze.py", str(results), "--out", str(out), "--quiet").returncode == 0
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")} == before  # nothing redrawn
    assert (out / "report.html").read_text() == html_before  # the same figures embedded
    # one mini record changes: the mini figures are redrawn, the VTAB ones are not
    path = next((results / "runs" / "vit_tiny_mini").rglob("record.json"))
    rec = json.loads(path.read_text())
    records.write_json_atomic(path, rec | {"test_top1": rec["test_top1"] + 7.0})
    assert run_cli("analyze.py", str(results), "--out", str(out), "--quiet").returncode == 0
    after = {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")}
    assert after["accuracy_vs_params_mini_val.png"] != before["accuracy_vs_params_mini_val.png"]
    assert after["accuracy_vs_params_vtab_paper.png"] == before["accuracy_vs_params_vtab_paper.png"]
    assert run_cli("analyze.py", str(results), "--out", str(out), "--quiet", "--redraw").returncode == 0
    assert all(p.stat().st_mtime_ns != after[p.name] for p in out.glob("*.png"))


@pytest.mark.process
def test_cli_filters_average_and_formats(fixture_results, tmp_path, capsys, analyze_py):
    proc = analyze_py(str(fixture_results), "--out", str(tmp_path), "--benchmark", "vtab",
                   "--method", "ssf,full*", "--average", "groups", "--formats", "md", "--quiet")
    assert proc.returncode == 0, proc.stderr
    names = {p.name for p in tmp_path.iterdir()}
    assert "leaderboard_vtab_paper.md" in names and not any(n.endswith((".csv", ".png", ".html")) for n in names)
    assert not any("mini" in n or "fgvc" in n for n in names)
    md = (tmp_path / "leaderboard_vtab_paper.md").read_text()
    assert "| vit_b_augreg | full |" in md and "| vit_b_augreg | ssf |" in md and "| linear |" not in md
    assert "mean of 3 group means" in md and "mean of 19 tasks |" not in md
    from bench.analysis.cli import main  # a refusal: in this process (analyze.py is `sys.exit(main())`)

    assert main([str(fixture_results), "--out", str(tmp_path), "--backbone", "nope*"]) == 2
    assert "matches the filters" in capsys.readouterr().err


@pytest.mark.process
def test_cli_help_explains_each_option(analyze_py):
    proc = analyze_py("--help")
    assert proc.returncode == 0
    for option in ("--out", "--benchmark", "--backbone", "--method", "--protocol", "--average", "--metric",
                   "--formats", "--reference", "--no-published", "--jobs", "--quiet", "--ci", "--ci-level", "--ci-seed",
                   "--ci-resamples", "--baseline"):
        assert option in proc.stdout, option


@pytest.mark.process
def test_analysis_path_is_torch_free():
    code = ("import sys, analyze, bench.analysis.plots, bench.analysis.published, bench.analysis.report, "
            "bench.analysis.load; "
            "from bench.analysis import plots; plots._plt(); print('torch' in sys.modules or 'timm' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.strip() == "False", out.stderr


def test_every_table_spec_has_known_tasks():
    for spec in TABLES:
        assert spec.tasks and all(g in spec.tasks for members in spec.groups.values() for g in members)


def test_cli_rejects_a_missing_or_empty_folder(tmp_path, capsys):
    """In this process: analyze.py is `sys.exit(bench.analysis.cli.main())`."""
    from bench.analysis.cli import main

    assert main([str(tmp_path / "nope")]) == 2 and "does not exist" in capsys.readouterr().err
    assert main([str(tmp_path)]) == 2 and "no readable record.json" in capsys.readouterr().err


@pytest.mark.process
def test_cli_reads_several_sweep_folders_together(tmp_path, capsys, analyze_py):
    write(tmp_path / "sweep1", rec("ssf", "fgvc/cub", 50.0))
    write(tmp_path / "sweep2", rec("full", "fgvc/cub", 60.0))
    proc = analyze_py(str(tmp_path / "sweep1"), str(tmp_path / "sweep2"), "--formats", "csv", "--quiet")
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(tmp_path / "sweep1" / "leaderboard" / "leaderboard_fgvc_paper.csv")
    assert dict(zip(table["method"], table["fgvc/cub"])) == {"full": 60.0, "ssf": 50.0}
    from bench.analysis.cli import main  # a refusal: in this process (analyze.py is `sys.exit(main())`)

    assert main([str(tmp_path / "sweep1"), str(tmp_path / "nope")]) == 2 and "does not exist" in capsys.readouterr().err


def test_published_comparison_flags_a_data_mismatch():
    """CIFAR-100 on NOAH's JPEGs against VPT's TFDS row is marked; on lossless PNG of the TFDS tensors it is not."""
    from bench.analysis.cli import _data, _recipes
    from bench.analysis.published import data_pipeline

    pub = load_published()["vtab"]
    assert pub.at["VPT-Deep", "data"] == "tfds" and pub.at["SSF", "data"] == "noah_jpeg"
    jpegs = {"format": "vtab_txt", "pixel_format": "jpeg", "jpeg_quality": 75}
    pngs = {"format": "vtab_txt", "pixel_format": "png", "manifest": {"source": {"kind": "tfds"}}}
    assert data_pipeline(jpegs) == "noah_jpeg" and data_pipeline(pngs) == "tfds"
    assert data_pipeline({"format": "vtab_txt", "splits": {"test": {"image_types": {".jpg": 5}}}}) == "noah_jpeg"
    assert data_pipeline(jpegs | {"jpeg_quality": 95}) == "jpeg_q95" and data_pipeline({"format": "generated"}) == \
        "generated"
    ours = frame([rec("vpt", t, 60.0, backbone="orig", arch=ORIG, recipe="vpt", data=jpegs) for t in VTAB]
                 + [rec("vpt", t, 61.0, backbone="orig", arch=ORIG, recipe="vpt", variant="png", data=pngs)
                    for t in VTAB])
    table = leaderboard(ours, VTAB, BENCHMARK_GROUPS["vtab"])
    pub_table = published_leaderboard(pub, VTAB, BENCHMARK_GROUPS["vtab"])
    long = compare(table, pub, pub_table, {"orig": ORIG}, _recipes(ours), _data(ours))
    deep = long[long["row"] == "VPT-Deep"].drop_duplicates("method").set_index("method")
    assert deep.at["vpt", "our_data"] == "noah_jpeg" and deep.at["vpt", "same_data"] == False  # noqa: E712
    assert deep.at["vpt", "like_for_like"] == False and deep.at["vpt-png", "like_for_like"] == True  # noqa: E712
    header, rows, _ = comparison_rows(long, pub_table)
    row = {(r[1], r[2]): r for r in rows}
    assert row[("vpt", "VPT-Deep")][header.index("cifar")].startswith("60.0† / ")
    assert row[("vpt-png", "VPT-Deep")][header.index("cifar")].startswith("61.0 / ")
    assert [row[("vpt", "VPT-Deep")][header.index(c)] for c in ("published data", "our data", "same data")] == \
        ["tfds", "noah_jpeg", "no"]
