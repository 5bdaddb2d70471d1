"""Runs many short commands (`python -m module ...`, `python script.py ...`) in one interpreter, one after another.

Tests that run many such commands (tests/test_docs.py: `--help`, `check` on an empty data root, analyze.py on
generated records; tests/test_families.py: `bench.export`), each mostly an interpreter start and the torch import,
share one process through `OneInterpreter`: this module, run as a script. Protocol: one JSON request a line on
stdin, {"args", "cwd", "env"} (args as after `python`), one JSON answer a line, {"returncode", "stdout", "stderr"},
on the stdout this process started with. What a command writes to the process's own file descriptors (not
through sys.stdout / sys.stderr) is discarded.
"""
import contextlib
import io
import json
import os
import runpy
import select
import subprocess
import sys
import threading
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(args: list[str], cwd: str, env: dict[str, str]) -> dict:
    """One command as `python <args>` would run it: its exit status and what it printed."""
    out, err, code = io.StringIO(), io.StringIO(), 0
    saved_env, saved_cwd, saved_argv, saved_path = dict(os.environ), os.getcwd(), sys.argv, list(sys.path)
    os.environ.update(env)
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                if args[0] == "-m":
                    sys.argv = [args[1], *args[2:]]  # runpy puts the module's path first
                    runpy.run_module(args[1], run_name="__main__", alter_sys=True)
                else:
                    sys.argv = list(args)
                    sys.path.insert(0, os.path.dirname(os.path.abspath(args[0])))  # as `python script.py` does
                    runpy.run_path(args[0], run_name="__main__")
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
                if not isinstance(e.code, (int, type(None))):
                    print(e.code, file=sys.stderr)
            except BaseException:
                traceback.print_exc()
                code = 1
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        os.chdir(saved_cwd)
        sys.argv, sys.path[:] = saved_argv, saved_path
    return {"returncode": code, "stdout": out.getvalue(), "stderr": err.getvalue()}


class OneInterpreter:
    """The client: `run` answers like subprocess.run(capture_output=True) on `python <args>`, from the one
    process running this module, started at the first command (cwd: the project root, on PYTHONPATH)."""

    def __init__(self):
        self.lock, self.proc = threading.Lock(), None

    def run(self, args: list[str], cwd: Path = ROOT, env: dict | None = None,
            timeout: int = 300) -> subprocess.CompletedProcess:
        with self.lock:
            if self.proc is None:
                self.proc = subprocess.Popen([sys.executable, __file__], cwd=ROOT,
                                             env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)},
                                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            self.proc.stdin.write(json.dumps({"args": args, "cwd": str(cwd), "env": env or {}}) + "\n")
            self.proc.stdin.flush()
            if not select.select([self.proc.stdout], [], [], timeout)[0]:
                self.proc.kill()
                raise AssertionError(f"{args} ran past {timeout} s in tests/one_interpreter.py")
            answer = self.proc.stdout.readline()
            assert answer, f"tests/one_interpreter.py died (exit {self.proc.wait()}) running {args}"
            a = json.loads(answer)
            return subprocess.CompletedProcess(args, a["returncode"], a["stdout"], a["stderr"])

    def close(self):
        if self.proc is not None:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)
            self.proc = None


def main() -> None:
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # stray writes to fd 1 would break the protocol
    for line in sys.stdin:
        request = json.loads(line)
        answers.write(json.dumps(run(request["args"], request["cwd"], request["env"])) + "\n")
        answers.flush()


if __name__ == "__main__":
    main()
