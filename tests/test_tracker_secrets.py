"""Issue 32: tracker credentials from the environment (a tracking URI with `user:password@`, an API key) reach
no file under the results folder and no output: a run with the MLflow server unreachable and reachable (a stub
of MLflow's REST API on 127.0.0.1), its resume, and `analyze.py --log-to`. Every tracker message shown passes
through `bench.trackers.redact`."""
import base64
import json
import os
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

import bench.train.loop
from bench import records, trackers
from bench.train import checkpoint
from conftest import ROOT
from test_trackers import config, need, run_dir

PASSWORD, KEY = "pa55-Word-zq81", "wandbkey-5f3c2a9e7b1d4c6a8e0f2b4d6c8a0e2f"
QUIET = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5", "WANDB_MODE": "offline"}


class _MlflowStub(BaseHTTPRequestHandler):
    """The few MLflow REST calls a run and `--log-to` make, answered from memory; artefacts go to a file store."""

    def _reply(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _answer(self, body: dict) -> None:
        server, path = self.server, urlsplit(self.path).path
        server.seen.append((path, self.headers.get("Authorization")))

        def info(run_id):
            return {"run_id": run_id, "run_uuid": run_id, "experiment_id": "1", "status": "RUNNING",
                    "lifecycle_stage": "active", "artifact_uri": (server.artifacts / run_id).as_uri(),
                    "run_name": "r", "start_time": 0}

        if path.endswith("/experiments/get-by-name"):
            name = parse_qs(urlsplit(self.path).query)["experiment_name"][0]
            if name not in server.experiments:
                return self._reply(404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": f"no {name}"})
            return self._reply(200, {"experiment": {"experiment_id": server.experiments[name], "name": name,
                                                    "lifecycle_stage": "active"}})
        if path.endswith("/experiments/create"):
            server.experiments[body["name"]] = str(len(server.experiments) + 1)
            return self._reply(200, {"experiment_id": server.experiments[body["name"]]})
        if path.endswith("/runs/create"):
            run_id = f"run{len(server.runs)}"
            server.runs.append(run_id)
            return self._reply(200, {"run": {"info": info(run_id), "data": {}}})
        if path.endswith("/runs/get"):
            return self._reply(200, {"run": {"info": info(parse_qs(urlsplit(self.path).query)["run_id"][0]),
                                             "data": {}}})
        if path.endswith("/runs/update"):
            return self._reply(200, {"run_info": info(body["run_id"])})
        return self._reply(200, {})  # log-batch, set-tag, ...

    def do_GET(self):
        self._answer({})

    def do_POST(self):
        self._answer(json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}"))

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    stub = ThreadingHTTPServer(("127.0.0.1", 0), _MlflowStub)
    stub.seen, stub.experiments, stub.runs, stub.artifacts = [], {}, [], tmp_path / "server-artifacts"
    threading.Thread(target=stub.serve_forever, daemon=True).start()
    yield stub
    stub.shutdown()
    stub.server_close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def uri(port: int, path: str = "") -> str:
    return f"http://alice:{PASSWORD}@127.0.0.1:{port}{path}"


def assert_no_secret(root: Path, *outputs: str) -> None:
    files = [p for p in Path(root).rglob("*") if p.is_file()]
    assert files
    for path in files:
        data = path.read_bytes()
        assert PASSWORD.encode() not in data and KEY.encode() not in data, path
    for text in outputs:
        assert PASSWORD not in text and KEY not in text, text[-2000:]


def test_redact_masks_userinfo_and_secret_variables(monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", KEY)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri(5000))
    text = (f"API request to {uri(5000)}/api/2.0/mlflow/runs/create failed; key {KEY}; "
            f"auth ('alice', '{PASSWORD}'); other https://bob:x@host/ and s3://tok@bucket/key")
    out = trackers.redact(text)
    assert PASSWORD not in out and KEY not in out and "bob:x" not in out and "tok@" not in out
    assert "http://***@127.0.0.1:5000/api/2.0/mlflow/runs/create" in out and "https://***@host/" in out
    assert trackers.redact("no secret in file:///tmp/a@b") == "no secret in file:///tmp/a@b"


@pytest.mark.process
def test_an_unreachable_server_warns_without_the_password(tmp_path):
    need("mlflow")
    need("wandb")
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT), MLFLOW_TRACKING_URI=uri(closed_port()),
               WANDB_API_KEY=KEY, **QUIET)
    results = tmp_path / "results"
    proc = subprocess.run([sys.executable, "launch.py", "-m", "method=linear", "dataset=mini/count", "train.epochs=1",
                           "deploy_iters=0", "save_weights=false", "logger=[mlflow,wandb]",
                           "hydra.launcher.n_jobs=1", f"results_dir={results}"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (rec,) = [json.loads(p.read_text()) for p in results.rglob(records.RECORD)]
    assert rec["status"] == "completed"
    (log,) = results.rglob("output.log")  # the run's own output: the tracker's warning, masked
    warning = [line for line in log.read_text().splitlines() if line.startswith("[tracker] warning: mlflow")]
    assert len(warning) == 1 and "***@127.0.0.1" in warning[0], log.read_text()[-3000:]
    state = json.loads(next(results.rglob(trackers.STATE)).read_text())
    assert "mlflow" not in state and "tracking_uri" not in json.dumps(state)  # dropped; nothing of the URI kept
    assert_no_secret(results, proc.stdout, proc.stderr)


def test_a_run_its_resume_and_log_to_keep_the_credentials_out(tmp_path, server, monkeypatch, capfd):
    need("mlflow")
    from bench.analysis import cli
    from bench.run.runner import run

    for k, v in (QUIET | {"MLFLOW_TRACKING_URI": uri(server.server_port), "WANDB_API_KEY": KEY}).items():
        monkeypatch.setenv(k, v)
    cfg = config(tmp_path, {"mlflow": {}, "csv": {}}, epochs=2)  # W&B: its key set; its run in the test above
    real_save = checkpoint.save

    def save_then_die(path, state):
        real_save(path, state)
        if state["epoch"] == 1:
            raise KeyboardInterrupt  # as a killed job: the run writes its failed record and re-raises

    monkeypatch.setattr(bench.train.loop.ckpt, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run(cfg)
    first = json.loads((run_dir(tmp_path) / trackers.STATE).read_text())
    assert set(first["mlflow"]) == {"run_id", "environment"} and first["mlflow"]["run_id"] == "run0"
    assert set(first["mlflow"]["environment"]) == {"MLFLOW_TRACKING_URI"}
    auth = {a for _, a in server.seen}  # the credentials were used: HTTP basic auth from the URI
    assert auth == {"Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode()}
    assert "differ" not in capfd.readouterr().err
    # the resumed attempt runs where the server is reached under another path: it says so, once, and uses it
    monkeypatch.setattr(bench.train.loop.ckpt, "save", real_save)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri(server.server_port, "/mirror"))
    rec = run(cfg)
    assert rec["status"] == "completed" and rec["resumed_from_epoch"] == 1
    err = capfd.readouterr().err
    changed = [line for line in err.splitlines() if "not as in the first attempt" in line]
    assert changed == ["[tracker] mlflow: MLFLOW_TRACKING_URI not as in the first attempt of this run; this attempt "
                       "uses the environment it runs in"], err[-3000:]
    assert any(p.startswith("/mirror/api/") for p, _ in server.seen[-5:])
    assert json.loads((run_dir(tmp_path) / trackers.STATE).read_text()) == first
    out = [capfd.readouterr()]
    # analyze.py --log-to: the server reached, then not
    assert cli.main([str(tmp_path), "--formats", "csv,md", "--quiet", "--log-to", "mlflow"]) == 0
    out.append(capfd.readouterr())
    assert "sent the tables and figures to mlflow: http://***@127.0.0.1" in out[-1].out
    if trackers._installed("wandb"):
        assert cli.main([str(tmp_path), "--formats", "csv,md", "--quiet", "--log-to", "wandb"]) == 0
        out.append(capfd.readouterr())
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri(closed_port()))
    assert cli.main([str(tmp_path), "--formats", "csv,md", "--quiet", "--log-to", "mlflow"]) == 1
    out.append(capfd.readouterr())
    (error,) = [line for line in out[-1].err.splitlines() if line.startswith("error: --log-to mlflow")]
    assert "***@127.0.0.1" in error, out[-1].err[-3000:]
    assert_no_secret(tmp_path, err, *(o.out + o.err for o in out))


def test_credentials_on_the_command_line_stop_before_hydra_writes_anything(capsys):
    from bench.launch.cli import hydra_argv

    with pytest.raises(SystemExit) as e:
        hydra_argv(["method=linear", "logger=mlflow", f"logger.mlflow.tracking_uri={uri(5000)}"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: logger.mlflow.tracking_uri: holds credentials") and \
        PASSWORD not in err and err.count("\n") == 1
    assert "logger.mlflow.tracking_uri=http://127.0.0.1:5000" in " ".join(
        hydra_argv(["method=linear", "logger=mlflow", "logger.mlflow.tracking_uri=http://127.0.0.1:5000"]))
