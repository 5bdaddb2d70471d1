"""Named recipes (conf/recipe/<name>.yaml): what each defines, and checks made before Hydra runs.

A recipe is the training setup one published table was produced with (SSF's train scripts,
NOAH's, VPT's, PETL_Vision's unified protocol). Its file says where the settings come from and
which benchmarks and methods it defines; its layers (conf/recipe/{base,task,method,backbone,
backbone_method}/<name>/...) hold the settings, and conf/recipe/layers/<benchmark>.yaml names
each benchmark's default recipe. Torch-free and Hydra-free: launch.py calls `check` on the
command line before composing anything, so a bad recipe never starts a run or writes a record.
"""
import functools

import yaml

from bench import CONF

RECIPES = CONF / "recipe"


def names() -> list[str]:
    """The recipes: the top-level files of conf/recipe/ (the folders under it are their layers)."""
    return sorted(p.stem for p in RECIPES.glob("*.yaml"))


@functools.lru_cache(maxsize=None)
def info(name: str) -> dict:
    """conf/recipe/<name>.yaml's `recipe` mapping (name, source, checkpoint, benchmarks, methods, ...)."""
    return yaml.safe_load((RECIPES / f"{name}.yaml").read_text())["recipe"]


@functools.lru_cache(maxsize=None)
def default_for(benchmark: str) -> str:
    """The default recipe of `benchmark` (the `/recipe` entry of conf/recipe/layers/<benchmark>.yaml)."""
    path = RECIPES / "layers" / f"{benchmark}.yaml"
    if not path.is_file():
        return ""
    for entry in yaml.safe_load(path.read_text())["defaults"]:
        if isinstance(entry, dict) and "/recipe" in entry:
            return entry["/recipe"]
    return ""


def covers(name: str, method: str, benchmark: str) -> bool:
    r = info(name)
    defined = methods_for(r, benchmark)
    return benchmark in r["benchmarks"] and ("*" in defined or method in defined)


def methods_for(r: dict, benchmark: str) -> list[str]:
    """The methods a recipe defines on a benchmark: its `methods` list, or that benchmark's entry of a mapping."""
    methods = r["methods"]
    return list(methods.get(benchmark, [])) if isinstance(methods, dict) else list(methods)


def coverage() -> str:
    """One line per recipe: the benchmarks and methods it defines."""
    lines = []
    for n in names():
        r = info(n)
        parts = []
        for b in r["benchmarks"]:
            m = methods_for(r, b)
            parts.append(f"{b} ({'every method' if '*' in m else ', '.join(m)})")
        lines.append(f"  {n}: {'; '.join(parts)}")
    return "\n".join(lines)


def check(recipes: list[str], methods: list[str], datasets: list[str]) -> None:
    """Every (recipe, method, dataset) of a command line is defined; `recipes` empty: the defaults.

    Datasets are config names (`vtab/dtd`): their first part is the benchmark.

    Raises:
        ValueError: naming the first undefined combination, the valid recipes and what each covers.
    """
    for recipe in recipes:
        if recipe not in names():
            raise ValueError(f"unknown recipe {recipe!r}; valid recipes and what they define:\n{coverage()}")
    for dataset in datasets:
        benchmark = dataset.split("/", 1)[0]
        for recipe in recipes or [default_for(benchmark)]:
            if not recipe:
                continue
            for method in methods:
                if not covers(recipe, method, benchmark):
                    what = (f"benchmark {benchmark!r}" if benchmark not in info(recipe)["benchmarks"]
                            else f"method {method!r}")
                    raise ValueError(f"recipe {recipe!r} does not define {what} (dataset {dataset}, method {method}); "
                                     f"valid recipes and what they define:\n{coverage()}")
