"""The sweeper's shortcut through Hydra's composition (hydra_plugins/bench_sweeper/compose.py) composes
exactly what Hydra composes: every config file of conf/, every recipe and its layers, the recipe's
checkpoint as the backbone, and the overrides the shortcut leaves to Hydra."""
import pytest
from omegaconf import OmegaConf, open_dict

from bench import CONF
from bench.launch.identity import to_run_config
from hydra_plugins.bench_sweeper import compose

NOT_TASK = ("hydra", "site", "prepare", "search")  # Hydra's own node, the Slurm site file, `python -m bench.data` presets, search spaces (bench/search.py)


def hydra_compose(loader, config, job):
    """Hydra's own composition of a job, as its launcher composes it: the plain resolved task config."""
    cfg = loader.load_sweep_config(config, list(job))
    with open_dict(cfg):
        del cfg["hydra"]
    return OmegaConf.to_container(cfg, resolve=True)


def options(group: str) -> list[str]:
    return sorted(str(p.relative_to(CONF / group).with_suffix("")) for p in (CONF / group).rglob("*.yaml"))


BENCHMARKS = ("vtab", "fgvc", "fewshot", "mini", "cifar100", "imagenet", "dg")


def default_recipe(benchmark: str) -> str:
    """The recipe a dataset of `benchmark` runs under unless `recipe=` names another (its layers file)."""
    import yaml

    layers = yaml.safe_load((CONF / "recipe" / "layers" / f"{benchmark}.yaml").read_text())
    return next(d["/recipe"] for d in layers["defaults"] if isinstance(d, dict) and "/recipe" in d)


def layer_needs() -> list[dict]:
    """What reads each file of each recipe's layers (conf/recipe/<layer>/<recipe>/<benchmark>/...): the recipe
    (None: the benchmark's default, not named), the dataset (`<benchmark>/*`: any of the benchmark's), the
    method and backbone where the layer names them."""
    needs = []
    for path in sorted((CONF / "recipe").glob("*/*/**/*.yaml")):
        layer, recipe, benchmark, *rest = path.relative_to(CONF / "recipe").with_suffix("").parts
        need = {"recipe": None if recipe == default_recipe(benchmark) else recipe, "dataset": f"{benchmark}/*"}
        if layer == "task":
            need["dataset"] = f"{benchmark}/{rest[0]}"
        elif layer == "method":
            need["method"] = rest[0]
        elif layer == "backbone":
            need["backbone"] = rest[0]
        elif layer == "backbone_method":
            need["backbone"], need["method"] = rest
        elif layer == "task_method":
            need["dataset"], need["method"] = f"{benchmark}/{rest[0]}", rest[1]
        needs.append(need)
    return needs


def _fits(value, wanted) -> bool:
    """A job's value meets a need's: equal, or a dataset of the benchmark a `<benchmark>/*` asks for."""
    if value == wanted:
        return True
    wild = [v for v in (value, wanted) if isinstance(v, str) and v.endswith("/*")]
    return len(wild) == 1 and (wanted if wild[0] == value else value).startswith(wild[0][:-1])


def pack(needs: list[dict]) -> list[list[str]]:
    """The needs packed into as few jobs as fit (first fit, in order): a need joins the first job whose
    values meet its own, so one composition reads a dataset's file, its recipe's task, method and backbone
    layers, a backbone, a logger at once (Hydra takes ~0.1 s a composition, the test's cost)."""
    jobs: list[dict] = []
    for need in needs:
        for job in jobs:
            if all(_fits(job[k], v) for k, v in need.items() if k in job):
                for k, v in need.items():
                    if k not in job or str(job[k]).endswith("/*"):
                        job[k] = v
                break
        else:
            jobs.append(dict(need))
    first = {b: options(f"dataset/{b}")[0] for b in BENCHMARKS}
    out = []
    for job in jobs:
        dataset = job.get("dataset", "mini/*")
        job["dataset"] = dataset.replace("*", first[dataset[:-2]]) if dataset.endswith("/*") else dataset
        out.append([f"{k}={v}" for k, v in job.items() if v is not None])
    return out


def sample() -> list[list[str]]:
    """Jobs that together read every config file of the task config, each group's options in turn."""
    needs = layer_needs()
    needs += [{"grid": g, "method": g.split("/")[1], "dataset": "vtab/cifar", "recipe": g.split("/")[0]}
              for g in options("grid")]
    needs += [{"dataset": d, "recipe": None} for d in options("dataset")]  # under its benchmark's default recipe
    needs += [{"method": m} for m in options("method")]
    needs += [{"backbone": b, "recipe": None} for b in options("backbone")]  # named: the recipe's checkpoint unused
    needs += [{"logger": x} for x in options("logger")]
    return pack(needs)


def test_merge_is_omegaconfs_merge_or_unproven():
    # names looked up on the module when used: Hydra's plugin scan re-executes the plugin's modules in place
    # (a new Unproven class), so names bound at import would no longer match once another test scanned
    cases = [({"a": {"x": 1, "y": 2}}, {"a": {"x": {"z": 1}}}), ({"a": 5}, {"a": None}), ({"a": None}, {"a": {"x": 1}}),
             ({"a": {"x": 1}}, {"a": 5}), ({"a": [1, 2]}, {"a": [3]}), ({"a": 5}, {"a": "???"}),
             ({"a": "???"}, {"a": 5}),
             ({"a": {"x": 1}}, {"a": "???"}), ({"b": 1}, {"a": "???"}), ({"a": "${b}", "b": 1}, {"a": 7}),
             ({"a": {"x": 1}, "b": {}}, {"a": "${b}"}), ({"a": "${b}", "b": {"y": 1}}, {"a": {"x": 1}}),
             ({"a": "${b}", "b": [1]}, {"a": [2]})]
    for dest, src in cases:
        expected = OmegaConf.to_container(OmegaConf.merge(dest, src))
        plain = OmegaConf.to_container(OmegaConf.create(dest))
        try:
            compose.merge(plain, src)
        except compose.Unproven:
            assert isinstance(src["a"], (dict, list)) and "${" in str(dest["a"]), (dest, src)
            continue
        assert plain == expected, (dest, src)


def test_shortcut_composes_every_config_file_as_hydra(hydra_sweeper, monkeypatch):
    """Every file of conf/ (but Hydra's, the site's and the data presets') in some job; each job the same
    through the shortcut and through Hydra, and the same run (the recipe's checkpoint as the backbone)."""
    monkeypatch.setenv("BENCH_DATA_ROOT", "/data/bench")  # ${oc.env:...} is read as Hydra reads it
    loader, config, sweeper = hydra_sweeper
    jobs = sample()
    sweeper._jobs([])
    read = set()
    for job in jobs:
        shortcut = sweeper._compose(job)
        assert shortcut == hydra_compose(loader, config, job), job
        rc = to_run_config(shortcut, job)
        assert rc.dataset.data_root == "/data/bench"
        if not any(o.startswith("backbone=") for o in job) and rc.recipe.checkpoint:
            assert rc.backbone.name == rc.recipe.checkpoint, job
        group = [sweeper._parse(o) for o in job]
        read |= {path for path, _ in sweeper._composer._defaults(group)}
    task_files = {str(p.relative_to(CONF).with_suffix("")) for p in CONF.rglob("*.yaml")
                  if p.relative_to(CONF).parts[0] not in NOT_TASK}
    assert task_files - read == set()
    # Hydra composed the first choice (the shortcut checked against it) and one per grid file (they write
    # into Hydra's node), the shortcut all the others
    assert sweeper._composer is not None and len(sweeper._composed) == 1 + len(options("grid"))
    assert len(sweeper._plain) == len({tuple(j) for j in jobs}) and sweeper._slow == sweeper._whole == 0


def test_overrides_left_to_hydra_compose_as_hydra(hydra_sweeper):
    """Group additions and deletions, lists of options, packages, new keys and deletions of values, mappings,
    interpolated values: the same configs, or the same errors, as Hydra's."""
    from hydra.errors import ConfigCompositionException

    loader, config, sweeper = hydra_sweeper
    sweeper._jobs([])
    jobs = [["method=lora", "dataset=vtab/dtd", "~logger"], ["dataset=mini/count", "logger=[csv,tensorboard]"],
            ["method=lora", "+logger@extra=csv", "dataset=vtab/dtd"], ["dataset=vtab/dtd", "recipe=noah", "~grid"],
            ["dataset=fewshot/food101", "+extra=1", "++train.lr=0.5", "~train.min_lr", "seed=3"],
            ["dataset=vtab/dtd", "method=ssf", "++dataset.splits={train:6,val:2}", "train.min_lr='${train.lr}'"],
            ["dataset=vtab/dtd", "method=ssf", "+method.extra=[1,2]", "++backbone.kwargs={img_size:32}"],
            ["dataset=vtab/dtd", "backbone=tiny_vit", "~backbone.kwargs", "recipe=vpt", "method=vpt"]]
    for job in jobs:
        assert sweeper._compose(job) == hydra_compose(loader, config, job), job
    groups = [[sweeper._parse(o) for o in job if sweeper._is_group(o.lstrip("+~").split("=")[0].split("@")[0])]
              for job in jobs[:3]]
    assert all(sweeper._composer.compose(g) is None for g in groups)  # group deletions, lists, additions: Hydra's
    errors = (["prepare=hf_vtab1k"], ["dataset=vtab/nope"], ["+grid=petl_vision/lora"], ["method=ssf", "train.lrr=1"])
    for job in errors:
        with pytest.raises(Exception) as shortcut:
            sweeper._compose(job)
        with pytest.raises(Exception) as hydra:
            hydra_compose(loader, config, job)
        assert type(shortcut.value) is type(hydra.value) and str(shortcut.value) == str(hydra.value), job
    assert issubclass(type(shortcut.value), ConfigCompositionException)


def test_a_shortcut_that_disagrees_with_hydra_leaves_the_sweep_to_hydra(hydra_sweeper, monkeypatch):
    """The first choice is composed both ways: where they differ, Hydra composes every choice of the sweep."""
    import sys

    loader, config, sweeper = hydra_sweeper
    sweeper._jobs([])
    module = sys.modules[type(sweeper._composer).__module__]
    merge_right = module.merge

    def merge_wrong(dest, src):
        merge_right(dest, src)
        dest["seed"] = dest.get("seed", 0) + 1

    monkeypatch.setattr(module, "merge", merge_wrong)
    jobs = [["dataset=vtab/dtd", "method=lora"], ["dataset=vtab/cifar", "method=ssf"]]
    for job in jobs:
        assert sweeper._compose(job) == hydra_compose(loader, config, job), job
    assert sweeper._composer is None and len(sweeper._composed) == len(jobs)
