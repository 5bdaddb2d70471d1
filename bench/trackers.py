"""Experiment trackers: a run seen live in the tool a lab already uses (`logger=tensorboard|wandb|mlflow|csv`).

The record (bench/records.py) stays the one truth of a run; a tracker is a copy for watching and
comparing, so nothing here may fail a run: a tracker that raises warns once, is dropped, and the run
goes on. Each tool is one small class behind one interface (`start`, `log_step`, `log_epoch`,
`finish`) and one registry entry (`TRACKERS`); its client library is an optional extra
(`pip install -e '.[wandb]'`), imported only when the tracker starts, and checked before any run
starts (`check`).

What is logged: the resolved configuration as hyper-parameters and the run's identity as tags; every
`every_n_steps` optimizer steps the training loss and learning rate (`train/loss`, `train/lr`); each
epoch the history entry (`epoch/train_loss`, `epoch/lr`, `epoch/val_top1`) with the epoch's training
time and images/s; at the end the record's final metrics (`final/test_top1`, ...) and the record file.
Runs are named like their run folder (`<backbone>/<dataset>/<method>[-<variant>]/<protocol>-seed<k>`)
and grouped by their sweep (`RunConfig.sweep`: a W&B group, an MLflow experiment, a TensorBoard
folder). Only rank 0 logs. A resumed run continues its tracker run: the ids are kept beside the
record in `trackers.json`, and a run that resumes from its checkpoint reopens them.

Credentials (API keys, a tracking URI's `user:password@`) come from the environment only and are never
written: `trackers.json` keeps run ids and digests of what came from the environment (a resumed run
says when its own differs), and every message from or about a tracker passes through `redact`
(docs/trackers.md).

Torch-free at import, like bench/config.py: launch.py checks loggers before torch loads.
"""
import contextlib
import csv
import dataclasses
import hashlib
import importlib.util
import io
import json
import os
import re
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.config import RULES as BASE
from bench.config import ConfigError, from_dict, one_of
from bench.records import RECORD, atomic_file, write_json_atomic

STATE = "trackers.json"  # beside the record: each tracker's run ids, so a resumed run continues the same tracker run
SUMMARY = "summary.csv"  # logger=csv: one row per epoch beside the record (timm's train.py writes summary.csv)
FINAL = ("test_top1", "val_top1", "deployed_test_top1", "tunable_params", "tunable_params_no_head", "total_params",
         "inference_extra_params", "inference_images_per_s_ratio", "peak_memory_mb", "train_peak_memory_mb",
         "wall_time_s", "train_time_s", "train_images_per_s", "optimizer_steps")  # record keys logged as final/<key>
# environment variables whose values are secrets: masked wherever a tracker's message is shown (`redact`)
SECRET_VARIABLES = ("WANDB_API_KEY", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN", "DATABRICKS_TOKEN",
                    "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AZURE_STORAGE_ACCESS_KEY",
                    "AZURE_STORAGE_CONNECTION_STRING", "HF_TOKEN")
URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "WANDB_BASE_URL")  # URIs that may hold user:password@
USERINFO = re.compile(r"(?<=://)[^/@\s]+@")  # `user:password@` (or `token@`) right after a URI's scheme


def redact(text) -> str:
    """`text` with every `user:password@` of a URI and the value of each secret variable set here masked.

    The one function every message from or about a tracker passes through before it is printed or written:
    the tools put their tracking URI, credentials included, into their errors.
    """
    text = USERINFO.sub("***@", str(text))
    secrets = [os.environ.get(name, "") for name in SECRET_VARIABLES]
    for name in URI_VARIABLES:  # a password given inside a URI, wherever the tool quotes it apart from the URI
        parts = urlsplit(os.environ.get(name, ""))
        secrets += [parts.password or "", f"{parts.username}:{parts.password}" if parts.password else ""]
    for secret in sorted(set(secrets), key=len, reverse=True):
        if len(secret) >= 4:  # a value that short would mask ordinary words
            text = text.replace(secret, "***")
    return text


class _Redacting:
    """A text stream that writes what it is given through `redact` (the tools print their URIs themselves)."""

    def __init__(self, stream) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(redact(text))
        return len(text)

    def __getattr__(self, name: str):  # flush, fileno, encoding, isatty...: the stream's
        return getattr(self._stream, name)


@contextlib.contextmanager
def redacted_output():
    """While a tracker's library runs: what it prints to sys.stdout or sys.stderr (MLflow prints its run's URL,
    credentials included; warnings go to sys.stderr) passes through `redact`."""
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Redacting(out), _Redacting(err)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = out, err


def _environment(values: dict[str, str]) -> dict[str, str]:
    """What a tracker read from the environment, as digests of the values (credentials masked first): kept in
    trackers.json so that a resumed run can say when its environment differs, without keeping the values."""
    return {k: "sha256:" + hashlib.sha256(redact(v).encode()).hexdigest()[:16] for k, v in values.items() if v}


def _compare_environment(name: str, first: dict | None, now: dict[str, str]) -> None:
    """One line when the tracker settings this attempt took from its environment are not the first attempt's."""
    if first is None:
        return
    differ = sorted(k for k in set(first) | set(now) if first.get(k) != now.get(k))
    if differ:
        print(f"[tracker] {name}: {', '.join(differ)} not as in the first attempt of this run; this attempt uses "
              f"the environment it runs in", file=sys.stderr, flush=True)


# --- what each tracker is told ------------------------------------------------------------------
@dataclass
class RunInfo:
    name: str  # the run folder under <results_dir>/runs: the same name on disk and in the tracker
    run_dir: Path
    results_dir: Path
    sweep: str  # the group ("" for a lone run)
    config: dict  # the record's resolved config (nested)
    tags: dict[str, str]  # the run's identity

    def params(self) -> dict[str, Any]:
        """The config flattened to dotted keys with plain values (lists and mappings as JSON)."""
        out = {}

        def walk(prefix: str, node):
            if isinstance(node, dict) and node:
                for k, v in node.items():
                    walk(f"{prefix}.{k}" if prefix else str(k), v)
            elif isinstance(node, (bool, int, float, str)):
                out[prefix] = node
            else:
                out[prefix] = json.dumps(node, default=str)
        walk("", self.config)
        return out


def _final(record: dict) -> dict[str, float]:
    return {f"final/{k}": float(record[k]) for k in FINAL
            if isinstance(record.get(k), (int, float)) and not isinstance(record.get(k), bool)}


def _epoch_metrics(metrics: dict) -> dict[str, float]:
    return {f"epoch/{k}": float(v) for k, v in metrics.items()
            if k != "epoch" and isinstance(v, (int, float)) and not isinstance(v, bool)}


# --- one class per tool -------------------------------------------------------------------------
class Tracker:
    """One tool. `start` opens (or, given the state it returned before, reopens) the tool's run and
    returns what to keep to reopen it; the rest log. Subclasses name their `Settings` dataclass."""

    @dataclass
    class Settings:
        pass

    def __init__(self, settings, info: RunInfo):
        self.settings, self.info = settings, info

    def start(self, state: dict | None, step: int) -> dict:
        return {}

    def log_step(self, step: int, metrics: dict[str, float]) -> None:
        pass

    def log_epoch(self, epoch: int, step: int, metrics: dict) -> None:
        pass

    def finish(self, record: dict, record_path: Path) -> None:
        pass

    def every(self) -> int:
        """Log one optimizer step in this many (0: none)."""
        return getattr(self.settings, "every_n_steps", 0)


class CsvTracker(Tracker):
    """summary.csv beside the record, one row per epoch, rewritten whole (atomically) each epoch: rows of
    epochs a resumed run trains again are replaced, never repeated."""

    def log_epoch(self, epoch, step, metrics):
        path = self.info.run_dir / SUMMARY
        row = {"epoch": epoch, "step": step} | {k: v for k, v in metrics.items() if k != "epoch"}
        rows = []
        if path.is_file():
            with open(path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["epoch"]) < epoch]
        rows.append(row)
        columns = list(dict.fromkeys(k for r in rows for k in r))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, columns)
        writer.writeheader()
        writer.writerows(rows)
        with atomic_file(path) as tmp:
            tmp.write_text(buf.getvalue())


class TensorBoardTracker(Tracker):
    """Event files under <dir>/<sweep>/<run name>, every scalar against the optimizer step (epoch scalars at
    the epoch's last step), the config as hyper-parameters (HPARAMS tab) and text. A resumed run writes into
    the same folder from its checkpoint's step, purging what the lost attempt wrote after it (purge_step)."""

    @dataclass
    class Settings:
        dir: str = ""  # "": <results_dir>/tensorboard
        every_n_steps: int = 10

    def start(self, state, step):
        from torch.utils.tensorboard import SummaryWriter

        root = Path(self.settings.dir) if self.settings.dir else self.info.results_dir / "tensorboard"
        logdir = Path(state["logdir"]) if state else root / (self.info.sweep or ".") / self.info.name
        # events the lost attempt wrote after the checkpoint's step are hidden (a fresh start: all of a previous attempt's)
        self.writer = SummaryWriter(str(logdir), purge_step=step + 1 if state else 0, flush_secs=30)
        if not state:
            from torch.utils.tensorboard.summary import hparams

            for summary in hparams(self.info.params(), {f"final/{k}": 0.0 for k in FINAL}):
                self.writer.file_writer.add_summary(summary)
            self.writer.add_text("config", "    " + json.dumps(self.info.config, indent=1).replace("\n", "\n    "))
        return {"logdir": str(logdir)}

    def log_step(self, step, metrics):
        for k, v in metrics.items():
            self.writer.add_scalar(k, v, step)

    def log_epoch(self, epoch, step, metrics):
        for k, v in _epoch_metrics(metrics | {"epoch": epoch}).items():
            self.writer.add_scalar(k, v, step)
        self.writer.add_scalar("epoch/epoch", epoch, step)
        self.writer.flush()  # an epoch is worth seeing now

    def finish(self, record, record_path):
        step = record.get("optimizer_steps") or 0
        for k, v in _final(record).items():
            self.writer.add_scalar(k, v, step)
        self.writer.add_text("status", f"{record['status']}: {(record.get('error') or {}).get('message', '')}", step)
        self.writer.close()


class WandbTracker(Tracker):
    """A W&B run: offline by default (no network; `wandb sync <results_dir>/wandb/offline-run-*` uploads
    it later), named like the run folder, grouped by sweep; a resumed run reopens the same id
    (`resume="allow"`). Step and epoch scalars each have their own x-axis (`step`, `epoch`)."""

    @dataclass
    class Settings:
        project: str = "peft-bench"
        entity: str = ""  # "": the logged-in user's default
        mode: str = "auto"  # offline | online | disabled | auto: $WANDB_MODE, else offline
        every_n_steps: int = 10

    def start(self, state, step):
        import wandb

        run_id = state["id"] if state else uuid.uuid4().hex[:16]
        environment = _environment({"WANDB_MODE": os.environ.get("WANDB_MODE", "") if self.settings.mode == "auto"
                                    else "", "WANDB_BASE_URL": os.environ.get("WANDB_BASE_URL", ""),
                                    "WANDB_ENTITY": os.environ.get("WANDB_ENTITY", "") if not self.settings.entity
                                    else ""})
        if state:
            _compare_environment("wandb", state.get("environment"), environment)
        self.run = wandb.init(
            project=self.settings.project, entity=self.settings.entity or None, id=run_id,
            resume="allow" if state else None, name=self.info.name, group=self.info.sweep or None,
            mode=self.settings.mode if self.settings.mode != "auto" else os.environ.get("WANDB_MODE") or "offline", dir=str(self.info.results_dir),
            config=self.info.config, tags=list(dict.fromkeys(str(v)[:64] for v in self.info.tags.values() if v)),
            reinit="create_new", settings=wandb.Settings(console="off", silent=True))
        self.run.define_metric("step")
        self.run.define_metric("train/*", step_metric="step")
        self.run.define_metric("epoch")
        self.run.define_metric("epoch/*", step_metric="epoch")
        return {"id": run_id, "project": self.settings.project,
                "environment": state.get("environment", environment) if state else environment}

    def log_step(self, step, metrics):
        self.run.log(metrics | {"step": step})

    def log_epoch(self, epoch, step, metrics):
        self.run.log(_epoch_metrics(metrics) | {"epoch": epoch})

    def finish(self, record, record_path):
        import wandb

        self.run.summary.update(_final(record) | {"status": record["status"]})
        artifact = wandb.Artifact(f"record-{self.run.id}", type="record")
        artifact.add_file(str(record_path), name=RECORD)
        self.run.log_artifact(artifact)
        self.run.finish(exit_code=0 if record["status"] in ("completed", "unsupported") else 1)


class MlflowTracker(Tracker):
    """An MLflow run in the experiment named by the sweep (or `experiment`), run name = run folder; the
    config as params, the identity as tags, the record as an artefact. Tracking store: `tracking_uri`,
    else $MLFLOW_TRACKING_URI, else a local file store <results_dir>/mlruns (no server, no network)."""

    @dataclass
    class Settings:
        tracking_uri: str = ""  # "": $MLFLOW_TRACKING_URI, else file:<results_dir>/mlruns; credentials: MLflow's env vars
        experiment: str = ""  # "": the sweep's name, else "bench"
        every_n_steps: int = 10

    def start(self, state, step):
        from mlflow.entities import Param, RunTag
        from mlflow.tracking import MlflowClient

        uri, where = _mlflow_uri(self.settings, self.info.results_dir)
        environment = _environment({where: uri} if where == "MLFLOW_TRACKING_URI" else {})
        self.client = client = MlflowClient(tracking_uri=uri)
        if state:
            _compare_environment("mlflow", state.get("environment"), environment)
            self.run_id = state["run_id"]
            client.update_run(self.run_id, status="RUNNING")
            # an older trackers.json may hold an environment's URI: kept no longer
            return {k: v for k, v in state.items() if k != "tracking_uri" or where != "MLFLOW_TRACKING_URI"}
        name = self.settings.experiment or self.info.sweep or "bench"
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            try:
                experiment_id = client.create_experiment(name)
            except Exception:  # created meanwhile by another job of the sweep
                experiment_id = client.get_experiment_by_name(name).experiment_id
        else:
            experiment_id = experiment.experiment_id
        tags = {k: str(v) for k, v in self.info.tags.items()} | {"sweep": self.info.sweep}
        self.run_id = client.create_run(experiment_id, run_name=self.info.name, tags=tags).info.run_id
        params = [Param(k, str(v)[:6000]) for k, v in self.info.params().items()]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
            client.log_batch(self.run_id, params=params[i:i + 100])
        client.log_batch(self.run_id, tags=[RunTag("mlflow.note.content", f"run folder: {self.info.run_dir}")])
        # the URI itself only where it is the config's or the default store: one from the environment is not kept
        return {"run_id": self.run_id, "environment": environment} | (
            {"tracking_uri": uri} if where != "MLFLOW_TRACKING_URI" else {})

    def _log(self, metrics: dict, step: int) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step) for k, v in metrics.items()])

    def log_step(self, step, metrics):
        self._log(metrics, step)

    def log_epoch(self, epoch, step, metrics):
        self._log(_epoch_metrics(metrics), epoch)

    def finish(self, record, record_path):
        self._log(_final(record), record.get("optimizer_steps") or 0)
        self.client.log_artifact(self.run_id, str(record_path))
        self.client.set_tag(self.run_id, "status", record["status"])
        self.client.set_terminated(self.run_id, "FINISHED" if record["status"] in ("completed", "unsupported")
                                   else "FAILED")


def _mlflow_uri(settings: MlflowTracker.Settings, results_dir: Path) -> tuple[str, str]:
    """The tracking URI and where it came from: `logger.mlflow.tracking_uri`, $MLFLOW_TRACKING_URI, or the
    default file store <results_dir>/mlruns ("default")."""
    if settings.tracking_uri:
        uri, where = settings.tracking_uri, "logger.mlflow.tracking_uri"
    elif os.environ.get("MLFLOW_TRACKING_URI"):
        uri, where = os.environ["MLFLOW_TRACKING_URI"], "MLFLOW_TRACKING_URI"
    else:
        uri, where = (Path(results_dir) / "mlruns").resolve().as_uri(), "default"
    if uri.startswith("file:"):  # MLflow 3 keeps the file store behind this opt-in (it prefers a database)
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return uri, where


# name -> (class, the module it needs, the pyproject extra that installs it); `none` selects nothing
TRACKERS: dict[str, tuple[type, str | None, str | None]] = {
    "csv": (CsvTracker, None, None),
    "tensorboard": (TensorBoardTracker, "tensorboard", "tensorboard"),
    "wandb": (WandbTracker, "wandb", "wandb"),
    "mlflow": (MlflowTracker, "mlflow", "mlflow"),
}
NAMES = ("none", *TRACKERS)  # the logger config group's options (conf/logger/<name>.yaml)
RULES = {f"logger.{n}.every_n_steps": (lambda v: v >= 0, "must be >= 0") for n in TRACKERS} | {
    "logger.wandb.mode": one_of("auto", "offline", "online", "disabled")}


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # ValueError: a module set to None in sys.modules (blocked)
        return False


def settings(logger: dict) -> dict[str, Any]:
    """Each chosen tracker's validated Settings, by name, in order.

    Raises:
        ConfigError: an unknown tracker, a bad setting, credentials in a URI, or a tracker whose client
            library is not installed (naming the extra that installs it), before any run starts.
    """
    out = {}
    for name, values in logger.items():
        if name not in TRACKERS:
            raise ConfigError(f"logger={name}: unknown logger; valid: {', '.join(NAMES)}")
        cls, module, extra = TRACKERS[name]
        out[name] = from_dict(cls.Settings, dict(values or {}), f"logger.{name}", BASE | RULES)
        if module is not None and not _installed(module):
            raise ConfigError(f"logger={name} needs the {module} library, which is not installed: "
                              f"pip install -e '.[{extra}]'")
        uri = getattr(out[name], "tracking_uri", "")
        if uri and (urlsplit(uri).username or urlsplit(uri).password):
            raise ConfigError(f"logger.{name}.tracking_uri: holds credentials, which would land in the record; "
                              "give them as MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD instead")
    return out


# --- the group a run talks to -----------------------------------------------------------------
class Trackers:
    """The run's trackers together; every call is guarded: a tracker that raises warns once and is dropped.

    `start(resumed_from_epoch, step)` is called by the training loop once it knows whether it resumed
    from a checkpoint: a resumed run reopens the tracker runs kept in trackers.json, a fresh one opens
    new ones and keeps their ids there. `finish` starts them first if training never began (a run that
    failed in setup still shows up, failed).
    """

    def __init__(self, members: list[Tracker], run_dir: Path):
        self.members, self.run_dir, self.started = members, Path(run_dir), False

    def __bool__(self) -> bool:
        return bool(self.members)

    def _call(self, tracker: Tracker, what: str, *args):
        try:
            with redacted_output():
                return getattr(tracker, what)(*args)
        except Exception as e:  # a tracker never fails the run: the record does not depend on it
            name = _name(tracker)
            message = redact(str(e)).strip().splitlines()[0][:300] if str(e).strip() else ""
            print(f"[tracker] warning: {name} failed in {what} ({type(e).__name__}: {message}); the run goes on "
                  f"without it (the record does not depend on it)", file=sys.stderr, flush=True)
            self.members.remove(tracker)

    def start(self, resumed_from_epoch: int, step: int) -> None:
        if self.started or not self.members:
            return
        self.started = True
        path = self.run_dir / STATE
        kept = {}
        if resumed_from_epoch > 0 and path.is_file():
            try:
                kept = json.loads(path.read_text())
            except (OSError, ValueError):
                kept = {}
        state = {}
        for tracker in list(self.members):
            name = _name(tracker)
            state[name] = self._call(tracker, "start", kept.get(name) if resumed_from_epoch > 0 else None, step)
        state = {n: s for n, s in state.items() if s is not None and any(_name(t) == n for t in self.members)}
        write_json_atomic(path, kept | state)

    def log_step(self, step: int, loss, lr: float) -> None:
        """`loss`: the step's mean loss as a tensor on the device, read (a host sync) only on a logged step."""
        due = [t for t in self.members if t.every() and step % t.every() == 0]
        if not due:
            return
        metrics = {"train/loss": float(loss), "train/lr": float(lr)}
        for tracker in due:
            self._call(tracker, "log_step", step, metrics)

    def log_epoch(self, epoch: int, step: int, metrics: dict) -> None:
        for tracker in list(self.members):
            self._call(tracker, "log_epoch", epoch, step, metrics)

    def finish(self, record: dict, record_path: Path) -> None:
        if not self.members:
            return
        self.start(record.get("resumed_from_epoch") or 0, record.get("optimizer_steps") or 0)
        for tracker in list(self.members):
            self._call(tracker, "finish", record, record_path)
        self.members = []


def _name(tracker: Tracker) -> str:
    return next(n for n, (cls, _, _) in TRACKERS.items() if type(tracker) is cls)


def open_trackers(cfg, run_dir: Path, config: dict | None = None, main: bool = True) -> Trackers:
    """The trackers of run `cfg` (a RunConfig) writing about `run_dir`, logging `config` (the record's resolved
    config; default: cfg's) as hyper-parameters; none off rank 0 (`main`)."""
    chosen = settings(cfg.logger)  # raises before the run starts
    if not main or not chosen:
        return Trackers([], run_dir)
    results_dir = Path(cfg.results_dir)
    config = config if config is not None else dataclasses.asdict(cfg)
    info = RunInfo(name=str(Path(run_dir).relative_to(results_dir / "runs")), run_dir=Path(run_dir),
                   results_dir=results_dir, sweep=cfg.sweep, config=config,
                   tags={"method": cfg.method, "variant": cfg.variant, "dataset": cfg.dataset.name,
                         "backbone": cfg.backbone.name, "recipe": cfg.recipe.name, "protocol": cfg.protocol,
                         "seed": f"seed{cfg.seed}", "benchmark": cfg.dataset.benchmark})
    return Trackers([TRACKERS[name][0](s, info) for name, s in chosen.items()], run_dir)


# --- analyze.py --log-to: the leaderboard's tables and figures in the same tracker ------------------
def _outputs(out_dir: Path) -> list[Path]:
    """analyze.py's output files, not its own caches (.stats/, .figures.json)."""
    return [p for p in sorted(out_dir.iterdir()) if p.is_file() and not p.name.startswith(".")]


def log_leaderboard(tool: str, out_dir: Path, results_dir: Path) -> str:
    """Send analyze.py's outputs in `out_dir` (markdown/CSV tables, PNG figures, report.html) to `tool`,
    where its runs are (same defaults as a run's tracker: <results_dir>/tensorboard, offline W&B under
    <results_dir>, MLflow's store); returns where they went. Torch-free, as the analysis path must be.

    Raises:
        ConfigError: an unknown tool or its client library missing (naming the extra).
    """
    settings({tool: {}})
    with redacted_output():
        return _log_leaderboard(tool, Path(out_dir), Path(results_dir))


def _log_leaderboard(tool: str, out_dir: Path, results_dir: Path) -> str:
    tables = sorted(out_dir.glob("*.md"))
    figures = sorted(out_dir.glob("*.png"))
    if tool == "tensorboard":
        from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        logdir = results_dir / "tensorboard" / "leaderboard"
        writer = EventFileWriter(str(logdir))
        values = []
        for path in tables:  # the text plugin: a string tensor of markdown
            text = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[path.read_bytes()],
                                          tensor_shape=tensor_shape_pb2.TensorShapeProto(
                                              dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=1)]))
            meta = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="text"))
            values.append(summary_pb2.Summary.Value(tag=f"tables/{path.stem}", metadata=meta, tensor=text))
        for path in figures:
            data = path.read_bytes()
            width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")  # PNG's IHDR
            values.append(summary_pb2.Summary.Value(tag=f"figures/{path.stem}", image=summary_pb2.Summary.Image(
                height=height, width=width, colorspace=4, encoded_image_string=data)))
        import time

        writer.add_event(event_pb2.Event(wall_time=time.time(), step=0, summary=summary_pb2.Summary(value=values)))
        writer.close()
        return str(logdir)
    if tool == "mlflow":
        from mlflow.tracking import MlflowClient

        uri, _ = _mlflow_uri(MlflowTracker.Settings(), results_dir)
        client = MlflowClient(tracking_uri=uri)
        experiment = client.get_experiment_by_name("leaderboard")
        experiment_id = experiment.experiment_id if experiment else client.create_experiment("leaderboard")
        run_id = client.create_run(experiment_id, run_name=str(out_dir)).info.run_id
        for path in _outputs(out_dir):
            client.log_artifact(run_id, str(path))
        client.set_terminated(run_id)
        return redact(f"{uri} (experiment leaderboard, run {run_id})")
    if tool == "wandb":
        import pandas as pd
        import wandb

        s = WandbTracker.Settings()
        run = wandb.init(project=s.project, job_type="analysis", name=f"leaderboard {out_dir}", group="leaderboard",
                         mode=os.environ.get("WANDB_MODE") or "offline", dir=str(results_dir), reinit="create_new",
                         settings=wandb.Settings(console="off", silent=True))
        logged = {f"tables/{p.stem}": wandb.Table(dataframe=pd.read_csv(p)) for p in sorted(out_dir.glob("*.csv"))}
        logged |= {f"figures/{p.stem}": wandb.Image(str(p)) for p in figures}
        run.log(logged)
        artifact = wandb.Artifact("leaderboard", type="leaderboard")
        for path in _outputs(out_dir):
            artifact.add_file(str(path), name=path.name)
        run.log_artifact(artifact)
        run.finish()
        return f"{results_dir / 'wandb'} (W&B run {run.id})"
    raise ConfigError(f"--log-to {tool}: valid: tensorboard, wandb, mlflow")  # csv: the outputs are CSV already
