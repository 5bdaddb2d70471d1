"""Few-shot, domain-generalisation and many-shot tables on synthetic records, means by hand; analyze.py end to end."""
import math

import pandas as pd
import pytest

from bench.analysis import shots
from test_analyze import rec, write


def fs(method, dataset, k, seed, acc, variant_extra=""):  # a few-shot record (benchmark: the dataset prefix)
    variant = "_".join(p for p in (variant_extra, f"shots{k}", f"fewshot_seed{seed}") if p)
    return rec(method, dataset, acc, variant=variant, shots=k, fewshot_seed=seed)


def test_row_label_drops_only_the_data_parts():
    assert shots.row_label("lora-shots2_fewshot_seed1") == "lora"
    assert shots.row_label("lora-r8_shots2_fewshot_seed1") == "lora-r8"
    assert shots.row_label("ssf-train_subset500_subset_seed1") == "ssf"
    assert shots.row_label("ssf") == "ssf" and shots.row_label("adapter-noah") == "adapter-noah"


def test_fewshot_table_means_over_list_seeds():
    df = pd.DataFrame([fs("lora", "fewshot/oxford_pets", 1, s, a) for s, a in enumerate((10.0, 20.0, 30.0))]
                      + [fs("lora", "fewshot/oxford_pets", 2, 0, 40.0), fs("ssf", "fewshot/oxford_pets", 1, 0, 50.0),
                         rec("ssf", "vtab/dtd", 70.0)])  # not few-shot: left out
    long = shots.fewshot_long(df)
    cell = long[(long["row"] == "lora") & (long["shots"] == 1)].iloc[0]
    assert (cell["mean"], cell["std"], cell["runs"]) == (20.0, 10.0, 3)  # std of 10, 20, 30 (ddof 1)
    assert len(long) == 3
    header, rows = shots.fewshot_rows(long)
    assert header == ["backbone", "method", "oxford_pets 1-shot", "oxford_pets 2-shot"]
    assert rows[0] == ["vitb", "lora", "20.0 ± 10.0 (3)", "40.0 (1)"] and rows[1] == ["vitb", "ssf", "50.0 (1)", "—"]


def test_domain_table_source_targets_and_mean():
    rob = {"imagenet_v2_top1": 60.0, "imagenet_sketch_top1": 20.0, "imagenet_a_top1": 10.0, "imagenet_r_top1": 30.0,
           "imagenet_a_top1_1000way": 5.0, "imagenet_r_top1_1000way": 25.0}
    df = pd.DataFrame([rec("lora", "dg/imagenet", 70.0, robustness=rob, shots=16, fewshot_seed=0),
                       rec("lora", "dg/imagenet", 72.0, seed=1, robustness=rob | {"imagenet_v2_top1": 62.0},
                           shots=16, fewshot_seed=0)])
    long = shots.domain_long(df)
    (row,) = long.itertuples(index=False)
    assert (row.runs, row.source, row.imagenet_v2) == (2, 71.0, 61.0)
    assert row.targets_mean == pytest.approx((61.0 + 20.0 + 10.0 + 30.0) / 4)
    assert (row.imagenet_a_1000way, row.imagenet_r_1000way) == (5.0, 25.0)
    header, rows = shots.domain_rows(long)
    assert rows[0][:5] == ["vitb", "lora", "2", "71.0", "61.0"] and rows[0][-3:] == ["30.2", "5.0", "25.0"]


def test_manyshot_curve_includes_the_whole_split():
    df = pd.DataFrame([rec("ssf", "cifar100/cifar100", a, variant=f"train_subset{n}_subset_seed{s}", train_subset=n,
                           subset_seed=s) for n, s, a in ((500, 0, 30.0), (500, 1, 34.0), (1000, 0, 45.0))]
                      + [rec("ssf", "cifar100/cifar100", 90.0), rec("ssf", "vtab/dtd", 60.0)])
    long = shots.manyshot_long(df)
    assert len(long) == 3 and set(long["dataset"]) == {"cifar100/cifar100"}  # dtd has no subset run
    full = long[long["train_images"].isna()].iloc[0]
    assert full["mean"] == 90.0
    header, rows = shots.manyshot_rows(long)
    assert header == ["backbone", "method", "dataset", "500", "1,000", "full"]
    assert rows == [["vitb", "ssf", "cifar100/cifar100", "32.0 ± 2.8 (2)", "45.0 (1)", "90.0 (1)"]]


@pytest.mark.process
def test_analyze_writes_the_three_tables_and_figures(tmp_path, analyze_py):
    rob = {"imagenet_v2_top1": 60.0, "imagenet_sketch_top1": 20.0, "imagenet_a_top1": 10.0, "imagenet_r_top1": 30.0}
    recs = [fs("lora", "fewshot/oxford_pets", k, s, 10.0 * k + s) for k in (1, 2, 4) for s in (0, 1)]
    recs += [rec("lora", "dg/imagenet", 70.0, robustness=rob, shots=16, fewshot_seed=0, variant="shots16")]
    recs += [rec("ssf", "cifar100/cifar100", a, variant=f"train_subset{n}", train_subset=n, subset_seed=0)
             for n, a in ((500, 30.0), (1000, 45.0))] + [rec("ssf", "cifar100/cifar100", 90.0)]
    for r in recs:
        write(tmp_path / "results", r)
    out = tmp_path / "out"
    proc = analyze_py(str(tmp_path / "results"), "--out", str(out), "--formats", "csv,md,html,png", "--jobs", "1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    for stem in ("fewshot_paper", "domain_generalization_paper", "manyshot_paper"):
        assert (out / f"{stem}.csv").is_file() and (out / f"{stem}.md").is_file(), stem
    assert (out / "fewshot_paper.png").is_file() and (out / "manyshot_paper.png").is_file()
    md = (out / "fewshot_paper.md").read_text()
    assert "10.5 ± 0.7 (2)" in md and "40.5 ± 0.7 (2)" in md
    html = (out / "report.html").read_text()
    assert "Few-shot" in html and "Domain generalisation" in html and "Many-shot" in html
    assert not math.isnan(pd.read_csv(out / "domain_generalization_paper.csv")["targets_mean"][0])
