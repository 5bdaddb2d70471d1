"""Launch runs with Hydra: `python launch.py [-m] method=ssf,vpt 'dataset=mini/*' train.epochs=5`.

Hydra stops here: the composed config becomes a plain `bench.config.RunConfig` and
`bench.run.run` does the rest. Before Hydra parses the command line, a `group=pattern`
argument holding `*`, `?` or `[` is expanded over that config group's options, nested
folders included (Hydra's own `glob()` does not see nested groups and silently launches
nothing); a pattern that matches nothing, or an option that does not exist, exits with
status 2 and lists the valid options.

A recipe (`recipe=noah`; each benchmark has a default, conf/recipe/layers/<benchmark>.yaml) that does
not define the benchmark or a method of the command line stops here too, naming the valid recipes
and what each covers (bench.recipes). A run whose recipe is not its benchmark's default carries the
recipe's name at the front of its variant (`adapter-noah`), so its folder, label and table row are
its own: runs of different recipes are never averaged together.

Sweeps are idempotent: the default sweeper (hydra_plugins/bench_sweeper) submits only the runs
of the grid that are not finished, and a run whose record is completed is skipped here as well.
`--rerun` forces every run again; `--status` prints where each run of the grid stands (completed /
failed / running or pending / missing) and submits nothing.
"""
import fnmatch
import os
import re
import sys
from pathlib import Path

CONF = Path(__file__).resolve().parent / "conf"
# Overrides that are part of a run's identity already, or do not change its result: not in the variant.
NOT_VARIANT = {"method", "dataset", "backbone", "train", "seed", "protocol", "results_dir", "variant", "recipe", "grid",
               "train.progress", "train.num_threads", "train.device", "train.eval_batch_size", "save_weights",
               "deploy_iters", "deploy_budget", "deploy_score", "train.compile", "train.fused_adamw",
               "train.linear_fast_path", "train.tf32",
               "train.data_on_device", "train.checkpoint_every", "train.checkpoint_interval_s", "train.dist_timeout_s",
               "dataset.data_root", "dataset.cache", "dataset.cache_dir", "dataset.num_workers",
               "logger", "sweep"}  # and every logger.* key: trackers watch a run, they never change it
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
                or not (CONF / group).is_dir()):
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


def variant_from_overrides(overrides: list[str]) -> str:
    """A readable name for the non-default settings of a run: ['train.lr=0.01', 'method.r=8'] -> 'lr0.01_r8'."""
    parts = []
    for o in sorted(overrides):
        key, _, value = o.lstrip("+~").partition("=")
        if key in NOT_VARIANT or key.startswith(("hydra", "logger.")):
            continue
        parts.append(re.sub(r"[^A-Za-z0-9._+-]", "", f"{key.rsplit('.', 1)[-1]}{value}".replace("/", "-").replace(",", "-")))
    return "_".join(parts)  # a folder name and a Hydra value: no braces, quotes, colons or commas


def recipe_backbone(d: dict, keys: set[str]) -> None:
    """The recipe's checkpoint (`recipe.checkpoint`) as the run's backbone, unless `backbone=` was given.

    A researcher who names a recipe expects its run, on the checkpoint its published numbers used;
    the mini recipe's checkpoint is the embedded backbone, so the mini benchmark keeps it. Done here,
    on the composed config, because Hydra cannot: its defaults list chooses the backbone before the
    dataset's layers choose the recipe. Both the launcher's and the sweeper's compositions pass
    through here, so they agree. `backbone.<key>=...` overrides carry over to the recipe's backbone.

    Raises:
        ConfigError: the recipe has a settings layer for its own checkpoint (conf/recipe/backbone*/),
            which this substitution, after composition, would miss.
    """
    import yaml

    from bench.config import ConfigError

    checkpoint = (d.get("recipe") or {}).get("checkpoint") or ""
    if "backbone" in keys or not checkpoint or d["backbone"].get("name") == checkpoint:
        return
    recipe = d["recipe"]["name"]
    layers = [p for p in CONF.glob(f"recipe/backbone*/{recipe}/*/{checkpoint}*")]
    if layers:
        raise ConfigError(f"recipe {recipe!r} has settings for its checkpoint in {layers[0].relative_to(CONF)}; "
                          f"name it on the command line: backbone={checkpoint}")
    chosen = yaml.safe_load((CONF / "backbone" / f"{checkpoint}.yaml").read_text())
    for key in sorted(k for k in keys if k.startswith("backbone.")):  # as set on the composed default backbone
        *parents, leaf = key.split(".")[1:]
        src, dst = d["backbone"], chosen
        for p in parents:
            src, dst = src.get(p) or {}, dst.setdefault(p, {})
        if leaf in src:
            dst[leaf] = src[leaf]
        else:  # deleted (~backbone.key)
            dst.pop(leaf, None)
    d["backbone"] = chosen


def to_run_config(cfg: dict, overrides: list[str]):
    """The composed config (a plain dict) as a `RunConfig`; `overrides` name the variant if unset and
    say whether the backbone was chosen (else the recipe's checkpoint: `recipe_backbone`)."""
    from bench.config import RunConfig, from_dict

    from bench.recipes import default_for

    d = dict(cfg)
    method = dict(d.pop("method"))
    keys = {o.lstrip("+~").partition("=")[0] for o in overrides}
    recipe_backbone(d, keys)
    recipe = d.get("recipe") or {}
    # the recipe's method arguments over the method's file, under the command line's method.*
    method |= {k: v for k, v in (recipe.get("method_args") or {}).items() if f"method.{k}" not in keys}
    d["method"], d["method_args"] = method.pop("name"), method
    explicit = "variant" in keys  # `variant=` names it empty
    variant = d.get("variant") or ("" if explicit else variant_from_overrides(overrides))
    name = recipe.get("name", "")
    if name and name != default_for(d["dataset"]["benchmark"]) and variant != name and not variant.startswith(name + "_"):
        variant = "_".join(p for p in (name, variant) if p)  # a non-default recipe names its runs
    d["variant"] = variant
    rc = from_dict(RunConfig, d)
    from bench.trackers import settings

    settings(rc.logger)  # an unknown tracker, a bad setting or a missing client library stops here, before any run
    return rc


def run_path(rc) -> Path:
    """The run folder of a RunConfig (bench.records.run_dir of its identity)."""
    from bench.records import run_dir

    return run_dir(rc.results_dir, rc.backbone.name, rc.dataset.name, rc.method, rc.variant, rc.protocol, rc.seed)


def run_of(cfg: dict, overrides: list[str]):
    """(run folder, its identity's parts, the RunConfig) of a composed config (a plain dict, no `hydra` key)."""
    from bench.records import method_label

    rc = to_run_config(cfg, overrides)
    identity = {"backbone": rc.backbone.name, "dataset": rc.dataset.name,
                "method": method_label(rc.method, rc.variant), "run": f"{rc.protocol}-seed{rc.seed}"}
    return run_path(rc), identity, rc


def run_dir_of(cfg: dict, overrides: list[str]) -> tuple[Path, dict]:
    """The run folder of a composed config (a plain dict, no `hydra` key) and its identity's parts."""
    return run_of(cfg, overrides)[:2]


def job_threads(num_threads: int, launcher_cpus: int | None, environ=os.environ) -> int:
    """torch threads for one job: train.num_threads if set, else the CPUs the launcher gave the job (Slurm's
    allocation, submitit_local's cpus_per_task, 1 for submitit_local without it), else 0 (torch's default:
    all cores, right for the sequential launcher)."""
    if num_threads > 0:
        return num_threads
    if launcher_cpus:
        return int(launcher_cpus)
    for key in ("SLURM_CPUS_PER_TASK", "SLURM_CPUS_ON_NODE"):
        if environ.get(key, "").isdigit():
            return int(environ[key])
    return 1 if environ.get("SUBMITIT_EXECUTOR") == "local" else 0


def job_info(hydra_cfg) -> dict:
    """What job.json says about this job: Slurm ids, log files (bench.sweep checks the job is alive)."""
    env, info = os.environ, {"output_dir": hydra_cfg.runtime.output_dir}
    if env.get("SLURM_JOB_ID"):
        info["slurm_job_id"] = env["SLURM_JOB_ID"]
        if env.get("SLURM_ARRAY_JOB_ID"):
            info["slurm_array_task"] = f"{env['SLURM_ARRAY_JOB_ID']}_{env.get('SLURM_ARRAY_TASK_ID')}"
    if env.get("SUBMITIT_EXECUTOR"):
        try:
            import submitit

            info["log"] = str(submitit.JobEnvironment().paths.stdout)
        except Exception:  # the log path is a convenience; never fail a run over it
            pass
    elif env.get("BENCH_JOB_LOG"):  # a run in its own process under the default launcher: its stdout and stderr
        info["log"] = env["BENCH_JOB_LOG"]
    elif hydra_cfg.job.get("name"):
        info["log"] = str(Path(hydra_cfg.runtime.output_dir) / f"{hydra_cfg.job.name}.log")
    return info


def main() -> None:
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import DictConfig, OmegaConf

    @hydra.main(version_base=None, config_path=str(CONF), config_name="config")
    def task(cfg: DictConfig) -> float | None:
        from hydra.types import RunMode

        from bench import sweep
        from bench.config import ConfigError
        from bench.records import RECORD

        hc = HydraConfig.get()
        overrides = list(hc.overrides.task)
        try:
            d = OmegaConf.to_container(cfg, resolve=True)
            d["train"]["num_threads"] = job_threads(d["train"].get("num_threads", 0), hc.launcher.get("cpus_per_task"))
            rc = to_run_config(d, overrides)
            if not rc.sweep and hc.mode == RunMode.MULTIRUN:  # trackers group a sweep's runs: by its folder's name
                rc.sweep = Path(hc.runtime.output_dir).parent.name
            out_dir = run_path(rc)
            rec, _ = sweep.read_record(out_dir / RECORD)
            if rec and rec["status"] in ("completed", "unsupported"):
                other = sweep.other_data(rec, lambda: sweep.data_version_now(rc.dataset, rc.protocol))
                if other and int(os.environ.get("RANK", "0")) == 0:  # its outcome belongs to other data: kept aside
                    moved = sweep.archive(sweep.RunState(out_dir, "missing", other_data=other[0]))
                    print(f"[data] {out_dir} was completed on other data (version {other[0]}, now {other[1]}); "
                          f"kept as {moved}", flush=True)
                elif not other and not hc.sweeper.get("rerun", False):
                    print(f"[skipped] {out_dir}: {rec['status']} already (--rerun runs it again)", flush=True)
                    return rec.get("test_top1")
            from bench.models import check_image_size, check_weights
            from bench.run import run  # imported here: bad command lines fail before torch loads
            from methods import method_config

            method_config(rc.method, rc.method_args)  # a bad method argument fails before the run folder is touched
            check_image_size(rc.backbone, rc.dataset.image_size)
            if int(os.environ.get("LOCAL_RANK", "0")) == 0:  # one process per machine fetches the weights
                check_weights(rc.backbone)
        except ConfigError as e:
            fail(f"error: {e}", 2)
        if int(os.environ.get("RANK", "0")) == 0:  # several processes: rank 0 keeps the books
            sweep.write_job(out_dir, "running", **job_info(hc))
        try:
            return run(rc).get("test_top1")
        except Exception as e:  # the run wrote its failed record and printed its one line
            if DEBUG or hc.mode == RunMode.MULTIRUN:
                raise  # a sweep goes on; the sweeper reports failed runs in one line each at the end
            fail(f"error: the run failed ({type(e).__name__}); its record says why: {out_dir / RECORD}", 1)

    argv = [a for a in sys.argv[1:] if a not in FLAGS and a != "--debug"]
    argv += [FLAGS[a] for a in FLAGS if a in sys.argv[1:]]
    if "--status" in sys.argv[1:] and not {"-m", "--multirun"} & set(argv):
        argv.append("--multirun")  # the status of a grid: the sweeper expands it and launches nothing
    argv = [a for a in argv if a in ("-m", "--multirun")] + [a for a in argv if a not in ("-m", "--multirun")]
    argv = settable(expand_group_args(argv))  # -m first: Hydra's parser takes no flag after the overrides
    check_recipes(argv)
    if "TORCHELASTIC_RUN_ID" in os.environ and {"-m", "--multirun"} & set(argv):
        fail("error: under torchrun launch.py runs one configuration: drop -m (a sweep of multi-process runs: "
             "hydra/launcher=slurm hydra.launcher.tasks_per_node=N)", 2)
    sys.argv = [sys.argv[0], *argv]
    task()


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


if __name__ == "__main__":
    main()
