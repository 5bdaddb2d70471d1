"""Launch runs with Hydra: `python launch.py [-m] method=ssf,vpt 'dataset=mini/*' train.epochs=5`.

Hydra stops here: the composed config becomes a plain `bench.config.RunConfig` and
`bench.run.run` does the rest. Before Hydra parses the command line, a `group=pattern`
argument holding `*`, `?` or `[` is expanded over that config group's options, nested
folders included (Hydra's own `glob()` does not see nested groups and silently launches
nothing); a pattern that matches nothing, or an option that does not exist, exits with
status 2 and lists the valid options.
"""
import fnmatch
import sys
from pathlib import Path

CONF = Path(__file__).resolve().parent / "conf"
# Overrides that are part of a run's identity already, or do not change its result: not in the variant.
NOT_VARIANT = {"method", "dataset", "backbone", "train", "seed", "protocol", "results_dir", "variant",
               "train.progress", "train.num_threads", "train.device", "train.eval_batch_size", "save_weights",
               "deploy_iters", "train.compile", "train.fused_adamw", "train.linear_fast_path", "train.tf32",
               "dataset.data_root", "dataset.cache", "dataset.cache_dir", "dataset.num_workers"}


def group_options(group: str) -> list[str]:
    """Options of config group `group` (a folder under conf/), nested ones as `sub/name`."""
    root = CONF / group
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
        if arg.startswith("-") or not sep or "(" in value or not group or not (CONF / group).is_dir():
            out.append(arg)  # not a config group of ours (flags, values, hydra/..., sweep functions)
            continue
        options, chosen = group_options(group), []
        for item in value.split(","):
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
        out.append(f"{key}={','.join(chosen)}")
    return out


def variant_from_overrides(overrides: list[str]) -> str:
    """A readable name for the non-default settings of a run: ['train.lr=0.01', 'method.r=8'] -> 'lr0.01_r8'."""
    parts = []
    for o in sorted(overrides):
        key, _, value = o.lstrip("+~").partition("=")
        if key in NOT_VARIANT or key.startswith("hydra"):
            continue
        parts.append(f"{key.rsplit('.', 1)[-1]}{value}".replace("/", "-").replace(" ", ""))
    return "_".join(parts)


def to_run_config(cfg: dict, overrides: list[str]):
    """The composed config (a plain dict) as a `RunConfig`; `overrides` name the variant if unset."""
    from bench.config import RunConfig, from_dict

    d = dict(cfg)
    method = dict(d.pop("method"))
    d["method"], d["method_args"] = method.pop("name"), method
    explicit = any(o.lstrip("+~").partition("=")[0] == "variant" for o in overrides)  # `variant=` names it empty
    d["variant"] = d.get("variant") or ("" if explicit else variant_from_overrides(overrides))
    return from_dict(RunConfig, d)


def main() -> None:
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import DictConfig, OmegaConf

    @hydra.main(version_base=None, config_path=str(CONF), config_name="config")
    def task(cfg: DictConfig) -> float | None:
        from bench.run import run  # imported here: bad command lines fail before torch loads

        overrides = list(HydraConfig.get().overrides.task)
        return run(to_run_config(OmegaConf.to_container(cfg, resolve=True), overrides)).get("test_top1")

    sys.argv = [sys.argv[0], *expand_group_args(sys.argv[1:])]
    task()


if __name__ == "__main__":
    main()
