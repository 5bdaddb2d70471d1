"""Every command in README.md and docs/*.md is run, so a doc that drifts from the code fails the tests.

The one convention for commands: a fenced block tagged ```bash (or ```sh), one command a line, `\\` to
continue a line, `#` for a comment. Output and trees go in ```text blocks and are not run. Commands that
need real data, a GPU, a cluster or the network cannot run for real here; the rules below (`job` for
those that start a process, `static` for the rest) say what each kind is checked for instead, and a
command that no rule covers fails, naming itself:

- `launch.py` (also behind `torchrun`): run with `--status` and `results_dir=<empty folder>`, which
  composes every run of the grid and fails on any bad key, option, recipe or value. Glob patterns are
  expanded and checked over all their options first; a grid of more than MAX_COMPOSITIONS distinct
  choices is then composed with each pattern narrowed to its first and last match.
- `analyze.py`: run for real on generated records, each folder it names filled with them.
- `python -m bench.data check`: run for real against an empty data root (every dataset named must
  exist; each then FAILs as missing: exit status 1, never 2, the status of a bad request).
- `python -m bench.sweep`: run for real on an empty results folder (its `runs/` made).
- `scripts/select_and_retrain.py`: run with `--dry-run` on an empty results folder; it must get as far
  as finding no grid runs.
- `scripts/search.py`: run with `--status` on an empty results folder: stage one's status composes every
  drawn trial (launch.py --status), stage two's finds none of them completed. Its globs are checked and
  narrowed as launch.py's, each grid point counting `search.trials` runs.
- `python -m bench.data prepare`, `bench.export`, `bench.pretrain` and the benchmark scripts (hours,
  GPUs or sources not here): `--help` must succeed and list every option the command uses.
- The commands above other than `launch.py` run one after another in one interpreter (tests/one_interpreter.py):
  each is mostly a Python start-up and the torch import.
- `make T`: T is a target of the Makefile. `bash F ARG`: F exists and handles ARG.
- `pip install`: each extra exists in pyproject.toml and each `-c` file exists (installing needs the
  network). `git clone URL`: URL is a GitHub https address (not cloned).
- `tensorboard`: the extra that installs it exists. `pytest FILE -k NAME`: FILE holds a test NAME.
"""
import functools
import itertools
import math
import os
import re
import shlex
import subprocess
import sys
import tempfile
import threading
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from one_interpreter import OneInterpreter

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^( *)```(\S*)\s*$")
RUN_LANGS = {"bash", "sh"}
MAX_COMPOSITIONS = 40  # distinct method x dataset x ... choices a --status check composes (~0.1 s each)
SCRIPTS_BY_HELP = {"bench_methods.py", "bench_data_cache.py", "bench_run.py", "bench_analyze.py", "bench_sweep.py",
                   "bench_dist.py", "bench_demo.py", "count_params.py", "null_significance.py", "mini_baselines.py",
                   "official_methods.py"}
MODULES_BY_HELP = {"bench.export", "bench.pretrain"}
VIEWERS = {"tensorboard": "tensorboard"}  # executable -> the pyproject extra that installs it


@dataclass
class Command:
    """One command of a doc: where it is, its words (comments and an `$ ` prompt dropped), its env prefix."""
    doc: str
    line: int
    text: str
    words: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}:{' '.join(self.words)[:60]}"


def fenced_blocks(path: Path):
    """(line of the opening fence, language, lines) of each fenced block; an unclosed fence fails."""
    lines = path.read_text().split("\n")
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if m:
            j = i + 1
            while j < len(lines) and not FENCE.match(lines[j]):
                j += 1
            assert j < len(lines), f"{path.name}:{i + 1}: unclosed ``` fence"
            yield i + 1, m.group(2), [ln.strip() for ln in lines[i + 1:j]]
            i = j
        i += 1


def commands() -> list[Command]:
    out = []
    for path in DOCS:
        doc = str(path.relative_to(ROOT))
        for start, lang, block in fenced_blocks(path):
            if lang not in RUN_LANGS:
                continue
            text, first = "", None
            for k, ln in enumerate(block):
                first = start + 1 + k if first is None else first
                if ln.endswith("\\"):
                    text += ln[:-1] + " "
                    continue
                text += ln
                words = shlex.split(text, comments=True)
                if words:
                    env = {}
                    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", words[0]):
                        key, _, value = words.pop(0).partition("=")
                        env[key] = value
                    out.append(Command(doc, first, text, words, env))
                text, first = "", None
    return out


COMMANDS = commands()


def program(words: list[str]) -> tuple[str, list[str]]:
    """(what runs, its arguments): `python x.py` -> ('x.py', args), `python -m m` -> ('-m m', args)."""
    w = list(words)
    if w and w[0] == "torchrun":
        w = w[1:]
        while w and w[0].startswith("-") and not w[0].endswith(".py"):
            w = w[2:] if "=" not in w[0] else w[1:]
        return ("torchrun " + (w[0] if w else "")), w[1:]
    if w and Path(w[0]).name.startswith("python"):
        w = w[1:]
        if w and w[0] == "-m":
            return f"-m {w[1]}", w[2:]
        return (w[0] if w else ""), w[1:]
    if w and w[0].startswith(".venv/bin/"):
        return Path(w[0]).name, w[1:]
    return (w[0] if w else ""), w[1:]


# --- launch.py ----------------------------------------------------------------------------------

@functools.cache
def _launch():
    from bench.launch import cli

    return cli


def narrowed(args: list[str]) -> list[str]:
    """The launch.py arguments with each glob expanded and checked over all its options (SystemExit(2)
    on a pattern that matches nothing) and, for a grid above MAX_COMPOSITIONS (a search's: each point
    `search.trials` runs), narrowed to its first and last match."""
    launch = _launch()
    expanded = launch.expand_group_args(args)
    launch.check_recipes(expanded)  # every method x dataset x recipe of the whole grid
    sizes = [len(a.partition("=")[2].split(",")) for a in expanded
             if "=" in a and not a.startswith(("-", "hydra")) and (launch.CONF / a.partition("=")[0]).is_dir()]
    trials = [int(a.partition("=")[2]) for a in expanded if a.startswith("search.trials=")]
    if math.prod(sizes) * max(trials, default=1) <= MAX_COMPOSITIONS:
        return expanded
    out = []
    for orig, exp in zip(args, expanded):
        key, _, value = exp.partition("=")
        if any(c in orig.partition("=")[2] for c in "*?["):
            options = value.split(",")
            value = ",".join(dict.fromkeys([options[0], options[-1]]))
        out.append(f"{key}={value}" if "=" in exp else exp)
    return out


# --- jobs that start processes ------------------------------------------------------------------

def run(args: list[str], cwd: Path, env: dict | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    full = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=full, capture_output=True, text=True,
                          timeout=timeout)


SHARED = OneInterpreter()  # the commands that are mostly an interpreter start and imports
_help_lock = threading.Lock()


@functools.cache
def _help_cell(target: tuple[str, ...]) -> dict:
    return {"lock": threading.Lock()}


def help_of(target: tuple[str, ...]) -> subprocess.CompletedProcess:
    """`<target> --help`, run once however many commands use the same program."""
    with _help_lock:
        cell = _help_cell(target)
    with cell["lock"]:
        if "out" not in cell:
            cell["out"] = SHARED.run([*target, "--help"], ROOT)
        return cell["out"]


def generated_records(folder: Path) -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    from bench_analyze import generate

    generate(folder, 40, predictions=False)


def job(cmd: Command, tmp: Path):
    """What checks `cmd` by starting a process: a function returning (ok, message), or None where no
    process rule applies (then `static` judges it)."""
    prog, args = program(cmd.words)
    name = Path(prog.split()[-1]).name if prog else ""
    work = Path(tempfile.mkdtemp(dir=tmp))

    if name == "launch.py":
        def check():
            try:
                grid = narrowed(args)
            except SystemExit as e:
                return False, f"launch.py refused its arguments before composing (exit {e.code})"
            p = run([str(ROOT / "launch.py"), *grid, "--status", f"results_dir={work / 'results'}"], work, cmd.env)
            return p.returncode == 0 and "runs in the grid" in p.stdout, p.stdout[-1500:] + p.stderr[-1500:]
        return check
    if prog == "analyze.py":
        def check():
            folders = [a for a in args if not a.startswith("-")]
            option_values = {args[i + 1] for i, a in enumerate(args[:-1]) if a.startswith("--")}
            for f in folders:
                if f not in option_values:
                    generated_records(work / f)
            p = SHARED.run([str(ROOT / "analyze.py"), *args], work, cmd.env)
            wrote = list(work.rglob("leaderboard_*.md"))
            return p.returncode == 0 and bool(wrote), p.stdout[-1500:] + p.stderr[-1500:]
        return check
    if prog == "-m bench.data" and args[:1] == ["check"]:
        def check():
            rest, skip = [], False
            for a in args[1:]:
                if skip:
                    skip = False
                    continue
                if a == "--data-root":
                    skip = True
                    continue
                rest.append(a)
            p = SHARED.run(["-m", "bench.data", "check", *rest, "--data-root", str(work)], work, cmd.env)
            lines = [ln for ln in p.stdout.splitlines() if ln.strip()]
            ok = p.returncode in (0, 1) and lines and all(ln.startswith(("ok", "FAIL", "WARN", " ")) for ln in lines)
            return bool(ok), p.stdout[-1500:] + p.stderr[-1500:]
        return check
    if prog == "-m bench.sweep":
        def check():
            folders = [work / a for a in args if not a.startswith("-")]
            for f in folders:
                (f / "runs").mkdir(parents=True, exist_ok=True)  # a results folder no run has written to yet
            p = SHARED.run(["-m", "bench.sweep", *[str(work / a) if not a.startswith("-") else a for a in args]], work)
            return p.returncode == 0, p.stdout[-1500:] + p.stderr[-1500:]
        return check
    if name == "search.py":
        def check():
            keep = [a for a in args if a != "--status" and not a.startswith("results_dir=")]
            try:
                keep = narrowed(keep)
            except SystemExit as e:
                return False, f"search.py's overrides were refused before composing (exit {e.code})"
            p = run([str(ROOT / prog), f"results_dir={work / 'results'}", *keep, "--status"], work, cmd.env)
            out = p.stdout + p.stderr
            return p.returncode == 0 and "runs in the grid" in out and "trials completed" in out, out[-1500:]
        return check
    if name == "select_and_retrain.py":
        def check():
            p = SHARED.run([str(ROOT / prog), f"results_dir={work / 'results'}", *[a for a in args if a != "--dry-run"],
                     "--dry-run"], work, cmd.env)
            out = p.stdout + p.stderr
            return "no completed `val` grid runs" in out, out[-1500:]
        return check
    help_target = None
    if prog == "-m bench.data" and args[:1] == ["prepare"]:
        help_target = ["-m", "bench.data", "prepare"]
    elif prog.startswith("-m ") and prog[3:] in MODULES_BY_HELP:
        help_target = ["-m", prog[3:]]
    elif prog.startswith("scripts/") and name in SCRIPTS_BY_HELP:
        help_target = [str(ROOT / prog)]
    if help_target:
        def check():
            p = help_of(tuple(help_target))
            used = {a.partition("=")[0] for a in args if a.startswith("--")}
            if help_target[-1] == "prepare":
                used.add(args[1])  # the source: one of the choices --help lists
            missing = sorted(u for u in used if u not in p.stdout)
            return p.returncode == 0 and not missing, f"options not in --help: {missing}\n{p.stderr[-1000:]}"
        return check
    return None


# --- static rules -------------------------------------------------------------------------------

@functools.cache
def extras() -> set[str]:
    return set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])


def static(cmd: Command) -> tuple[bool, str] | str:
    """A rule's verdict (ok, message) for a command checked without a process, or "no rule"."""
    prog, args = program(cmd.words)
    words = cmd.words
    if words[0] == "make":
        targets = set(re.findall(r"^([A-Za-z][\w-]*):", (ROOT / "Makefile").read_text(), re.M))
        bad = [t for t in words[1:] if t not in targets]
        return not bad and len(words) > 1, f"not Makefile targets: {bad} (targets: {sorted(targets)})"
    if words[0] == "bash":
        script = ROOT / words[1]
        if not script.is_file():
            return False, f"{words[1]} does not exist"
        text = script.read_text()
        bad = [a for a in words[2:] if not re.search(rf"^\s*{re.escape(a)}\)", text, re.M)]
        return not bad, f"{words[1]} handles no {bad}"
    if prog in ("pip", "-m pip"):
        pip_args = args[1:] if args[:1] == ["install"] else None
        if pip_args is None:
            return False, "pip: only `pip install` is documented"
        problems = []
        for i, a in enumerate(pip_args):
            if a == "-c" and not (ROOT / pip_args[i + 1]).is_file():
                problems.append(f"-c {pip_args[i + 1]} does not exist")
            m = re.fullmatch(r"\.\[([\w,-]+)\]", a)
            if m:
                problems += [f"no extra {x!r} in pyproject.toml" for x in m.group(1).split(",") if x not in extras()]
        return not problems, "; ".join(problems)
    if words[0] == "git" and words[1:2] == ["clone"]:
        return bool(re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", words[2])), f"not a GitHub address: {words[2]}"
    if prog in VIEWERS:
        return VIEWERS[prog] in extras(), f"no extra {VIEWERS[prog]!r} installs {prog}"
    if prog == "-m pytest":
        files = [a for a in args if a.endswith(".py")]
        names = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "-k"]
        problems = [f"{f} does not exist" for f in files if not (ROOT / f).is_file()]
        for f, k in itertools.product(files, names):
            if (ROOT / f).is_file() and not re.search(rf"def test_\w*{re.escape(k)}", (ROOT / f).read_text()):
                problems.append(f"{f} has no test matching -k {k}")
        return bool(files) and not problems, "; ".join(problems) or "no test file named"
    return "no rule"


# --- the tests ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Every process check at once, three at a time: launch.py in a process each, the others in one (SHARED)."""
    tmp = tmp_path_factory.mktemp("docs")
    checks = {c.id: job(c, tmp) for c in COMMANDS}
    todo = {k: f for k, f in checks.items() if callable(f)}
    try:
        with ThreadPoolExecutor(max_workers=3) as pool:
            done = dict(zip(todo, pool.map(lambda f: f(), todo.values())))
    finally:
        SHARED.close()
    return checks, done


@pytest.mark.process
@pytest.mark.xdist_group("documented_commands")  # one worker: the module fixture runs every check once, not per worker
@pytest.mark.parametrize("cmd", COMMANDS, ids=[c.id for c in COMMANDS])
def test_documented_command(cmd, results):
    checks, done = results
    if cmd.id in done:
        ok, message = done[cmd.id]
    else:
        verdict = static(cmd)
        assert verdict != "no rule", f"{cmd.doc}:{cmd.line}: no rule in tests/test_docs.py covers `{cmd.text}`"
        ok, message = verdict
    assert ok, f"{cmd.doc}:{cmd.line}: `{cmd.text}`: {message}"


def test_commands_were_found_in_every_doc_that_has_them():
    found = {c.doc for c in COMMANDS}
    assert "README.md" in found and len(found) >= 8, found
    assert any(c.words[:1] == ["make"] and c.words[1:] == ["demo"] for c in COMMANDS if c.doc == "README.md")
    assert any(c.words[:1] == ["make"] and c.words[1:] == ["test"] for c in COMMANDS if c.doc == "README.md")


def test_one_convention_for_commands():
    """Commands are in ```bash blocks only: every fence names its language, and no indented block
    outside a fence holds a command (it would never be run)."""
    looks_like_command = re.compile(r"^ {4,}(\$ |\.venv/bin/|python |make |torchrun |pip |bash |git )")
    for path in DOCS:
        lines = path.read_text().split("\n")
        inside = False
        for n, ln in enumerate(lines, 1):
            m = FENCE.match(ln)
            if m:
                assert inside or m.group(2), f"{path.name}:{n}: a ``` fence without a language (bash, sh or text)"
                inside = not inside
                continue
            assert inside or not looks_like_command.match(ln), f"{path.name}:{n}: an indented command; use ```bash"


def test_local_links_and_images_exist():
    """Every relative link or image of the docs points at a file that exists (anchors not checked)."""
    link = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
    for path in DOCS:
        for target in link.findall(path.read_text()):
            if re.match(r"[a-z]+://", target) or target.startswith("#"):
                continue
            assert (path.parent / target.split("#")[0]).exists(), f"{path.name}: link to missing {target}"


def test_rules_reject_an_unknown_command():
    cmd = Command("x.md", 1, "frobnicate --all", ["frobnicate", "--all"])
    assert job(cmd, Path(tempfile.gettempdir())) is None and static(cmd) == "no rule"


def test_globs_are_checked_in_full_and_narrowed_for_large_grids():
    assert narrowed(["-m", "method=ssf", "dataset=mini/count"]) == ["-m", "method=ssf", "dataset=mini/count"]
    big = narrowed(["-m", "method=*", "dataset=vtab/*"])
    assert all(len(a.split("=")[1].split(",")) == 2 for a in big[1:]), big
    with pytest.raises(SystemExit):
        narrowed(["-m", "dataset=vtab/nothing*"])
