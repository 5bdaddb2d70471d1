"""Idempotent sweeps: Hydra's basic sweeper that skips finished runs before submitting anything.

`hydra/sweeper=bench` (conf/hydra/sweeper/bench.yaml, the default in conf/config.yaml) expands the
grid exactly as Hydra's basic sweeper does, composes every job to find its run folder (the run's
identity, bench.launch.identity), asks bench.launch.sweep where each run stands, and hands the launcher only
the runs to do: failed, unfinished (they resume from their checkpoint) and never started. Completed
and unsupported runs are skipped, and so are runs whose job is still running or pending in another
sweep, so relaunching a finished sweep submits nothing and allocates no GPU; a finished run whose recorded
configuration differs from the one composed now (stale) runs again, its old folder kept beside. Jobs that
name one run (`train.lr=1e-3,0.001`: one value, two spellings) are submitted once. `rerun: true`
(`launch.py --rerun`) submits every run; `status: true` (`launch.py --status`) prints the grid's
status table and submits nothing.

Hydra finds this module because hydra_plugins/ is a namespace package: the project root (on
sys.path when launch.py runs) adds to it, next to the installed hydra_submitit_launcher.
"""
import copy
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import OverrideType
from hydra.core.utils import JobStatus
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from hydra_plugins.bench_sweeper.compose import ENV_ONLY, Composer, copy_tree, resolve_env


def _node_interpolations(cfg: DictConfig) -> bool:
    """Does any value interpolate another key? (`${oc.env:...}` reads the environment only: not counted.)"""
    def walk(node) -> bool:
        items = node.items_ex(resolve=False) if isinstance(node, DictConfig) else enumerate(node)
        for k, _ in items:
            child = node._get_node(k)
            if OmegaConf.is_interpolation(node, k) and not ENV_ONLY.match(str(child._value())):
                return True
            if isinstance(child, (DictConfig, ListConfig)) and walk(child):
                return True
        return False
    return walk(cfg)


def _set_value(d: dict, o) -> bool:
    """Apply override `o` to plain dict `d` as Hydra would to the config; False where that is not plainly so."""
    value = o.value()
    plain = not isinstance(value, (dict, list)) and not (isinstance(value, str) and "${" in value)
    if not plain or o.type not in (OverrideType.CHANGE, OverrideType.ADD, OverrideType.FORCE_ADD):
        return False
    *parents, leaf = o.key_or_group.split(".")
    node = d
    for p in parents:
        if not isinstance(node.get(p), dict):
            if o.type != OverrideType.FORCE_ADD or p in node:
                return False
            node[p] = {}
        node = node[p]
    present = leaf in node
    if (o.type == OverrideType.CHANGE and not present) or (o.type == OverrideType.ADD and present) \
            or isinstance(node.get(leaf), (dict, list)):
        return False
    node[leaf] = value
    return True


class BenchSweeper(BasicSweeper):
    def __init__(self, max_batch_size: Optional[int] = None, params: Optional[Dict[str, str]] = None,
                 rerun: bool = False, status: bool = False, search: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(max_batch_size=max_batch_size, params=params)
        self.rerun, self.status = rerun, status
        self.search = dict(search or {})

    def _searched(self, jobs: List[List[str]]) -> List[List[str]]:
        """Each job once per configuration its method's search draws (bench/search.py), when one is asked for.

        The drawn values are ordinary overrides (`++train.lr=0.00123`): each trial is an ordinary run, its
        folder and variant named as any override names them, so a relaunch finds it and skips it.
        """
        self._trials: Dict[tuple, tuple] = {}  # a trial's job -> (its cell's job, the drawn values)
        if not self.search.get("trials"):
            return jobs
        from bench import search
        from bench.launch import cli

        try:
            spec = search.Search(**self.search)
            default = cli.config_defaults()["method"]
            drawn: Dict[str, list] = {}
            out = []
            for job in jobs:
                value = lambda k, d: next((o.split("=", 1)[1] for o in job if o.lstrip("+").split("=")[0] == k), d)
                method = value("method", default)
                if method not in drawn:
                    drawn[method] = search.trials_of(spec, method)
                    print(f"[search] {method}: {spec.trials} configurations drawn from its space "
                          f"(search={spec.space}, {spec.sampler} sampler, seed {spec.seed})", flush=True)
                clash = sorted({o for o in job if o.lstrip("+~").partition("=")[0] in drawn[method][0]})
                if clash:
                    raise search.SearchError(f"{', '.join(clash)}: the search draws these values; drop them")
                if value("protocol", "val") != "val":
                    raise search.SearchError("a search selects on val: use protocol=val (the retrain, "
                                             "protocol=val_retrain, is scripts/select_and_retrain.py's)")
                for t in drawn[method]:
                    out.append([*job, *search.overrides(t)])
                    self._trials[tuple(out[-1])] = (job, t)
        except search.SearchError as e:
            cli.fail(f"error: {e}", 2)
        return out

    def _jobs(self, arguments: List[str]) -> List[List[str]]:
        self._parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        self._composed: Dict[tuple, DictConfig] = {}  # Hydra's compositions, where the shortcut could not serve
        self._plain: Dict[tuple, Optional[dict]] = {}
        self._env: Dict[str, Any] = {}  # each `${oc.env:...}` value as read once
        # the config files read once per sweep (compose.py); not where the config's search path moves
        self._composer = None if self.config.hydra.searchpath else \
            Composer(self.hydra_context.config_loader.repository, self.config.hydra.job.config_name)
        self._parsed: Dict[str, Any] = {}
        self._groups: Dict[str, bool] = {}
        self._compose_s = 0.0  # time in composing the distinct choices of options
        self._slow = self._whole = 0  # jobs whose values Hydra set on the config; jobs composed whole
        overrides = self._parser.parse_overrides(self._parse_config() + list(arguments))
        return [job for batch in self.split_arguments(overrides, None) for job in batch]

    def _parse(self, line: str):
        """One override, parsed once per sweep (Hydra's grammar costs ~0.1 ms a line; grids repeat lines)."""
        if line not in self._parsed:
            self._parsed[line] = self._parser.parse_override(line)
        return self._parsed[line]

    def _is_group(self, key: str) -> bool:
        """Whether `key` is a config group, looked up once per sweep (each lookup stats the search path)."""
        if key not in self._groups:
            self._groups[key] = self.hydra_context.config_loader.repository.group_exists(key)
        return self._groups[key]

    def _compose(self, job: List[str]) -> dict:
        """The job's task config as a plain resolved dict, as its launcher will compose it.

        Composing a job through Hydra costs ~0.1 s here (the recipe layers), too slow for grids of
        thousands of runs. Only overrides that pick config group options change the defaults list; the
        others set values. So each distinct choice of options is composed once (compose.py reads each
        config file once per sweep and merges them as Hydra does, or Hydra composes it where that
        shortcut cannot prove it agrees), resolved once when its only interpolations read the
        environment, and each job sets its values (train.lr=..., seed=...) on a copy of that plain
        dict, as Hydra would on the config (tests/test_sweep.py and test_compose.py check they agree).
        Anything this shortcut cannot do exactly (a value that is a mapping or a list, a deletion, a
        key that is not there, a value other keys interpolate) goes through Hydra's own override on
        Hydra's composed config, or composes the job whole.
        """
        parsed = [self._parse(line) for line in job]
        group = [o for o in parsed if self._is_group(o.key_or_group) and not isinstance(o.value(), dict)]
        key = tuple(o.input_line for o in group)
        values = [o for o in parsed if o not in group]
        try:
            if key not in self._plain:
                t0 = time.perf_counter()
                self._plain[key] = self._choice(group)
                self._compose_s += time.perf_counter() - t0
            plain = self._plain[key]
            if plain is not None:
                d = copy_tree(plain)
                if all(_set_value(d, o) for o in values):
                    return d
            self._slow += 1
            cfg = copy.deepcopy(self._hydra(key))
            ConfigLoaderImpl._apply_overrides_to_config(values, cfg)
            return OmegaConf.to_container(cfg, resolve=True)
        except Exception:
            self._whole += 1
            return OmegaConf.to_container(self._load(list(job)), resolve=True)  # the exact path; raises what Hydra raises

    def _choice(self, group: list) -> Optional[dict]:
        """The config of a choice of options, plain and resolved; None where a value interpolates another key."""
        try:
            raw = self._composer.compose(group) if self._composer else None
        except Exception:  # a file Hydra cannot read either: Hydra composes, and raises what it raises
            raw = None
        if raw is not None:
            return resolve_env(raw, self._env)
        key = tuple(o.input_line for o in group)
        cfg = self._hydra(key)
        if self._composer and not self._composer.confirm(group, OmegaConf.to_container(cfg, resolve=False)):
            self._composer = None  # it composed something else than Hydra: Hydra composes the rest of the sweep
        return None if _node_interpolations(cfg) else OmegaConf.to_container(cfg, resolve=True)

    def _hydra(self, key: tuple) -> DictConfig:
        """Hydra's composition of a choice of options (`key`, their override lines), once per sweep."""
        if key not in self._composed:
            self._composed[key] = self._load(list(key))
        return self._composed[key]

    def _data_version(self, rc) -> Optional[str]:
        """The data version a run of `rc` would read now (bench/data/version.py), once per dataset config and
        protocol: the content hashes are cached under the cache dir, so after the first time this costs a stat
        per image, as a run's own pixel cache does."""
        import dataclasses
        import json

        from bench.launch.sweep import data_version_now

        key = json.dumps([dataclasses.asdict(rc.dataset), rc.protocol], sort_keys=True, default=str)
        if key not in self._versions:
            t0 = time.perf_counter()
            self._versions[key] = data_version_now(rc.dataset, rc.protocol)
            self._versions_s += time.perf_counter() - t0
        return self._versions[key]

    def _load(self, overrides: List[str]) -> DictConfig:
        """Hydra's composition of the task config for `overrides`, without its `hydra` node."""
        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        with open_dict(cfg):
            del cfg["hydra"]
        return cfg

    def _prune(self, keep: List[int], jobs: List[List[str]], states: list, configs: list) -> None:
        """With `search.pruner`, each trial about to run gets its study (bench/prune.py: prune.json in its folder)."""
        if self.search.get("pruner", "none") == "none" or not self.search.get("trials"):
            return
        from bench import prune

        for i in keep:
            cell, values = self._trials[tuple(jobs[i])]
            rc = configs[i]
            url = self.search.get("storage") or f"sqlite:///{Path(rc.results_dir).resolve() / 'search.db'}"
            states[i].run_dir.mkdir(parents=True, exist_ok=True)
            prune.prepare(states[i].run_dir, url, prune.study_name(cell), self.search["pruner"],
                          rc.train.epochs + rc.train.cooldown_epochs, values)

    def sweep(self, arguments: List[str]) -> Any:
        from bench.config import config_hash
        from bench.launch import cli, sweep
        from bench.launch.identity import run_of

        assert self.config is not None and self.launcher is not None and self.hydra_context is not None
        from bench.config import ConfigError

        all_jobs = self._searched(self._jobs(arguments))
        tic = time.perf_counter()
        inspector, states, jobs, configs, seen = sweep.Inspector(), [], [], [], set()
        self._versions: Dict[str, Optional[str]] = {}
        self._versions_s = 0.0
        for job in all_jobs:
            try:  # every job's configuration is validated here, before anything is submitted
                run_dir, identity, rc = run_of(self._compose(job), job)
            except ConfigError as e:
                cli.fail(f"error: {e} (in the job {' '.join(job)})", 2)
            if run_dir in seen:  # the same run again (one value in two spellings): once
                continue
            seen.add(run_dir)
            jobs.append(job)
            configs.append(rc)
            states.append(inspector.inspect(run_dir, identity, lambda rc=rc: self._data_version(rc),
                                            lambda rc=rc: rc))
        compose_s = time.perf_counter() - tic
        same = len(all_jobs) - len(jobs)
        timing = (f"checked in {compose_s:.2f} s; {len(self._plain)} distinct compositions in "
                  f"{self._compose_s:.2f} s" + (f"; {self._slow} runs' values set by Hydra" if self._slow else "")
                  + (f"; {self._whole} runs composed whole" if self._whole else "")
            + (f"; data versions of {len(self._versions)} dataset(s) in {self._versions_s:.2f} s"
               if any(v is not None for v in self._versions.values()) else "")
            + (f"; {same} job(s) name a run another job names (one value, two spellings): run once" if same else ""))
        if self.status:
            print(sweep.report(states, inspector.warnings, f"{len(states)} runs in the grid ({timing})"), flush=True)
            return []
        todo, line = sweep.plan(states, rerun=self.rerun)
        print(line + f" ({timing})", flush=True)
        for w in inspector.warnings:
            print(f"[sweep] warning: {w}", flush=True)
        if not todo:
            return []

        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        target = str(self.config.hydra.launcher.get("_target_", ""))
        launcher = "slurm" if target.endswith("SlurmLauncher") else "local" if target.endswith("LocalLauncher") \
            else target.rsplit(".", 1)[-1]
        for s in todo:  # a completed run on other data or of another configuration: its folder moves aside,
            moved = sweep.archive(s)  # the rerun starts clean
            if moved and s.other_data:
                print(f"[sweep] {s.run_dir} was completed on other data; kept as {moved}", flush=True)
            elif moved:
                print(sweep.stale_line(s, moved), flush=True)
        chosen = {id(s) for s in todo}
        keep = [i for i, s in enumerate(states) if id(s) in chosen]
        self._prune(keep, jobs, states, configs)
        size = self.max_batch_size if self.max_batch_size and self.max_batch_size > 0 else len(keep)
        returns, failed = [], []
        for b, start in enumerate(range(0, len(keep), size)):
            batch = keep[start:start + size]
            previous = {}
            for k, i in enumerate(batch):  # before submitting: a relaunch sees these as pending
                job_file = states[i].run_dir / sweep.JOB
                previous[job_file] = job_file.read_bytes() if job_file.is_file() else None
                sweep.write_job(states[i].run_dir, "submitted", launcher=launcher, sweep_dir=str(sweep_dir.resolve()),
                                job_num=start + k, array_index=k, array_size=len(batch), batch=b,
                                config_hash=config_hash(configs[i]))
            try:
                results = self.launcher.launch([jobs[i] for i in batch], initial_job_idx=start)
            except Exception as e:
                if "sbatch: error" not in str(e):
                    raise
                # Slurm refused the submission (resources it can never give, unknown partition or account, ...):
                # nothing runs, so the runs' job.json go back to what they were, and the error is Slurm's own.
                for job_file, content in previous.items():
                    job_file.unlink(missing_ok=True) if content is None else job_file.write_bytes(content)
                print(f"[sweep] Slurm refused the submission of {len(batch)} run(s):\n{e}", file=sys.stderr, flush=True)
                raise SystemExit(1)
            for job_idx, r in zip(batch, results):
                if r.status == JobStatus.FAILED:
                    failed.append((states[job_idx], r._return_value))
            returns.append(results)
        if failed:  # each failed run wrote its record; one line each, then a non-zero exit (--debug: the traceback)
            if cli.DEBUG:
                raise failed[0][1]
            for state, error in failed:
                print(f"[sweep] failed: {' '.join(state.identity.values())}: {type(error).__name__}: "
                      f"{str(error).splitlines()[0] if str(error) else ''} (record: {state.run_dir / sweep.RECORD})",
                      file=sys.stderr, flush=True)
            cli.fail(f"error: {len(failed)} of {len(keep)} run(s) failed", 1)
        return returns
