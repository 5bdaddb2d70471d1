"""Experiment trackers on the real libraries, offline: what each tool holds is read back with the tool's own
reader (TensorBoard's event accumulator, MlflowClient, W&B's offline run file) and compared with the record.
A resumed run continues its tracker run; two processes log once; a tracker that raises leaves a completed
record; a missing library stops a launch in one line; API keys never land in any file.

A test that needs an optional library skips without it, except with CI=true, where it fails: CI installs
the extras (`.[test]` includes them) and must run these."""
import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

import bench.train.loop
from bench import CONF, records, trackers
from bench.config import ConfigError, DatasetConfig, RunConfig, TrainConfig, backbone_config
from bench.train import checkpoint
from conftest import ROOT, run_cli

SECRETS = {"WANDB_API_KEY": "wandbkey0123456789abcdef0123456789abcdef", "MLFLOW_TRACKING_TOKEN": "mlflowtoken-s3cr3t",
           "MLFLOW_TRACKING_PASSWORD": "mlflowpass-s3cr3t"}


def need(module: str) -> None:
    if not trackers._installed(module):
        message = f"{module} is not installed (pip install -e '.[{trackers.TRACKERS[module][2]}]')"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and {message}")
        pytest.skip(message)


def available() -> dict:
    return {name: {"every_n_steps": 5} if name != "csv" else {}
            for name, (_, module, _) in trackers.TRACKERS.items() if module is None or trackers._installed(module)}


def config(root, logger, epochs=2, sweep="sweep-a", method="linear", **train) -> RunConfig:
    return RunConfig(method=method, dataset=DatasetConfig("mini/count", "mini", "count", "structured", 8, 32),
                     backbone=backbone_config("vit_tiny_mini"), results_dir=str(root), deploy_iters=0,
                     save_weights=False, logger=logger, sweep=sweep,
                     train=TrainConfig(epochs=epochs, lr=1e-2, progress=False, checkpoint_interval_s=0,
                                       linear_fast_path=False, **train))


def run_dir(root) -> Path:
    (path,) = (Path(root) / "runs").rglob(records.RECORD)
    return path.parent


def scalars(logdir, tag):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def mlflow_client(uri: str):
    """MlflowClient on the local file store (MLflow 3 reads it only with MLFLOW_ALLOW_FILE_STORE=true)."""
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def wandb_records(run_file: Path) -> list:
    """The records of a W&B offline run file (`run-<id>.wandb`): a 7-byte header (":W&B", magic, version),
    then LevelDB-log blocks of 32 KiB of chunks (crc32 4, length 2, type 1: full, first, middle, last)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, out, pos, pending = run_file.read_bytes(), [], 7, b""
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        if left < 7:  # a block's tail too short for a chunk header is padding
            pos += left
            continue
        _, n, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0:
            pos += left
            continue
        pending += data[pos + 7:pos + 7 + n]
        pos += 7 + n
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pending)
            out.append(record)
            pending = b""
    return out


def wandb_run(run_file: Path) -> dict:
    """What an offline W&B run holds: its run record, config, summary and history rows, decoded."""
    out = {"config": {}, "summary": {}, "history": []}
    for r in wandb_records(run_file):
        kind = r.WhichOneof("record_type")
        if kind == "run":
            out["run"] = r.run
            out["config"].update({i.key: json.loads(i.value_json) for i in r.run.config.update})
        elif kind == "config":
            out["config"].update({i.key: json.loads(i.value_json) for i in r.config.update})
        elif kind == "summary":
            out["summary"].update({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.summary.update})
        elif kind == "history":
            out["history"].append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item})
    return out


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """One run with every installed tracker, API keys in the environment."""
    root = tmp_path_factory.mktemp("trackers")
    saved = {k: os.environ.get(k) for k in SECRETS}
    os.environ.update(SECRETS)
    try:
        from bench.run.runner import run

        rec = run(config(root, available()))
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    return root, rec


@pytest.mark.xdist_group("trackers_logged")
def test_csv_rows_are_the_history(logged):
    root, rec = logged
    import csv

    with open(run_dir(root) / trackers.SUMMARY) as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [h["epoch"] for h in rec["history"]] == [1, 2]
    assert [float(r["val_top1"]) for r in rows] == [h["val_top1"] for h in rec["history"]]
    assert [float(r["train_loss"]) for r in rows] == [h["train_loss"] for h in rec["history"]]
    assert all(float(r["images_per_s"]) > 0 and float(r["epoch_time_s"]) > 0 for r in rows)
    assert int(rows[-1]["step"]) == rec["optimizer_steps"]


@pytest.mark.xdist_group("trackers_logged")
def test_tensorboard_scalars_are_the_records_history(logged):
    need("tensorboard")
    root, rec = logged
    logdir = root / "tensorboard" / "sweep-a" / "vit_tiny_mini" / "mini" / "count" / "linear" / "val-seed0"
    assert json.loads((run_dir(root) / trackers.STATE).read_text())["tensorboard"]["logdir"] == str(logdir)
    steps_per_epoch = rec["optimizer_steps"] // 2
    for key in ("val_top1", "train_loss", "lr"):
        points = scalars(logdir, f"epoch/{key}")
        assert [s for s, _ in points] == [steps_per_epoch, 2 * steps_per_epoch]  # each epoch at its last step
        assert [v for _, v in points] == pytest.approx([h[key] for h in rec["history"]], rel=1e-6)  # float32 events
    assert [s for s, _ in scalars(logdir, "train/loss")] == list(range(5, rec["optimizer_steps"] + 1, 5))
    assert scalars(logdir, "final/test_top1")[0][1] == pytest.approx(rec["test_top1"])


@pytest.mark.xdist_group("trackers_logged")
def test_mlflow_run_holds_params_metrics_and_the_record(logged, tmp_path):
    need("mlflow")
    root, rec = logged
    state = json.loads((run_dir(root) / trackers.STATE).read_text())["mlflow"]
    client = mlflow_client(state["tracking_uri"])
    run = client.get_run(state["run_id"])
    assert state["tracking_uri"] == (root / "mlruns").resolve().as_uri()
    assert client.get_experiment(run.info.experiment_id).name == "sweep-a"  # the sweep groups its runs
    assert run.info.run_name == "vit_tiny_mini/mini/count/linear/val-seed0" and run.info.status == "FINISHED"
    assert run.data.params["train.lr"] == str(rec["config"]["train"]["lr"]) and run.data.params["method"] == "linear"
    assert run.data.tags["dataset"] == "mini/count" and run.data.tags["sweep"] == "sweep-a"
    history = client.get_metric_history(run.info.run_id, "epoch/val_top1")
    assert [(m.step, m.value) for m in history] == [(h["epoch"], h["val_top1"]) for h in rec["history"]]
    assert run.data.metrics["final/test_top1"] == rec["test_top1"]
    assert run.data.metrics["final/tunable_params"] == rec["tunable_params"]
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == [records.RECORD]
    local = client.download_artifacts(run.info.run_id, records.RECORD, str(tmp_path))
    assert json.loads(Path(local).read_text()) == json.loads((run_dir(root) / records.RECORD).read_text())


@pytest.mark.xdist_group("trackers_logged")
def test_wandb_offline_run_holds_config_summary_and_history(logged):
    need("wandb")
    root, rec = logged
    run_id = json.loads((run_dir(root) / trackers.STATE).read_text())["wandb"]["id"]
    (run_file,) = root.glob(f"wandb/offline-run-*-{run_id}/run-{run_id}.wandb")
    held = wandb_run(run_file)
    assert held["run"].display_name == "vit_tiny_mini/mini/count/linear/val-seed0"
    assert held["run"].run_group == "sweep-a" and held["run"].project == "peft-bench"
    assert held["config"]["method"] == "linear" and held["config"]["train"]["lr"] == rec["config"]["train"]["lr"]
    assert held["summary"]["final/test_top1"] == rec["test_top1"] and held["summary"]["status"] == "completed"
    epochs = [h for h in held["history"] if "epoch/val_top1" in h]
    assert [(h["epoch"], h["epoch/val_top1"]) for h in epochs] == [(h["epoch"], h["val_top1"]) for h in rec["history"]]
    assert [h["step"] for h in held["history"] if "train/loss" in h] == list(range(5, rec["optimizer_steps"] + 1, 5))


@pytest.mark.xdist_group("trackers_logged")
def test_api_keys_never_land_in_any_file(logged):
    root, _ = logged
    files = [p for p in root.rglob("*") if p.is_file()]
    assert len(files) > 5
    for path in files:
        data = path.read_bytes()
        for name, secret in SECRETS.items():
            assert secret.encode() not in data, f"{name}'s value in {path}"


def test_a_resumed_run_continues_its_tracker_runs(tmp_path, monkeypatch):
    """Killed right after the epoch-2 checkpoint of 3, relaunched: the same tracker runs (ids, TensorBoard
    folder), the steps and epochs going on from the checkpoint, each epoch once."""
    from bench.run.runner import run

    logger = available()
    cfg = config(tmp_path, logger, epochs=3)
    real_save = checkpoint.save

    def save_then_die(path, state):
        real_save(path, state)
        if state["epoch"] == 2:
            raise KeyboardInterrupt  # as a killed job: the run writes its failed record and re-raises

    monkeypatch.setattr(bench.train.loop.ckpt, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run(cfg)
    first = json.loads((run_dir(tmp_path) / trackers.STATE).read_text())
    monkeypatch.setattr(bench.train.loop.ckpt, "save", real_save)
    if "wandb" in logger:
        # W&B names an offline run's folder by the second it started (offline-run-<YYYYmmdd_HHMMSS>-<id>): a
        # relaunch in the same second would write into the killed attempt's folder. A real relaunch is a new
        # process, seconds later; here the linear probe's two epochs can take less than a second.
        time.sleep(1.1)
    rec = run(cfg)
    assert rec["resumed_from_epoch"] == 2 and rec["status"] == "completed"
    assert json.loads((run_dir(tmp_path) / trackers.STATE).read_text()) == first  # the same runs, reopened
    vals = [(h["epoch"], h["val_top1"]) for h in rec["history"]]
    per_epoch = rec["optimizer_steps"] // 3
    if "tensorboard" in logger:
        points = scalars(first["tensorboard"]["logdir"], "epoch/val_top1")
        assert [(s // per_epoch, v) for s, v in points] == vals  # each epoch once, in order (k/200 in %: exact in float32)
        assert [s for s, _ in scalars(first["tensorboard"]["logdir"], "train/loss")] == \
            list(range(5, rec["optimizer_steps"] + 1, 5))
    if "mlflow" in logger:
        client = mlflow_client(first["mlflow"]["tracking_uri"])
        history = client.get_metric_history(first["mlflow"]["run_id"], "epoch/val_top1")
        assert [(m.step, m.value) for m in history] == vals
        assert client.get_run(first["mlflow"]["run_id"]).info.status == "FINISHED"
        assert len(client.search_runs([client.get_run(first["mlflow"]["run_id"]).info.experiment_id])) == 1
    if "wandb" in logger:
        run_id = first["wandb"]["id"]
        attempts = sorted(tmp_path.glob(f"wandb/offline-run-*-{run_id}/run-{run_id}.wandb"))
        assert len(attempts) == 2  # one W&B run, two offline segments that `wandb sync` joins by id
        second = wandb_run(attempts[-1])
        assert [h["epoch"] for h in second["history"] if "epoch/val_top1" in h] == [3]
        assert min(h["step"] for h in second["history"] if "train/loss" in h) > 2 * per_epoch
    import csv

    with open(run_dir(tmp_path) / trackers.SUMMARY) as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [1, 2, 3]


def test_a_tracker_that_raises_warns_once_and_the_run_completes(tmp_path, monkeypatch, capsys):
    from bench.run.runner import run

    calls = []

    def full_disk(self, epoch, step, metrics):
        calls.append(epoch)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(trackers.CsvTracker, "log_epoch", full_disk)
    logger = {"csv": {}} | ({"tensorboard": {}} if trackers._installed("tensorboard") else {})
    rec = run(config(tmp_path, logger, epochs=2))
    err = capsys.readouterr().err
    assert rec["status"] == "completed" and calls == [1]  # dropped after its first failure
    assert err.count("[tracker] warning") == 1 and "csv failed in log_epoch (OSError" in err
    assert json.loads((run_dir(tmp_path) / records.RECORD).read_text())["status"] == "completed"
    if "tensorboard" in logger:  # the others go on
        logdir = json.loads((run_dir(tmp_path) / trackers.STATE).read_text())["tensorboard"]["logdir"]
        assert len(scalars(logdir, "epoch/val_top1")) == 2


def test_settings_are_checked_before_the_run(monkeypatch):
    with pytest.raises(ConfigError, match="logger=nope: unknown logger; valid: none, csv, tensorboard, wandb, mlflow"):
        trackers.settings({"nope": {}})
    with pytest.raises(ConfigError, match="logger.csv.dir: unknown key"):
        trackers.settings({"csv": {"dir": "x"}})
    monkeypatch.setattr(trackers, "_installed", lambda module: True)
    with pytest.raises(ConfigError, match="logger.wandb.every_n_steps=-1: must be >= 0"):
        trackers.settings({"wandb": {"every_n_steps": -1}})
    with pytest.raises(ConfigError, match="logger.wandb.mode=cloud: valid: auto, offline, online, disabled"):
        trackers.settings({"wandb": {"mode": "cloud"}})
    with pytest.raises(ConfigError, match="holds credentials"):
        trackers.settings({"mlflow": {"tracking_uri": "https://me:pw@mlflow.example/"}})
    monkeypatch.setattr(trackers, "_installed", lambda module: module != "mlflow")
    with pytest.raises(ConfigError, match=r"logger=mlflow needs the mlflow library.*pip install -e '\.\[mlflow\]'"):
        trackers.settings({"csv": {}, "mlflow": {}})
    assert RunConfig.__dataclass_fields__["logger"].default_factory() == {}
    assert config(".", ["csv", "none"]).logger == {"csv": {}} and config(".", "none").logger == {}


@pytest.mark.process
def test_a_missing_library_stops_the_launch_in_one_line(tmp_path):
    """The module made unimportable (as if the extra were not installed): exit 2 before any run, one line."""
    block = tmp_path / "block"
    block.mkdir()
    (block / "sitecustomize.py").write_text("import sys\nsys.modules['wandb'] = None\n")
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=f"{block}{os.pathsep}{ROOT}")
    for args in (["logger=[csv,wandb]"], ["-m", "method=linear,bias", "logger=wandb"]):
        proc = subprocess.run([sys.executable, "launch.py", *args, "dataset=mini/count", f"results_dir={tmp_path / 'r'}"],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, proc.stderr[-2000:]
        line = "logger=wandb needs the wandb library, which is not installed: pip install -e '.[wandb]'"
        assert line in proc.stderr.strip().splitlines()[-1]
        assert not list(tmp_path.rglob(records.RECORD))


@pytest.mark.parametrize("args,message", [
    (["logger=nope"], "error: option 'nope' matches no option of config group 'logger'."),
    (["logger=[csv,tensorboard]", "logger.tensorboard.every=3"],
     "error: logger.tensorboard.every: unknown key; valid logger keys: logger.tensorboard.dir,"),
    (["logger=csv", "logger.csv.every_n_steps=3"], "error: logger.csv.every_n_steps: unknown key; valid logger keys:"),
])
@pytest.mark.process
def test_a_bad_logger_is_one_line_exit_2_and_no_record(tmp_path, args, message):
    proc = run_cli("launch.py", "method=linear", "dataset=mini/count", *args, f"results_dir={tmp_path}", timeout=120)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and not list(tmp_path.rglob(records.RECORD))


def test_logger_config_files_are_the_settings():
    """conf/logger/<name>.yaml holds exactly its tracker's settings with their defaults (one fact per place)."""
    import dataclasses

    import yaml

    conf = CONF / "logger"
    assert sorted(p.stem for p in conf.glob("*.yaml")) == sorted(trackers.NAMES)
    assert yaml.safe_load((conf / "none.yaml").read_text()) is None
    for name, (cls, _, _) in trackers.TRACKERS.items():
        (key, values), = yaml.safe_load((conf / f"{name}.yaml").read_text()).items()
        assert key == name and values == dataclasses.asdict(cls.Settings())


def test_launch_combines_loggers_and_the_sweeper_composes_them_as_hydra():
    from bench.launch.cli import expand_group_args
    from bench.launch.identity import variant_from_overrides

    assert expand_group_args(["logger=[csv,tensorboard]"]) == ["logger=[csv,tensorboard]"]
    assert expand_group_args(["logger=tensorboard"]) == ["logger=tensorboard"]
    with pytest.raises(SystemExit):
        expand_group_args(["logger=[csv,nope]"])
    assert variant_from_overrides(["logger=[csv,wandb]", "logger.wandb.project=x", "sweep=s", "seed=1"]) == ""

    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.plugins import Plugins
    from hydra.plugins.sweeper import Sweeper
    from hydra.types import HydraContext, RunMode
    from omegaconf import OmegaConf, open_dict

    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        loader = GlobalHydra.instance().config_loader()
        cfg = loader.load_configuration("config", overrides=[], run_mode=RunMode.MULTIRUN)
        sweeper = next(c for c in Plugins.instance().discover(Sweeper) if c.__name__ == "BenchSweeper")()
        sweeper.hydra_context, sweeper.config = HydraContext(config_loader=loader, callbacks=None), cfg
        jobs = sweeper._jobs(["method=ssf,lora", "logger=[csv,tensorboard],mlflow,none", "sweep=s1"])
        assert len(jobs) == 6
        jobs += [["method=ssf", "logger=[tensorboard,wandb]", "logger.tensorboard.every_n_steps=3"], ["method=ssf"]]
        for job in jobs:
            exact = loader.load_sweep_config(cfg, list(job))
            with open_dict(exact):
                del exact["hydra"]
            assert sweeper._compose(job) == OmegaConf.to_container(exact, resolve=True), job
        assert sweeper._compose(jobs[-2])["logger"] == {"tensorboard": {"dir": "", "every_n_steps": 3},
                                                        "wandb": {"project": "peft-bench", "entity": "", "mode": "auto",
                                                                  "every_n_steps": 10}}
        assert sweeper._compose(jobs[-1])["logger"] == {}


@pytest.mark.process
def test_a_sweep_groups_its_runs_under_one_folder(tmp_path):
    need("tensorboard")
    proc = run_cli("launch.py", "-m", "method=linear", "seed=0,1", "dataset=mini/count", "logger=[csv,tensorboard]",
                   "train.epochs=1", "train.progress=false", "deploy_iters=0", "save_weights=false",
                   "logger.tensorboard.every_n_steps=0", f"results_dir={tmp_path}", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (sweep_dir,) = (tmp_path / "hydra" / "multirun").iterdir()  # Hydra's sweep folder names the sweep
    runs = sorted(str(p.parent.relative_to(tmp_path / "tensorboard")) for p in
                  (tmp_path / "tensorboard").rglob("events.out.tfevents.*"))
    assert runs == [f"{sweep_dir.name}/vit_tiny_mini/mini/count/linear-epochs1/val-seed{k}" for k in (0, 1)]
    for rec in (json.loads(p.read_text()) for p in (tmp_path / "runs").rglob(records.RECORD)):
        assert rec["config"]["sweep"] == sweep_dir.name and rec["variant"] == "epochs1"
    logs = "".join(p.read_text() for p in sweep_dir.rglob("output.log"))  # runs in their own processes: their output
    assert "[tracker] warning" not in proc.stderr + logs


@pytest.mark.distributed
@pytest.mark.process
def test_two_processes_log_once(tmp_path):
    """Under torchrun (2 CPU processes) only rank 0 logs: one tracker run, no second writer."""
    need("tensorboard")
    from test_distributed import MINI, TORCHRUN, run as run_procs

    logger = "[csv,tensorboard,mlflow]" if trackers._installed("mlflow") else "[csv,tensorboard]"
    proc = run_procs([*TORCHRUN, "--nproc-per-node", "2", "launch.py", *MINI, "train.epochs=1", "save_weights=false",
                      f"logger={logger}", f"results_dir={tmp_path}"], timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rec = json.loads(run_dir(tmp_path).joinpath(records.RECORD).read_text())
    assert rec["distributed"]["world_size"] == 2
    events = list((tmp_path / "tensorboard").rglob("events.out.tfevents.*"))
    assert len(events) == 1  # one writer
    assert len(scalars(events[0].parent, "epoch/val_top1")) == 1
    if "mlflow" in logger:
        client = mlflow_client((tmp_path / "mlruns").resolve().as_uri())
        runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
        assert len(runs) == 1
    assert "[tracker] warning" not in proc.stderr


@pytest.mark.xdist_group("trackers_logged")
@pytest.mark.process
@pytest.mark.parametrize("tool", ["tensorboard", "mlflow", "wandb"])
def test_analyze_sends_the_leaderboard_to_the_tracker(logged, tmp_path, tool):
    """analyze.py --log-to: the tables (and figures, when drawn) beside the runs, without importing torch."""
    need(tool)
    import shutil

    root = tmp_path / "results"
    shutil.copytree(logged[0] / "runs", root / "runs")
    script = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); import analyze\n"
              f"rc = analyze.main([{str(root)!r}, '--formats', 'csv,md', '--quiet', '--log-to', {tool!r}])\n"
              "assert 'torch' not in sys.modules, 'the analysis path imported torch'\n"
              "sys.exit(rc)\n")
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, MLFLOW_ALLOW_FILE_STORE="true"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"sent the tables and figures to {tool}" in proc.stdout
    tables = sorted(p.stem for p in (root / "leaderboard").glob("*.md"))
    assert "leaderboard_mini_val" in tables
    if tool == "tensorboard":
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        acc = EventAccumulator(str(root / "tensorboard" / "leaderboard"), size_guidance={"tensors": 0})
        acc.Reload()
        assert sorted(acc.Tags()["tensors"]) == [f"tables/{t}" for t in tables]
        md = acc.Tensors("tables/leaderboard_mini_val")[0].tensor_proto.string_val[0].decode()
        assert md == (root / "leaderboard" / "leaderboard_mini_val.md").read_text()
    elif tool == "mlflow":
        client = mlflow_client((root / "mlruns").resolve().as_uri())
        (run,) = client.search_runs([client.get_experiment_by_name("leaderboard").experiment_id])
        assert sorted(a.path for a in client.list_artifacts(run.info.run_id)) == \
            sorted(p.name for p in (root / "leaderboard").iterdir() if not p.name.startswith("."))
    else:
        (run_file,) = root.glob("wandb/offline-run-*/run-*.wandb")
        held = wandb_run(run_file)
        assert held["run"].run_group == "leaderboard" and held["run"].job_type == "analysis"
        logged_keys = {k.split("/")[1] for k in held["history"][0] if k.startswith("tables/")}  # a table: nested keys
        assert logged_keys == {p.stem for p in (root / "leaderboard").glob("*.csv")}


def test_analyze_log_to_without_the_library_is_one_line(tmp_path, monkeypatch, capsys):
    import analyze

    monkeypatch.setattr(trackers, "_installed", lambda module: False)
    assert analyze.main([str(tmp_path), "--log-to", "wandb"]) == 2
    assert capsys.readouterr().err.strip() == ("error: logger=wandb needs the wandb library, which is not installed: "
                                               "pip install -e '.[wandb]'")
