"""Equal tuning budgets (bench/search.py, the sweeper's expansion, scripts/select_and_retrain.py's search
selection, bench/analysis/budget.py): the draw, the selection, the expected-maximum estimator, the cost."""
import importlib.util
import itertools
import json

import numpy as np
import pandas as pd
import pytest

from bench import CONF, search
from bench.analysis import budget
from bench.launch.identity import run_of
from conftest import run_cli

METHODS = sorted(p.stem for p in (CONF / "search").glob("*.yaml"))
MINI = ["train.epochs=1", "train.progress=false", "deploy_iters=0", "save_weights=false"]


def sar():
    spec = importlib.util.spec_from_file_location("sar", CONF.parent / "scripts" / "select_and_retrain.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_method_config_has_a_space_with_its_source():
    methods = {p.stem for p in (CONF / "method").glob("*.yaml")}
    assert methods <= set(METHODS), methods - set(METHODS)
    for m in METHODS:
        text = (CONF / "search" / f"{m}.yaml").read_text()
        assert "PETL_Vision" in text and "KMnP/vpt" in text  # where the ranges and choices come from
        space = search.load_space(m)
        assert space["train.lr"]["log"] and space["train.weight_decay"]["log"]
        keys = set(__import__("yaml").safe_load((CONF / "method" / f"{m}.yaml").read_text())["method"])
        assert {k.split(".", 1)[1] for k in space if k.startswith("method.")} <= keys  # knobs the method has


@pytest.mark.parametrize("sampler", search.SAMPLERS)
def test_the_draw_is_deterministic_distinct_inside_the_space_and_the_same_size_for_every_method(sampler):
    k = 6
    for m in METHODS:
        space = search.load_space(m)
        a = search.draw(space, k, sampler, seed=3)
        assert a == search.draw(space, k, sampler, seed=3) and len(a) == k
        assert len({tuple(sorted(t.items())) for t in a}) == k
        assert a != search.draw(space, k, sampler, seed=4)
        for t in a:
            assert set(t) == set(space)
            for key, v in t.items():
                s = space[key]
                assert v in s["choices"] if "choices" in s else s["low"] <= v <= s["high"]
                if "choices" not in s:
                    assert float(f"{v:.3g}") == v  # 3 significant digits
    # methods with the same space draw the same configurations (common random numbers)
    assert search.draw(search.load_space("ssf"), k, sampler) == search.draw(search.load_space("bias"), k, sampler)


def test_a_named_space_narrows_and_a_widening_one_is_refused(tmp_path, monkeypatch):
    narrow = search.load_space("lora", "petl_vision")
    assert narrow["train.lr"] == {"low": 1e-3, "high": 1e-2, "log": True}
    assert narrow["method.r"] == search.load_space("lora")["method.r"]
    assert all(1e-3 <= t["train.lr"] <= 1e-2 for t in search.draw(narrow, 8))
    (tmp_path / "wide").mkdir()
    (tmp_path / "lora.yaml").write_text((CONF / "search" / "lora.yaml").read_text())
    (tmp_path / "wide" / "lora.yaml").write_text("train.lr: {low: 1.0e-6, high: 1.0e-2, log: true}\n")
    monkeypatch.setattr(search, "SEARCH_DIR", tmp_path)
    with pytest.raises(search.SearchError, match="does not narrow"):
        search.load_space("lora", "wide")
    with pytest.raises(search.SearchError, match="unknown search space; valid: default, wide"):
        search.load_space("lora", "nope")
    with pytest.raises(search.SearchError, match="no search space"):
        search.load_space("ssf")


def test_search_arguments_and_their_errors():
    rest, s = search.split_args(["method=ssf", "search=petl_vision", "search.trials=4", "search.sampler=qmc"])
    assert rest == ["method=ssf"] and s == search.Search("petl_vision", 4, "qmc", 0)
    assert s.tag() == "search4-petl_vision-qmc" and search.Search(trials=8).tag() == "search8"
    assert search.split_args(["method=ssf"]) == (["method=ssf"], None)
    for bad, message in (["search.trails=4", "unknown search setting"], ["search.trials=x", "whole number"],
                         ["search.sampler=tpe", "valid: random, qmc"]):
        with pytest.raises(search.SearchError, match=message):
            search.split_args([bad])
    assert search.overrides({"train.lr": 1.5e-05, "method.xavier_conv": True, "method.r": 8}) == \
        ["++train.lr=1.5e-05", "++method.xavier_conv=true", "++method.r=8"]


def test_launch_command_line_errors(capsys):
    from bench.launch.cli import hydra_argv

    argv = hydra_argv(["-m", "method=ssf", "search.trials=3"])
    assert "hydra.sweeper.search.trials=3" in argv and "hydra.sweeper.search.space=default" in argv
    for args, message in ((["method=ssf", "search.trials=3"], "add -m"), (["-m", "search=nope"], "valid: default")):
        with pytest.raises(SystemExit) as e:
            hydra_argv(args)
        assert e.value.code == 2 and message in capsys.readouterr().err


def test_the_sweeper_runs_each_job_once_per_drawn_trial(hydra_sweeper, capsys):
    """Every (method, task) gets the same K trials of its method's draw, each an ordinary run with its own folder."""
    loader, config, sweeper = hydra_sweeper
    sweeper.search = {"space": "default", "trials": 3, "sampler": "random", "seed": 0}
    try:
        jobs = sweeper._searched(sweeper._jobs(["method=lora,ssf", "dataset=mini/count,mini/digits", *MINI]))
        assert len(jobs) == 2 * 2 * 3
        runs = {}
        for job in jobs:
            run_dir, identity, rc = run_of(sweeper._compose(job), job)
            runs.setdefault((rc.method, rc.dataset.name), []).append((run_dir, rc))
        assert len({d for v in runs.values() for d, _ in v}) == 12
        for (method, dataset), trials in runs.items():
            drawn = search.trials_of(search.Search(trials=3), method)
            assert [rc.train.lr for _, rc in trials] == [t["train.lr"] for t in drawn]
            assert [rc.train.weight_decay for _, rc in trials] == [t["train.weight_decay"] for t in drawn]
            if method == "lora":
                assert [rc.method_args["r"] for _, rc in trials] == [t["method.r"] for t in drawn]
            assert all(rc.protocol == "val" and f"lr{rc.train.lr}" in rc.variant for _, rc in trials)
        with pytest.raises(SystemExit):
            sweeper._searched(sweeper._jobs(["method=ssf", "train.lr=0.1"]))
        assert "train.lr=0.1: the search draws these values" in capsys.readouterr().err
        with pytest.raises(SystemExit):
            sweeper._searched(sweeper._jobs(["method=ssf", "protocol=paper"]))
        assert "use protocol=val" in capsys.readouterr().err
    finally:
        sweeper.search = {}


def test_selection_is_the_argmax_of_val_over_the_drawn_trials_ties_to_the_earlier():
    select = sar().select
    points = {(0.1,): [(0, 50.0, "a")], (0.01,): [(0, 70.0, "b")], (0.001,): [(0, 70.0, "c")], (1.0,): [(0, 10.0, "d")]}
    assert select(points) == (0.001,)  # a grid: the smaller value
    assert select(points, [(0.1,), (0.01,), (0.001,), (1.0,)]) == (0.01,)  # a search: the earlier-drawn
    assert select(points, [(0.001,), (0.01,), (0.1,), (1.0,)]) == (0.001,)
    rng = np.random.default_rng(0)
    for _ in range(20):
        vals = rng.integers(0, 5, size=6).astype(float)
        order = [(float(i),) for i in rng.permutation(6)]
        pts = {p: [(0, v, "")] for p, v in zip(order, vals)}
        best = max(range(6), key=lambda i: (vals[i], -i))
        assert select(pts, order) == order[best]


def brute_force(values, tests, n):
    """The average over all K^n ordered n-tuples of the max val (and the test of the first-drawn best)."""
    k = len(values)
    vs, ts = [], []
    for tup in itertools.product(range(k), repeat=n):
        best = max(tup, key=lambda i: (values[i], -i))  # ties: the earlier-drawn trial
        vs.append(values[best])
        ts.append(tests[best])
    return np.mean(vs), np.mean(ts)


def test_expected_maximum_equals_brute_force_the_mean_at_one_and_tends_to_the_best():
    val = np.array([61.0, 72.5, 55.0, 72.5, 68.0])
    test = np.array([60.0, 70.0, 57.0, 71.0, 66.0])
    ev, et = budget.expected_best(val, test)
    for n in range(1, 5):
        bv, bt = brute_force(val, test, n)
        assert ev[n - 1] == pytest.approx(bv) and et[n - 1] == pytest.approx(bt)
    assert ev[0] == pytest.approx(val.mean()) and et[0] == pytest.approx(test.mean())
    assert np.all(np.diff(ev) >= 0)
    far, far_test = budget.expected_best(val, test, n=[200])
    assert far[0] == pytest.approx(val.max(), abs=1e-9) and far_test[0] == pytest.approx(70.0, abs=1e-6)
    w = budget.expected_max_weights(5, np.arange(1, 30))
    assert np.allclose(w.sum(1), 1)


def trials_frame():
    rows = []
    for method, shift in (("a", 0.0), ("b", 5.0)):
        for dataset in ("mini/x", "mini/y"):
            for t, (v, s) in enumerate([(50, 10.0), (60, 20.0), (55, 30.5), (40, 1.0)]):
                rows.append({"backbone": "bb", "benchmark": "mini", "protocol": "val", "dataset": dataset, "label": method,
                             "trial": t, "status": "completed", "pruned": False, "val_top1": v + shift, "test_top1": v + shift - 1,
                             "device_s": s, "images": 100, "device": "CPU"})
    rows.append({**rows[-1], "trial": 4, "status": "failed", "val_top1": np.nan, "test_top1": np.nan, "device_s": 7.0})
    return pd.DataFrame(rows)


def test_curves_bands_and_the_equal_budget_leaderboard():
    df = trials_frame()
    curves = budget.budget_curves(df, resamples=200, seed=0)
    a = curves[curves["label"] == "a"]
    assert list(a["n"]) == [1, 2, 3, 4] and set(a["tasks"]) == {2} and set(a["trials"]) == {4}
    ev, et = budget.expected_best([50, 60, 55, 40], [49, 59, 54, 39])
    assert np.allclose(a["val_best"], ev) and np.allclose(a["test_selected"], et)
    assert np.all(a["val_lo"] <= a["val_best"] + 1e-9) and np.all(a["val_best"] <= a["val_hi"] + 1e-9)
    assert curves.equals(budget.budget_curves(df, resamples=200, seed=0))  # seeded
    board = budget.at_budget(curves, 2)
    assert list(board["label"]) == ["b", "a"] and set(board["n"]) == {2}
    fewer = df[~((df["label"] == "b") & (df["dataset"] == "mini/y") & (df["trial"] == 3))]
    assert budget.budget_curves(fewer, resamples=100).query("label == 'b'")["n"].max() == 3  # the curve stops there


def test_cost_sums_equal_the_records_seconds_failed_trials_counted():
    df = trials_frame()
    cost = budget.tuning_cost(df)
    b_all = cost[(cost["label"] == "b") & (cost["dataset"] == "all")].iloc[0]
    assert b_all["device_s"] == pytest.approx(2 * (10 + 20 + 30.5 + 1) + 7.0) and b_all["trials"] == 9
    assert b_all["completed"] == 8 and b_all["images"] == 900
    y = cost[(cost["label"] == "b") & (cost["dataset"] == "mini/y")].iloc[0]
    assert y["device_s"] == pytest.approx(68.5) and y["trials"] == 5
    rec = {"status": "completed", "val_top1": 1.0, "test_top1": 2.0, "fit_time_s": 3.0, "train_time_s": 2.0,
           "train_images_per_s": 50.0, "distributed": {"world_size": 2}, "hardware": {"device": "cuda"}}
    assert budget.trial_row(rec) | {} == {**budget.trial_row(rec), "device_s": 6.0, "images": 100, "device": "GPU"}


@pytest.mark.process
def test_search_killed_and_relaunched_then_selected_and_retrained(tmp_path):
    """The issue's end-to-end search, two methods x K = 4 trials x two mini tasks: kill the search mid-way and
    relaunch: finished trials are not repeated; a relaunch then submits nothing; each (method, task)'s selection
    is the argmax of val over its K trials and its retrain runs those values; the report has both methods'
    curves, the leaderboard at equal budget and the tuning cost per method and task."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from conftest import ROOT

    methods, tasks, k = ("linear", "bias"), ("mini/count", "mini/digits"), 4
    total = len(methods) * len(tasks) * k
    results = tmp_path / "results"
    args = [f"method={','.join(methods)}", f"dataset={','.join(tasks)}", f"search.trials={k}", *MINI,
            f"results_dir={results}"]
    proc = subprocess.Popen([sys.executable, "launch.py", "-m", *args], cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=dict(os.environ, HF_HUB_OFFLINE="1"))
    deadline = time.time() + 240
    while time.time() < deadline and not list(results.rglob("record.json")) and proc.poll() is None:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    first = {p: p.read_text() for p in results.rglob("record.json")}
    assert 1 <= len(first) < total
    again = run_cli("scripts/search.py", *args, "--stage", "search", timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"{len(first)} completed" in again.stdout and f"submitting {total - len(first)}" in again.stdout
    assert all(p.read_text() == text for p, text in first.items())  # not repeated
    assert len(list(results.rglob("record.json"))) == total
    status = run_cli("scripts/search.py", *args, "--status", timeout=300)
    assert status.returncode == 0, status.stderr[-2000:]
    assert status.stdout.count(f"all {k} trials completed; selected") == len(methods) * len(tasks), status.stdout
    assert "submitting" not in status.stdout

    both = run_cli("scripts/search.py", *args, "--seeds", "0", timeout=300)  # stage one submits nothing new
    assert both.returncode == 0, both.stderr[-3000:]
    assert "submitting 0: nothing to do" in both.stdout
    records = [json.loads(p.read_text()) for p in results.rglob("record.json")]

    def runs(method, task, protocol="val"):
        return [r for r in records if (r["method"], r["dataset"], r["protocol"]) == (method, task, protocol)]

    def rows_of(table, method):  # a table's rows of `method` (its label, variant included)
        return table[table["label"].str.split("-").str[0] == method]

    for method, task in itertools.product(methods, tasks):
        trials = runs(method, task)
        assert len(trials) == k and all(r["status"] == "completed" for r in trials)
        (path,) = results.glob(f"selection/*/{task}/{method}-*search{k}/val.json")
        sel = json.loads(path.read_text())
        order = [t["train.lr"] for t in search.trials_of(search.Search(trials=k), method)]
        best = max(trials, key=lambda r: (r["val_top1"], -order.index(r["config"]["train"]["lr"])))
        assert sel["selected"] == {"lr": best["config"]["train"]["lr"],
                                   "weight_decay": best["config"]["train"]["weight_decay"]}, (method, task)
        assert [p["lr"] for p in sel["grid"]] == order and sel["search"]["trials"] == k
        (retrained,) = runs(method, task, "val_retrain")
        assert retrained["config"]["train"]["lr"] == sel["selected"]["lr"], (method, task)
        assert retrained["config"]["train"]["weight_decay"] == sel["selected"]["weight_decay"]
        assert retrained["variant"].endswith(f"search{k}") and retrained["status"] == "completed"

    report = run_cli("analyze.py", str(results), "--quiet", "--formats", "csv,md,html", "--ci", "none",
                     "--benchmark", "mini", timeout=300)
    assert report.returncode == 0, report.stderr[-3000:]
    out = results / "leaderboard"
    cost = pd.read_csv(out / "tuning_cost.csv")
    for method in methods:
        mine = rows_of(cost, method)
        per_task = mine[mine["dataset"] != "all"]
        assert sorted(per_task["dataset"]) == sorted(tasks) and set(per_task["trials"]) == {k}, method
        for task in tasks:  # each task's cost is its K trials' own seconds
            row = per_task[per_task["dataset"] == task].iloc[0]
            assert row["device_s"] == pytest.approx(sum(r["fit_time_s"] for r in runs(method, task)))
        (everything,) = mine[mine["dataset"] == "all"].to_dict("records")
        assert everything["trials"] == k * len(tasks)
        assert everything["device_s"] == pytest.approx(per_task["device_s"].sum())
    curves = pd.read_csv(out / "budget_curves.csv")
    for method in methods:  # a curve per method over n = 1..K, both tasks averaged
        mine = rows_of(curves, method)
        assert sorted(mine["n"]) == list(range(1, k + 1)) and set(mine["tasks"]) == {len(tasks)}, method
        best = mine.sort_values("n")["val_best"].to_numpy()
        assert (np.diff(best) >= -1e-9).all(), best  # the expected best of more trials is never lower
    assert len(pd.read_csv(out / "budget_at_n.csv")) == len(methods)
    html = (out / "report.html").read_text()
    assert "Accuracy as a function of the number of trials" in html and "Leaderboard at equal budget" in html
    assert "Tuning cost per method and task" in html


def _study_with(tmp_path, finished: list[list[float]]):
    """A SQLite study (bench/prune.py) whose first trials reported `finished` (one list of epoch scores each)."""
    from bench import prune

    url = f"sqlite:///{tmp_path / 'search.db'}"
    for i, scores in enumerate(finished):
        run = tmp_path / f"done{i}"
        run.mkdir()
        prune.prepare(run, url, "cell", "median", len(scores), {"train.lr": 0.1 * (i + 1)})
        p = prune.Pruning.open(run)
        assert not any(p.report(e, v) for e, v in enumerate(scores, 1))
        p.finish(scores[-1], pruned=False)
    return url


def test_pruning_on_sqlite_stops_a_hopeless_trial_and_the_study_survives_a_restart(tmp_path):
    import optuna
    from optuna.trial import TrialState

    from bench import prune

    url = _study_with(tmp_path, [[80.0, 85.0, 90.0], [70.0, 75.0, 80.0]])
    run = tmp_path / "hopeless"
    run.mkdir()
    prune.prepare(run, url, "cell", "median", 3, {"train.lr": 10.0})
    first = prune.Pruning.open(run)
    number = first.trial.number
    del first  # the process dies mid-trial; a relaunch opens the same study and the same trial from the database
    again = prune.Pruning.open(run)
    assert again.trial.number == number and json.loads((run / prune.FILE).read_text())["trial"] == number
    assert again.report(1, 10.0)  # below the median of the two finished trials at epoch 1: stop
    again.finish(10.0, pruned=True)
    study = optuna.load_study(study_name="cell", storage=optuna.storages.RDBStorage(url))  # a new connection to the file
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.PRUNED]
    assert study.trials[2].user_attrs["train.lr"] == 10.0 and study.best_value == 90.0
    with pytest.raises(search.SearchError, match="valid: none, median, asha, hyperband"):
        search.Search(trials=2, pruner="bogus")
    assert search.Search(trials=4, pruner="asha").tag() == "search4-prunedasha"


def test_a_pruned_run_stops_before_its_last_epoch_and_is_recorded_as_pruned(tmp_path):
    from optuna.trial import TrialState

    from bench import prune, records
    from bench.config import DatasetConfig, RunConfig, TrainConfig, backbone_config
    from bench.run.runner import run

    url = _study_with(tmp_path, [[100.0] * 3, [100.0] * 3])  # unbeatable: the next trial is stopped at epoch 1
    cfg = RunConfig(method="linear", dataset=DatasetConfig("mini/count", "mini", "count", "structured", 8, 32),
                    backbone=backbone_config("vit_tiny_mini"), results_dir=str(tmp_path / "results"), deploy_iters=0,
                    save_weights=False, train=TrainConfig(epochs=3, progress=False))
    run_dir = records.run_dir(cfg.results_dir, "vit_tiny_mini", "mini/count", "linear", "", "val", 0)
    run_dir.mkdir(parents=True)
    prune.prepare(run_dir, url, "cell", "median", 3, {"train.lr": 0.001})
    rec = run(cfg)
    assert rec["status"] == "completed" and rec["pruned"] is True and rec["pruned_at_epoch"] == 1
    assert len(rec["history"]) == 1 and rec["val_top1"] == rec["history"][-1]["val_top1"] and "fit_time_s" in rec
    trial = prune.Pruning.open(run_dir).study.trials[2]
    assert trial.state == TrialState.PRUNED and trial.intermediate_values == {1: rec["val_top1"]}


def test_the_sweeper_gives_each_pruned_trial_its_study(hydra_sweeper, tmp_path):
    from types import SimpleNamespace

    from bench import prune

    loader, config, sweeper = hydra_sweeper
    sweeper.search = {"space": "default", "trials": 2, "sampler": "random", "seed": 0, "pruner": "hyperband", "storage": ""}
    try:
        jobs = sweeper._searched(sweeper._jobs(["method=ssf", "dataset=mini/count,mini/digits", f"results_dir={tmp_path}"]))
        runs = [run_of(sweeper._compose(j), j) for j in jobs]
        sweeper._prune(list(range(4)), jobs, [SimpleNamespace(run_dir=d) for d, _, _ in runs], [rc for _, _, rc in runs])
    finally:
        sweeper.search = {}
    specs = [json.loads((d / prune.FILE).read_text()) for d, _, _ in runs]
    assert {s["storage"] for s in specs} == {f"sqlite:///{tmp_path.resolve() / 'search.db'}"}
    assert specs[0]["study"] == specs[1]["study"] != specs[2]["study"] == specs[3]["study"]  # one study per task
    assert specs[0]["pruner"] == "hyperband" and specs[0]["epochs"] == 8 and "train.lr" in specs[0]["params"]


def test_pruned_trials_are_finished_but_never_selected(monkeypatch):
    module = sar()

    def fake(results_dir, backbone, dataset, expected, keys, pruned):
        pruned[(3.0,)] = [(0, 99.0, "c")]  # stopped early: its val is an early epoch's, never the winner
        return {(1.0,): [(0, 50.0, "a")], (2.0,): [(0, 60.0, "b")]}

    monkeypatch.setattr(module, "grid_points", fake)
    drawn = [(1.0,), (2.0,), (3.0,), (4.0,)]
    points, stopped, waiting = module.search_points("r", "bb", "ds", {}, ("train.lr",), drawn)
    assert list(points) == [(1.0,), (2.0,)] and list(stopped) == [(3.0,)] and waiting == [(4.0,)]
    assert module.select(points, [p for p in drawn if p in points]) == (2.0,)
    ev, _ = budget.expected_best([50.0, 60.0, 99.0], [1.0, 2.0, 3.0], n=[1, 50], eligible=[True, True, False])
    assert ev[0] == pytest.approx((50 + 60 + 99) / 3) and ev[1] == pytest.approx(60.0)  # the pruned one never wins
