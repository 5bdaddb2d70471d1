"""The command line before Hydra sees it: group patterns expanded, every documented key settable, recipes checked.

Hydra-free and torch-free: a bad command line is answered in one line (exit 2) before anything
heavy loads. `hydra_argv` is the whole rewrite launch.py applies to its arguments.
"""
import fnmatch
import os
import sys

from bench import CONF

FLAGS = {"--rerun": "hydra.sweeper.rerun=true", "--status": "hydra.sweeper.status=true"}  # launch.py's own


def group_options(group: str) -> list[str]:
    """Options of config group `group` (a folder under conf/), nested ones as `sub/name`.

    `recipe` options are its top-level files only: the folders under conf/recipe/ are its layers.
    """
    root = CONF / group
    if group == "recipe":
        from bench.recipes import names

        return names()
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.yaml")
                  if not p.name.startswith("_"))


def expand_group_args(argv: list[str]) -> list[str]:
    """Rewrite `group=pat1,pat2` arguments into explicit option lists; validate plain options.

    Raises:
        SystemExit(2): a pattern matches nothing or an option does not exist.
    """
    out = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        group = key.lstrip("+~")
        if (arg.startswith("-") or not sep or "(" in value or not group or group.startswith("hydra")
                or not (CONF / group).is_dir() or group == "search"):  # search=<space>: bench/search.py's
            out.append(arg)  # not a group of ours: flags, values, hydra/... (Hydra's own options), sweep functions
            continue
        options, chosen = group_options(group), []
        listed = value.startswith("[") and value.endswith("]")  # group=[a,b]: several options at once (logger)
        for item in (value[1:-1] if listed else value).split(","):
            if listed and not item:
                continue
            if any(c in item for c in "*?["):
                matches = fnmatch.filter(options, item)
            else:
                matches = [item] if item in options else []
            if not matches:
                what = "pattern" if any(c in item for c in "*?[") else "option"
                sys.stderr.write(f"error: {what} {item!r} matches no option of config group '{group}'.\n"
                                 f"valid options: {', '.join(options)}\n")
                raise SystemExit(2)
            chosen += [m for m in matches if m not in chosen]
        out.append(f"{key}=[{','.join(chosen)}]" if listed else f"{key}={','.join(chosen)}")
    return out


SECTIONS = {"train": "TrainConfig", "dataset": "DatasetConfig", "backbone": "BackboneConfig"}


def method_keys(methods: list[str]) -> set[str]:
    """The arguments of the chosen methods: the keys of their conf/method/<name>.yaml."""
    import yaml

    keys = set()
    for m in methods:
        path = CONF / "method" / f"{m}.yaml"
        if path.is_file():
            keys |= set(yaml.safe_load(path.read_text())["method"])
    return keys


def settable(argv: list[str]) -> list[str]:
    """Every documented key settable as plain `key=value`; an unknown key answered in one line (exit 2).

    A composed config holds only the keys its YAML files set, so a dataclass field that none sets
    (`dataset.num_workers`) would be refused by Hydra ("not in struct", with a `+` hint that then
    fails elsewhere). Here a key of train / dataset / backbone / method that is a field of its
    dataclass (a key of the method's config file) becomes `++key=value` (set or add), and a key that
    is not gets an error listing the valid ones.
    """
    import dataclasses

    from bench import config

    top_level = {f.name for f in dataclasses.fields(config.RunConfig)} - {  # conf/config.yaml's own keys
        "method", "dataset", "backbone", "train", "recipe", "method_args"}
    chosen = [config_defaults()["method"]]
    for arg in argv:
        key, _, value = arg.partition("=")
        if key == "method":
            chosen = value.split(",")
    out = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        section, dot, name = key.partition(".")
        if not dot and sep and not arg.startswith(("+", "~", "-")) and not (CONF / key).is_dir() \
                and key not in top_level and not key.startswith("hydra"):
            fail(f"error: {key}: unknown key; valid top-level keys: {', '.join(sorted(top_level))}", 2)
        if section == "logger" and dot and sep and not arg.startswith(("+", "~", "-")):
            from bench.trackers import TRACKERS

            tracker, _, setting = name.partition(".")
            if tracker not in TRACKERS or setting not in {f.name for f in dataclasses.fields(TRACKERS[tracker][0].Settings)}:
                valid = [f"logger.{t}.{f.name}" for t, (cls, _, _) in TRACKERS.items() for f in dataclasses.fields(cls.Settings)]
                fail(f"error: {key}: unknown key; valid logger keys: {', '.join(valid)}", 2)
        if arg.startswith(("+", "~", "-")) or not sep or not dot or section not in (*SECTIONS, "method"):
            out.append(arg)
            continue
        name = name.split(".", 1)[0]
        if section == "method":
            valid = method_keys(chosen) | {"name"}
        else:
            valid = {f.name for f in dataclasses.fields(getattr(config, SECTIONS[section]))}
        if name not in valid:
            fail(f"error: {key}: unknown key; valid {section} keys: {', '.join(sorted(valid))}", 2)
        out.append(f"++{arg}")
    return out


def config_defaults() -> dict[str, str]:
    """The default option of each config group in conf/config.yaml (method, dataset, backbone, ...)."""
    import yaml

    entries = yaml.safe_load((CONF / "config.yaml").read_text())["defaults"]
    return {k: v for e in entries if isinstance(e, dict) for k, v in e.items()}


def check_recipes(argv: list[str]) -> None:
    """Stop (exit 2) on a recipe that is unknown or does not define a benchmark or method asked for."""
    from bench.recipes import check

    chosen = {k: [v] for k, v in config_defaults().items() if k in ("method", "dataset")}
    chosen["recipe"] = []
    for arg in argv:
        key, sep, value = arg.lstrip("+~").partition("=")
        if sep and key in chosen and "(" not in value:
            chosen[key] = value.split(",")
    try:
        check(chosen["recipe"], chosen["method"], chosen["dataset"])
    except ValueError as e:
        fail(f"error: {e}", 2)


def searched(argv: list[str]) -> list[str]:
    """`search=<space> search.trials=K ...` (bench/search.py) as the sweeper's settings; a search needs -m."""
    from bench.search import SearchError, split_args

    try:
        argv, spec = split_args(argv)
        if spec is not None:
            from bench.search import spaces

            if spec.space not in spaces():
                raise SearchError(f"search={spec.space}: unknown search space; valid: {', '.join(spaces())}")
    except SearchError as e:
        fail(f"error: {e}", 2)
    if spec is None:
        return argv
    if not {"-m", "--multirun"} & set(argv):
        fail("error: a search launches several runs: add -m", 2)
    return argv + [f"hydra.sweeper.search.{k}={v}" for k, v in vars(spec).items()]


def hydra_argv(args: list[str]) -> list[str]:
    """launch.py's arguments as Hydra's: its own flags translated, group patterns expanded, keys made settable.

    Raises:
        SystemExit(2): an unknown key, option or recipe, or a sweep under torchrun.
    """
    argv = [a for a in args if a not in FLAGS and a != "--debug"]
    argv += [FLAGS[a] for a in FLAGS if a in args]
    if "--status" in args and not {"-m", "--multirun"} & set(argv):
        argv.append("--multirun")  # the status of a grid: the sweeper expands it and launches nothing
    argv = [a for a in argv if a in ("-m", "--multirun")] + [a for a in argv if a not in ("-m", "--multirun")]
    check_credentials(argv)
    argv = searched(argv)
    argv = settable(expand_group_args(argv))  # -m first: Hydra's parser takes no flag after the overrides
    check_recipes(argv)
    if "TORCHELASTIC_RUN_ID" in os.environ and {"-m", "--multirun"} & set(argv):
        fail("error: under torchrun launch.py runs one configuration: drop -m (a sweep of multi-process runs: "
             "hydra/launcher=slurm hydra.launcher.tasks_per_node=N)", 2)
    return argv


def check_credentials(argv: list[str]) -> None:
    """Refuse a command-line value holding a URI with `user:password@` before Hydra writes the command line into
    its .hydra/ files (and the run its config into the record); credentials belong in the environment
    (docs/trackers.md)."""
    from bench.trackers import USERINFO

    for arg in argv:
        key, _, value = arg.partition("=")
        if value and USERINFO.search(value):
            fail(f"error: {key.lstrip('+~')}: holds credentials (user:password@), which would be written into "
                 f"Hydra's .hydra/ files and the record; give them in the environment instead "
                 f"(MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD, or MLFLOW_TRACKING_URI)", 2)


DEBUG = "--debug" in sys.argv[1:] or os.environ.get("HYDRA_FULL_ERROR") == "1"
if DEBUG:
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra's own errors with their whole traceback too


def fail(message: str, code: int):
    """One line on stderr and exit `code`; with --debug (or HYDRA_FULL_ERROR=1) the traceback as well."""
    if DEBUG and sys.exc_info()[0] is not None:
        import traceback

        traceback.print_exc()
    sys.stderr.write(message.rstrip() + "\n")
    sys.stderr.flush()
    raise SystemExit(code)
