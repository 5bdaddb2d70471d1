"""Launch runs with Hydra: `python launch.py [-m] method=ssf,vpt 'dataset=mini/*' train.epochs=5`.

Hydra stops here: the composed config, as a plain dict, goes to `bench.launch.job.start`, which
makes it a `bench.config.RunConfig` and has `bench.run.runner.run` do the rest. Before Hydra
parses the command line (bench.launch.cli), a `group=pattern` argument holding `*`, `?` or `[`
is expanded over that config group's options, nested folders included (Hydra's own `glob()`
does not see nested groups and silently launches nothing); a pattern that matches nothing, or an
option that does not exist, exits with status 2 and lists the valid options.

A recipe (`recipe=noah`; each benchmark has a default, conf/recipe/layers/<benchmark>.yaml) that does
not define the benchmark or a method of the command line stops here too, naming the valid recipes
and what each covers (bench.recipes). A run whose recipe is not its benchmark's default carries the
recipe's name at the front of its variant (`adapter-noah`), so its folder, label and table row are
its own: runs of different recipes are never averaged together.

Sweeps are idempotent: the default sweeper (hydra_plugins/bench_sweeper) submits only the runs
of the grid that are not finished, and a run whose record is completed is skipped here as well;
a finished run whose configuration has changed since is stale and runs again, its old folder kept
beside (docs/sweeps.md: Stale runs).
`--rerun` forces every run again; `--status` prints where each run of the grid stands (completed /
failed / running or pending / missing) and submits nothing.
"""
import sys

from bench import CONF
from bench.launch.cli import hydra_argv


def main() -> None:
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import DictConfig, OmegaConf

    from bench.launch.job import start

    @hydra.main(version_base=None, config_path=str(CONF), config_name="config")
    def task(cfg: DictConfig) -> float | None:
        hc = HydraConfig.get()
        return start(OmegaConf.to_container(cfg, resolve=True), list(hc.overrides.task),
                     multirun=hc.mode == RunMode.MULTIRUN, output_dir=hc.runtime.output_dir,
                     launcher_cpus=hc.launcher.get("cpus_per_task"), rerun=hc.sweeper.get("rerun", False),
                     job_name=hc.job.get("name"))

    sys.argv = [sys.argv[0], *hydra_argv(sys.argv[1:])]
    task()


if __name__ == "__main__":
    main()
