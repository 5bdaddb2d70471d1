"""Records (atomic writes, robust loading) and leaderboard arithmetic on hand-made records."""
import json
import math

import pytest

from bench import records
from bench.analysis.load import load_records
from bench.analysis.tables import leaderboard, status_cells, to_markdown


def rec(method, dataset, acc, seed=0, status="completed", variant="", params=1000):
    r = {"status": status, "method": method, "variant": variant, "dataset": dataset, "benchmark": "mini",
         "protocol": "val", "backbone": "bb", "seed": seed, "tunable_params": params, "tunable_params_no_head": params - 10}
    if status == "completed":
        r["test_top1"] = acc
    return r


def write(root, r):
    path = records.run_dir(root, r["backbone"], r["dataset"], r["method"], r["variant"], r["protocol"], r["seed"])
    records.write_json_atomic(path / records.RECORD, r)


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    path = tmp_path / "record.json"
    records.write_json_atomic(path, {"a": 1})
    circular = {}
    circular["self"] = circular
    with pytest.raises(ValueError, match="Circular"):  # json.dump fails half-way through
        records.write_json_atomic(path, circular)
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]  # no temporary left behind


def test_load_skips_corrupt_records_and_counts_them(tmp_path):
    write(tmp_path, rec("ssf", "mini/a", 50.0))
    bad = tmp_path / "runs" / "x" / "record.json"
    bad.parent.mkdir(parents=True)
    bad.write_text('{"status": "compl')  # truncated
    with pytest.warns(UserWarning, match="skipped record"):
        df, problems = load_records(tmp_path)
    assert len(df) == 1 and len(problems) == 1 and str(bad) in problems[0]


def test_leaderboard_means_seeds_and_missing_tasks(tmp_path):
    for r in [rec("ssf", "mini/a", 50.0), rec("ssf", "mini/a", 60.0, seed=1), rec("ssf", "mini/b", 70.0),
              rec("linear", "mini/a", 40.0), rec("linear", "mini/b", 0, status="failed"),
              rec("vpt", "mini/a", 0, status="unsupported"), rec("vpt", "mini/b", 30.0)]:
        write(tmp_path, r)
    df, _ = load_records(tmp_path)
    t = leaderboard(df, ["mini/a", "mini/b"])
    assert list(t.index.get_level_values("method")) == ["linear", "vpt", "ssf"]  # paper order
    ssf = t.loc[("bb", "ssf")]
    assert ssf["mini/a"] == 55.0 and ssf["mini/b"] == 70.0 and ssf["mean"] == 62.5
    assert ssf["tasks"] == "2/2" and ssf["seeds"] == 1  # mini/b has one seed
    lin = t.loc[("bb", "linear")]
    assert lin["mini/a"] == 40.0 and math.isnan(lin["mini/b"]) and math.isnan(lin["mean"]) and lin["tasks"] == "1/2"
    md = to_markdown(t, status_cells(df))
    assert "| bb | linear | 40.0 | failed | — | 1/2 |" in md
    assert "| bb | vpt | n/a | 30.0 | — | 1/2 |" in md
    assert "| bb | ssf | 55.0 | 70.0 | **62.5** | 2/2 | 1 |" in md


def test_variants_are_separate_rows(tmp_path):
    write(tmp_path, rec("ssf", "mini/a", 50.0))
    write(tmp_path, rec("ssf", "mini/a", 52.0, variant="lr0.1"))
    df, _ = load_records(tmp_path)
    t = leaderboard(df, ["mini/a"])
    assert t.loc[("bb", "ssf-lr0.1"), "mini/a"] == 52.0 and t.loc[("bb", "ssf"), "mini/a"] == 50.0


@pytest.mark.process
def test_records_module_is_torch_free():
    import subprocess
    import sys

    code = "import sys, analyze, bench.records, bench.analysis.tables; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=records.__file__.rsplit("/bench/", 1)[0])
    assert out.stdout.strip() == "False", out.stderr
