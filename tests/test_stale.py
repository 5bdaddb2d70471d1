"""A run is what its configuration says: a finished run of another configuration is stale (run again, the old
folder kept beside), one value is one variant however it is spelt, and analyze.py never pools two configurations."""
import dataclasses
import functools
import json
import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from bench import CONF, records
from bench.analysis.load import config_notes, load_summaries
from bench.analysis.tables import cell_stats, with_labels
from bench.config import config_changes, config_hash, config_key
from bench.launch import sweep
from bench.launch.identity import run_path, to_run_config, value_name, variant_from_overrides
from conftest import ROOT

MINI = ["dataset=mini/count", "train.epochs=1", "train.progress=false", "deploy_iters=0", "save_weights=false"]


@functools.lru_cache(maxsize=None)
def composed(*overrides: str):
    """The RunConfig launch.py makes of `overrides` (no -m), composed by Hydra here (once; tests replace, never change it)."""
    overrides = ["method=lora", *MINI, *overrides]
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose("config", overrides=overrides)
    return to_run_config(OmegaConf.to_container(cfg, resolve=True), overrides)


def record_of(rc, status="completed", **fields) -> dict:
    """A record as bench.run.runner writes it: the config with the method's arguments filled in, through JSON."""
    from methods import method_config

    config = dataclasses.asdict(rc) | {"method_args": dataclasses.asdict(method_config(rc.method, rc.method_args))}
    rec = {"status": status, "method": rc.method, "variant": rc.variant, "dataset": rc.dataset.name,
           "backbone": rc.backbone.name, "seed": rc.seed, "protocol": rc.protocol, "config": config, **fields}
    return json.loads(json.dumps(rec, default=str))


def test_one_value_is_one_variant_and_one_configuration():
    assert {value_name(v) for v in ("1e-3", "0.001", "1.0e-3", "+1E-3")} == {"0.001"}
    assert (value_name("50.0"), value_name("1"), value_name("1e-05"), value_name("qkv"), value_name("nan")) \
        == ("50.0", "1", "1e-5", "qkv", "nan")  # the grids' spellings (conf/grid/) stay as they were
    assert (value_name("1", float), value_name("8.0", int)) == ("1.0", "8")  # the setting's type, where known
    assert variant_from_overrides(["++train.lr=1e-3", "++train.epochs=5.0", "++method.r=8"]) == "r8_epochs5_lr0.001" \
        == variant_from_overrides(["++train.lr=0.001", "++train.epochs=5", "++method.r=8"])
    a, b = composed("++train.lr=1e-3"), composed("++train.lr=0.001")
    assert run_path(a) == run_path(b) and config_hash(a) == config_hash(b)


def test_configuration_compares_what_changes_a_result():
    rc = composed()
    h = config_hash(rc)
    assert config_hash(record_of(rc)["config"]) == h  # the record's filled-in method arguments, through JSON: the same
    same = dataclasses.replace(rc, seed=3, results_dir="/elsewhere", sweep="s", logger={"csv": {}},
                               recipe=dataclasses.replace(rc.recipe, title="renamed", differences=["a note"]),
                               train=dataclasses.replace(rc.train, num_threads=2, progress=True))
    assert config_hash(same) == h  # seed, operational settings, the recipe's description
    rec = record_of(rc)
    del rec["config"]["train"]["ema_decay"]  # a record written before a setting existed (at its default): the same
    assert config_hash(rec["config"]) == h
    other = dataclasses.replace(rc, train=dataclasses.replace(rc.train, lr=0.005))
    assert config_hash(other) != h
    assert config_changes(config_key(rc), config_key(other)) == [f"train.lr: {rc.train.lr} -> 0.005"]
    mixup = dataclasses.replace(rc, train=dataclasses.replace(rc.train, mixup=0.8))
    assert config_changes(config_key(rc), config_key(mixup)) == ["train.mixup: default -> 0.8"]


def write_run(root, rc, rec=None, checkpoint=False, job=None):
    d = run_path(dataclasses.replace(rc, results_dir=str(root)))
    d.mkdir(parents=True)
    if rec:
        records.write_json_atomic(d / records.RECORD, rec)
    if checkpoint:
        (d / sweep.CHECKPOINT).write_bytes(b"checkpoint")
    if job:
        records.write_json_atomic(d / sweep.JOB, job)
    return d


def test_a_finished_run_of_another_configuration_is_stale(tmp_path):
    old = composed()
    new = dataclasses.replace(old, train=dataclasses.replace(old.train, lr=0.005))
    dead = {"state": "running", "host": os.uname().nodename, "pid": 2**22 + 12345, "pid_start": "1"}
    runs = {"done": write_run(tmp_path, old, record_of(old)),
            "unchanged": write_run(tmp_path, dataclasses.replace(old, seed=1), record_of(new, seed=1)),
            "unknown": write_run(tmp_path, dataclasses.replace(old, seed=2), record_of(old, config=None, seed=2)),
            "cut": write_run(tmp_path, dataclasses.replace(old, seed=3), checkpoint=True,
                             job=dead | {"config_hash": config_hash(old)}),
            "failed": write_run(tmp_path, dataclasses.replace(old, seed=4), record_of(old, "failed", seed=4))}
    inspector = sweep.Inspector(queue=lambda: {})
    states = {k: inspector.inspect(d, sweep.identity_from_path(d, tmp_path), None, lambda: new) for k, d in runs.items()}
    assert {k: s.state for k, s in states.items()} == {"done": "stale", "unchanged": "completed", "unknown": "completed",
                                                      "cut": "stale", "failed": "failed"}
    assert states["done"].detail == f"train.lr: {old.train.lr} -> 0.005" and states["done"].other_config == config_hash(old)
    assert states["cut"].detail.startswith("a checkpoint of another configuration")
    # nothing compared (config=None), or the same configuration: as before, no stale column
    same = inspector.inspect(runs["done"], sweep.identity_from_path(runs["done"], tmp_path), None, lambda: old)
    assert same.state == "completed" and "stale" not in sweep.table([same]).splitlines()[0]

    todo, line = sweep.plan(list(states.values()))
    assert {s.run_dir for s in todo} == {runs["done"], runs["cut"], runs["failed"]}
    assert "2 stale: run with another configuration" in line and "submitting 3" in line
    report = sweep.report(list(states.values()))
    total = next(line for line in report.splitlines() if line.startswith("total")).split()
    assert report.splitlines()[1].split()[-1] == "stale" and total[1:] == ["2", "1", "0", "0", "0", "2"]
    assert f"1 run(s): train.lr: {old.train.lr} -> 0.005" in report
    moved = sweep.archive(states["done"])
    assert moved.name == f"{runs['done'].name}~config-{config_hash(old)[:8]}" and not runs["done"].exists()
    assert json.loads((moved / records.RECORD).read_text()) == record_of(old)
    assert sweep.stale_line(states["done"], moved).startswith(f"[stale] {runs['done']}: run with another configuration")


def test_analysis_never_pools_two_configurations_of_one_cell():
    old = composed()
    new = dataclasses.replace(old, train=dataclasses.replace(old.train, lr=0.005))
    recs = [record_of(old, seed=0, test_top1=50.0, started_at="2026-01-01"),
            record_of(old, seed=1, test_top1=52.0, started_at="2026-01-02"),
            record_of(new, seed=0, test_top1=70.0, started_at="2026-02-01", config_hash=config_hash(new))]
    df = pd.DataFrame(recs)
    cells = cell_stats(df)
    label = f"lora-{old.variant}"
    assert dict(zip(cells.index.get_level_values("method"), cells["mean"])) == {
        f"{label}[config {config_hash(old)[:8]}]": 51.0, f"{label}[config {config_hash(new)[:8]}]": 70.0}
    (note,) = config_notes(with_labels(df))
    assert f"[config {config_hash(old)[:8]}] -> " in note and f"train.lr: {old.train.lr} -> 0.005" in note
    one = pd.DataFrame(recs[:2])  # one configuration: one row, as before
    assert list(cell_stats(one).index.get_level_values("method")) == [label] and config_notes(with_labels(one)) == []


@pytest.mark.process
def test_relaunch_after_a_recipe_edit_runs_again_and_keeps_the_old_run(tmp_path):
    """A real recipe file edited in a copy of the project: the relaunch names the change, runs again, keeps the old."""
    project, results = tmp_path / "project", tmp_path / "results"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("bench", "methods", "hydra_plugins", "conf", "weights"):
        shutil.copytree(ROOT / name, project / name, ignore=ignore)
    shutil.copy(ROOT / "launch.py", project / "launch.py")
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(project))

    def launch(*args):
        proc = subprocess.run([sys.executable, "launch.py", *args, *MINI, f"results_dir={results}"], cwd=project,
                              env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        return proc.stdout

    grid = ["-m", "method=lora"]
    assert "[completed]" in launch(*grid)
    (path,) = results.rglob(records.RECORD)
    before = json.loads(path.read_text())
    recipe = project / "conf/recipe/method/mini/mini/lora.yaml"  # the mini recipe's LoRA learning rate
    assert "lr: 1.0e-2" in recipe.read_text()
    recipe.write_text(recipe.read_text().replace("lr: 1.0e-2", "lr: 5.0e-3"))

    status = launch("--status", *grid)
    assert status.splitlines()[1].split()[-1] == "stale" and "train.lr: 0.01 -> 0.005" in status
    again = launch(*grid)
    kept = path.parent.with_name(f"{path.parent.name}~config-{before['config_hash'][:8]}")
    assert "1 stale" in again and f"[stale] {path.parent}: run with another configuration (train.lr: 0.01 -> 0.005); " \
        f"kept as {kept}" in again and "[completed]" in again
    assert json.loads((kept / records.RECORD).read_text()) == before
    after = json.loads(path.read_text())
    assert after["config"]["train"]["lr"] == 0.005 and after["config_hash"] != before["config_hash"]
    assert "submitting 0: nothing to do" in launch(*grid)  # the new run is the configuration: done

    df, _ = load_summaries(results)  # both records, one cell: two rows, the note names the change
    assert sorted(cell_stats(df).index.get_level_values("method")) == sorted(
        f"lora-epochs1[config {h[:8]}]" for h in (before["config_hash"], after["config_hash"]))
    assert "train.lr: 0.01 -> 0.005" in config_notes(with_labels(df))[0]

    spelt = launch("--status", "-m", "method=lora", "train.lr=1e-3,0.001")  # one value, two spellings: one run
    assert "1 runs in the grid" in spelt and "1 job(s) name a run another job names" in spelt


def test_a_single_run_of_another_configuration_runs_again(tmp_path, monkeypatch, capsys):
    """launch.py without -m: the stale run's folder moves aside before it runs; an unchanged one is skipped."""
    import copy

    from bench.launch import job
    from bench.run import runner

    overrides = ["method=lora", *MINI, f"results_dir={tmp_path}"]
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = OmegaConf.to_container(compose("config", overrides=overrides), resolve=True)
    edited = copy.deepcopy(cfg)
    edited["train"]["lr"] = 0.005  # as a recipe edit would compose it: the same run folder, another configuration
    old, new = to_run_config(copy.deepcopy(cfg), overrides), to_run_config(copy.deepcopy(edited), overrides)
    folder = run_path(old)
    folder.mkdir(parents=True)
    records.write_json_atomic(folder / records.RECORD, record_of(old))
    ran = []
    monkeypatch.setattr(runner, "run", lambda rc: ran.append(rc) or {"test_top1": None})
    monkeypatch.setattr(job, "_freeze_once", lambda: None)  # this test's process is not a run's to freeze

    job.start(copy.deepcopy(edited), overrides, multirun=False, output_dir=str(tmp_path / "out"))
    kept = folder.with_name(f"{folder.name}~config-{config_hash(old)[:8]}")
    assert f"[stale] {folder}: run with another configuration (train.lr: {old.train.lr} -> 0.005); kept as {kept}" \
        in capsys.readouterr().out
    assert json.loads((kept / records.RECORD).read_text()) == record_of(old) and len(ran) == 1
    assert json.loads((folder / sweep.JOB).read_text())["config_hash"] == config_hash(new)

    records.write_json_atomic(folder / records.RECORD, record_of(new))  # the rerun's record: done, skipped
    job.start(copy.deepcopy(edited), overrides, multirun=False, output_dir=str(tmp_path / "out"))
    assert "[skipped]" in capsys.readouterr().out and len(ran) == 1
