"""The two VTAB-1k averages in the published comparison (issue 33): every reference row says which one its
printed mean is, and the comparison sets a printed mean only beside the same average of ours, deriving
the other from the published cells (NaN where cells are missing)."""
import math

import pandas as pd
import pytest

from bench.analysis.benchmarks import BENCHMARK_GROUPS, BENCHMARK_TASKS
from bench.analysis.published import (AVERAGES, DERIVED_MARK, compare, comparison_rows, load_published,
                                      published_leaderboard)
from bench.analysis.tables import ROW_NAMES

ORIG = "vit_base_patch16_224.orig_in21k"
TASKS, GROUPS = BENCHMARK_TASKS["vtab"], BENCHMARK_GROUPS["vtab"]


def ours(rows: dict[str, float]) -> pd.DataFrame:
    """A leaderboard of ours: every task at the given value, both averages computed as tables.leaderboard does."""
    table = pd.DataFrame({t: list(rows.values()) for t in TASKS}, dtype=float)
    for g, members in GROUPS.items():
        table[g] = table[members].mean(axis=1)
    table["mean"] = table[TASKS].mean(axis=1)
    table["mean_of_groups"] = table[list(GROUPS)].mean(axis=1)
    table.index = pd.MultiIndex.from_tuples([("orig", m) for m in rows], names=ROW_NAMES)
    table.attrs = {"tasks": TASKS, "groups": list(GROUPS)}
    return table


def test_every_reference_row_names_its_average():
    for bench, pub in load_published().items():
        assert set(pub["average"]) <= set(AVERAGES), bench
        assert (pub["average"] != "").all(), bench
    vtab = load_published()["vtab"]
    assert vtab.at["SSF", "average"] == "tasks" and vtab.at["Adapter+", "average"] == "groups"
    assert set(load_published()["fgvc"]["average"]) == {"tasks"}  # FGVC: the plain mean of its 5 datasets


def test_printed_means_sit_in_their_own_column_only():
    pub = load_published()["vtab"]
    table = published_leaderboard(pub, TASKS, GROUPS)
    ssf, plus = table.loc[("published", "SSF")], table.loc[("published", "Adapter+")]
    assert ssf["mean"] == 73.10  # printed: the 19-task mean
    assert ssf["mean_of_groups"] == pytest.approx(75.695, abs=1e-3)  # derived from its cells (README: 75.69)
    assert plus["mean_of_groups"] == 77.6  # printed: a mean of the group means
    assert math.isnan(plus["mean"])  # its cells are not published: no 19-task mean to set beside ours
    assert table.attrs["printed"]["Adapter+"] == "mean_of_groups" and table.attrs["printed"]["SSF"] == "mean"


def test_the_comparison_never_sets_a_mean_of_group_means_beside_a_19_task_mean():
    pub = load_published()["vtab"]
    table = published_leaderboard(pub, TASKS, GROUPS)
    mine = ours({"ssf": 70.0, "adapter_plus": 76.0})
    recipes = {("orig", "ssf"): "ssf", ("orig", "adapter_plus"): "adapter_plus"}  # ssf on orig: not SSF's checkpoint
    long = compare(mine, pub, table, {"orig": ORIG}, recipes)
    cell = {(r["row"], r["column"]): r for r in long.to_dict("records")}
    assert cell[("Adapter+", "mean_of_groups")]["published"] == 77.6
    assert cell[("Adapter+", "mean_of_groups")]["ours"] == 76.0 and not cell[("Adapter+", "mean_of_groups")]["derived"]
    assert math.isnan(cell[("Adapter+", "mean")]["published"])  # never 77.6 beside our 19-task mean
    assert cell[("SSF", "mean")]["published"] == 73.10 and not cell[("SSF", "mean")]["derived"]
    assert cell[("SSF", "mean_of_groups")]["derived"]
    for r in long.to_dict("records"):  # in general: a printed number only ever in its own average's column
        if r["column"] in AVERAGES.values() and not r["derived"]:
            assert r["column"] == AVERAGES[pub.at[r["row"], "average"]], r
    header, rows, _ = comparison_rows(long, table)
    ssf_row = next(row for row in rows if row[2] == "SSF")
    assert ssf_row[header.index("mean of 3 group means")] == f"70.00† / 75.69{DERIVED_MARK} (-5.69)"
    assert ssf_row[header.index("mean of 19 tasks")] == "70.00† / 73.10 (-3.10)"  # †: our recipe is not SSF's


def test_a_groups_row_with_all_cells_derives_its_19_task_mean():
    pub = load_published()["vtab"].loc[["SSF"]].copy()
    pub["average"] = "groups"
    pub["mean"] = 75.69  # SSF's cells printed as a mean of group means
    table = published_leaderboard(pub, TASKS, GROUPS)
    assert table.loc[("published", "SSF"), "mean_of_groups"] == 75.69
    assert table.loc[("published", "SSF"), "mean"] == pytest.approx(73.1, abs=1e-3)  # from the 19 cells


def test_an_unknown_average_is_an_error_naming_the_choices():
    pub = load_published()["vtab"].copy()
    pub.loc["SSF", "average"] = "median"
    with pytest.raises(ValueError, match="median.*valid: tasks, groups"):
        published_leaderboard(pub, TASKS, GROUPS)
    with pytest.raises(ValueError, match="groups.*valid: tasks"):  # FGVC has no groups
        published_leaderboard(load_published()["vtab"], TASKS, {})
