"""Benchmarks, their tasks in the order the papers' tables show them, and their groups.

Torch-free and data-free: analyze.py builds its tables from these lists. Dataset names are the
config paths (`vtab/dtd`, `fgvc/cub`), the same strings a record's `dataset` field holds.
"""
from dataclasses import dataclass, field

# VTAB-1k in the column order of the VPT, NOAH and SSF tables; folder names are NOAH's.
VTAB_GROUPS: dict[str, list[str]] = {
    "natural": ["cifar", "caltech101", "dtd", "oxford_flowers102", "oxford_iiit_pet", "svhn", "sun397"],
    "specialized": ["patch_camelyon", "eurosat", "resisc45", "diabetic_retinopathy"],
    "structured": ["clevr_count", "clevr_dist", "dmlab", "kitti", "dsprites_loc", "dsprites_ori",
                   "smallnorb_azi", "smallnorb_ele"],
}
# FGVC in the column order of the VPT and SSF tables.
FGVC = ["cub", "nabirds", "oxford_flowers", "stanford_dogs", "stanford_cars"]
# The mini benchmark mirrors VTAB's three groups on 32x32 images (conf/dataset/mini/*.yaml).
MINI_GROUPS: dict[str, list[str]] = {
    "natural": ["digits"], "specialized": ["textures"], "structured": ["dspr_loc", "dspr_ori", "count"],
}


def _prefixed(benchmark: str, groups: dict[str, list[str]]) -> dict[str, list[str]]:
    return {g: [f"{benchmark}/{t}" for t in tasks] for g, tasks in groups.items()}


BENCHMARK_GROUPS: dict[str, dict[str, list[str]]] = {
    "mini": _prefixed("mini", MINI_GROUPS),
    "vtab": _prefixed("vtab", VTAB_GROUPS),
}

BENCHMARK_TASKS: dict[str, list[str]] = {
    # natural, specialized, structured: the VTAB-1k group order
    "mini": [t for ts in BENCHMARK_GROUPS["mini"].values() for t in ts],
    "vtab": [t for ts in BENCHMARK_GROUPS["vtab"].values() for t in ts],
    "fgvc": [f"fgvc/{t}" for t in FGVC],
    "cifar100": ["cifar100/cifar100"],
    "imagenet": ["imagenet/imagenet"],
}


def short_name(dataset: str) -> str:
    """Column header for a dataset: the part after the benchmark (`vtab/dtd` -> `dtd`)."""
    return dataset.split("/", 1)[-1]


@dataclass(frozen=True)
class TableSpec:
    """One leaderboard: which benchmarks' records it reads, its task columns and their groups.

    `mean` is False where averaging the columns means nothing (CIFAR-100 next to ImageNet).
    """
    name: str
    benchmarks: tuple[str, ...]
    tasks: tuple[str, ...]
    groups: dict[str, list[str]] = field(default_factory=dict)
    mean: bool = True


# The tables the papers print. A benchmark found in the records but missing here still gets a
# table of its own (datasets sorted), so a new benchmark never disappears from the output.
TABLES: tuple[TableSpec, ...] = (
    TableSpec("vtab", ("vtab",), tuple(BENCHMARK_TASKS["vtab"]), BENCHMARK_GROUPS["vtab"]),
    TableSpec("fgvc", ("fgvc",), tuple(BENCHMARK_TASKS["fgvc"])),
    TableSpec("cifar100_imagenet", ("cifar100", "imagenet"),
              (*BENCHMARK_TASKS["cifar100"], *BENCHMARK_TASKS["imagenet"]), mean=False),
    TableSpec("mini", ("mini",), tuple(BENCHMARK_TASKS["mini"]), BENCHMARK_GROUPS["mini"]),
)


def table_specs(benchmarks: list[str]) -> list[TableSpec]:
    """The specs covering `benchmarks` (those present in the records), plus a default per uncovered one."""
    present = set(benchmarks)
    specs = [s for s in TABLES if present & set(s.benchmarks)]
    covered = {b for s in TABLES for b in s.benchmarks}
    specs += [TableSpec(b, (b,), ()) for b in sorted(present - covered)]
    return specs
