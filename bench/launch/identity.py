"""A run's identity: its variant name, its RunConfig from the composed config, and its run folder.

Both the launcher (bench.launch.job) and the sweeper (hydra_plugins/bench_sweeper) derive a run's
folder here, from the same composed config, so they agree on which runs exist. Hydra-free and
torch-free: the composed config arrives as a plain dict.
"""
import re
from pathlib import Path

from bench import CONF
from bench.config import OPERATIONAL, setting_type

# Overrides that are part of a run's identity already (its folder's other parts, the groups that chose
# them), or do not change its result (bench.config.OPERATIONAL; and every logger.* key: trackers watch
# a run, they never change it): not in the variant.
NOT_VARIANT = {"method", "dataset", "backbone", "train", "seed", "protocol", "variant", "recipe", "grid"} | OPERATIONAL


NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")  # a number as Hydra reads one (no inf, nan)
INTEGER = re.compile(r"[+-]?\d+")


def value_name(value: str, kind: type | None = None) -> str:
    """A number as one spelling, so one value is one variant and one folder: `1e-3`, `0.001` and `1.0e-3` ->
    `0.001`, `1e-05` -> `1e-5`, `50.0` as written. `kind`, the setting's type where the dataclasses say it
    (`setting_type`): a float setting's `1` is `1.0`, an int setting's `8.0` is `8`. Anything else as written."""
    if not NUMBER.fullmatch(value):
        return value
    number = float(value)
    if kind is int or (kind is not float and INTEGER.fullmatch(value)):
        return str(int(number)) if number.is_integer() else value
    return re.sub(r"e([+-])0*(\d)", r"e\1\2", repr(number))  # Python's shortest repr, exponent without zeros


def variant_from_overrides(overrides: list[str]) -> str:
    """A readable name for the non-default settings of a run: ['train.lr=0.01', 'method.r=8'] -> 'lr0.01_r8'."""
    parts = []
    for o in sorted(overrides):
        key, _, value = o.lstrip("+~").partition("=")
        if key in NOT_VARIANT or key.startswith(("hydra", "logger.")):
            continue
        value = value_name(value, setting_type(key))
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
