"""Budgeted hyper-parameter search: search spaces as data, and the same number of drawn trials for every method.

A method's search space is `conf/search/<method>.yaml`: each key is the override a trial sets
(`train.lr`, `method.r`), each value a log-uniform or uniform range (`{low, high, log}`) or a list of
`choices`. A named space (`search=petl_vision`) is `conf/search/<space>/<method>.yaml`, whose keys
narrow the method's space (a range inside the base range, choices among the base choices) and
leave the other keys as they were. docs/recipes.md ("Equal tuning budgets").

`draw` asks Optuna's sampler (RandomSampler, or QMCSampler's scrambled Sobol points) for
`trials` configurations with a fixed seed: the same seed gives the same draw, every method gets
the same number of trials, and methods whose spaces agree get the same configurations (common
random numbers: their difference is not a difference in luck). Ranged values are rounded to 3
significant digits, so that each trial's run folder and Hydra value stay short and readable; a
configuration drawn twice is drawn again, so the K trials are K distinct runs. The draw does not
depend on the task or the backbone: every (method, task, backbone) gets the same K configurations,
each an ordinary run of the `val` protocol whose overrides carry the drawn values
(hydra_plugins/bench_sweeper expands them; scripts/select_and_retrain.py selects among them).

Hydra-free and torch-free; Optuna is imported when a draw is asked for.
"""
import dataclasses
import math

from bench import CONF

SEARCH_DIR = CONF / "search"
SAMPLERS = ("random", "qmc")
BASE = "default"  # the space name meaning conf/search/<method>.yaml itself
FIGURES = 3  # significant digits of a drawn ranged value


class SearchError(ValueError):
    """A bad search setting or space file: the message names it and the valid choices."""


@dataclasses.dataclass(frozen=True)
class Search:
    """`launch.py -m ... search=<space> search.trials=K [search.sampler=random|qmc] [search.seed=S]`."""
    space: str = BASE  # default: conf/search/<method>.yaml; else conf/search/<space>/<method>.yaml narrows it
    trials: int = 0  # K configurations per (method, task, backbone); 0: no search
    sampler: str = "random"  # random: Optuna's RandomSampler | qmc: its QMCSampler (scrambled Sobol)
    seed: int = 0
    pruner: str = "none"  # none | median | asha | hyperband: stop hopeless trials early (bench/prune.py)
    storage: str = ""  # the pruner's study: "" = sqlite:///<results_dir>/search.db | a SQLAlchemy URL | journal:<path>

    def __post_init__(self):
        from bench.prune import PRUNERS

        if self.sampler not in SAMPLERS:
            raise SearchError(f"search.sampler={self.sampler}: unknown sampler; valid: {', '.join(SAMPLERS)}")
        if self.pruner not in PRUNERS:
            raise SearchError(f"search.pruner={self.pruner}: unknown pruner; valid: {', '.join(PRUNERS)}")
        if not isinstance(self.trials, int) or self.trials < 0:
            raise SearchError(f"search.trials={self.trials}: must be a whole number >= 0")

    def tag(self) -> str:
        """The retrain's variant suffix: `search4`, `search16-petl_vision-qmc-seed1` (non-default settings named), so
        that retrains selected by different searches (or by a grid) never share a run folder."""
        return "-".join([f"search{self.trials}", *([self.space] if self.space != BASE else []),
                         *([self.sampler] if self.sampler != "random" else []),
                         *([f"seed{self.seed}"] if self.seed else []),
                         *([f"pruned{self.pruner}"] if self.pruner != "none" else [])])

    def args(self) -> list[str]:
        """The command-line arguments that name this search (for the second stage and the docs)."""
        return [f"search={self.space}", f"search.trials={self.trials}", f"search.sampler={self.sampler}",
                f"search.seed={self.seed}", *([f"search.pruner={self.pruner}"] if self.pruner != "none" else []),
                *([f"search.storage={self.storage}"] if self.storage else [])]


def split_args(argv: list[str]) -> tuple[list[str], Search | None]:
    """(the other arguments, the search they name, or None) from launch.py-style arguments.

    Raises:
        SearchError: an unknown `search.<key>` or a bad value.
    """
    rest, settings = [], {}
    fields = {f.name: f.type for f in dataclasses.fields(Search)}
    for arg in argv:
        key, sep, value = arg.lstrip("+").partition("=")
        if not sep or not (key == "search" or key.startswith("search.")):
            rest.append(arg)
            continue
        name = "space" if key == "search" else key.split(".", 1)[1]
        if name not in fields:
            raise SearchError(f"{key}: unknown search setting; valid: search, "
                              + ", ".join(f"search.{f}" for f in fields if f != "space"))
        if fields[name] == "int" or fields[name] is int:
            try:
                settings[name] = int(value)
            except ValueError:
                raise SearchError(f"{arg}: {name} must be a whole number") from None
        else:
            settings[name] = value
    return rest, (Search(**settings) if settings else None)


def spaces() -> list[str]:
    """The named spaces: `default` and each folder under conf/search/."""
    return [BASE, *sorted(p.name for p in SEARCH_DIR.iterdir() if p.is_dir())]


def _name(path) -> str:
    """A space file as the docs name it (conf/search/...), or its whole path elsewhere."""
    return str(path.relative_to(CONF.parent)) if path.is_relative_to(CONF.parent) else str(path)


def _read(path) -> dict:
    import yaml

    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise SearchError(f"{_name(path)}: a search space is a mapping of override keys to ranges or choices")
    for key, spec in data.items():
        ok = isinstance(spec, dict) and (
            (set(spec) == {"choices"} and isinstance(spec["choices"], list) and spec["choices"])
            or ({"low", "high"} <= set(spec) <= {"low", "high", "log"} and spec["low"] < spec["high"]
                and (not spec.get("log") or spec["low"] > 0)))
        if not ok or "." not in key:
            raise SearchError(f"{_name(path)}: {key}: expected `section.key: {{low: L, high: H, log: true}}` (0 < L < H "
                              f"for log) or `section.key: {{choices: [...]}}`, got {spec!r}")
    return data


def load_space(method: str, space: str = BASE) -> dict[str, dict]:
    """The search space of `method` (override key -> range or choices), narrowed by `space` unless `default`.

    Raises:
        SearchError: no space for the method, an unknown named space, or one that widens its base.
    """
    base_path = SEARCH_DIR / f"{method}.yaml"
    if not base_path.is_file():
        have = sorted(p.stem for p in SEARCH_DIR.glob("*.yaml"))
        raise SearchError(f"method {method!r} has no search space ({_name(base_path)}); "
                          f"methods with one: {', '.join(have)}")
    out = _read(base_path)
    if space == BASE:
        return out
    if space not in spaces():
        raise SearchError(f"search={space}: unknown search space; valid: {', '.join(spaces())}")
    path = SEARCH_DIR / space / f"{method}.yaml"
    if not path.is_file():
        have = sorted(p.stem for p in (SEARCH_DIR / space).glob("*.yaml"))
        raise SearchError(f"search={space} has no space for method {method!r} ({_name(path)}); "
                          f"its methods: {', '.join(have)}")
    for key, spec in _read(path).items():
        b = out.get(key)
        inside = b is not None and (
            set(spec.get("choices", ["?"])) <= set(b.get("choices", [])) if "choices" in spec
            else "low" in b and b["low"] <= spec["low"] and spec["high"] <= b["high"]
            and bool(spec.get("log")) == bool(b.get("log")))
        if not inside:
            raise SearchError(f"{_name(path)}: {key}: {spec} does not narrow "
                              f"{_name(base_path)}'s {b}")
        out[key] = spec
    return out


def _distributions(space: dict) -> dict:
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    return {k: CategoricalDistribution(s["choices"]) if "choices" in s
            else FloatDistribution(float(s["low"]), float(s["high"]), log=bool(s.get("log")))
            for k, s in sorted(space.items())}


def _round(x: float, low: float, high: float) -> float:
    """`x` to FIGURES significant digits, kept inside [low, high]."""
    if x == 0:
        return 0.0
    r = round(x, FIGURES - 1 - math.floor(math.log10(abs(x))))
    return min(max(r, low), high)


def draw(space: dict, trials: int, sampler: str = "random", seed: int = 0) -> list[dict]:
    """`trials` distinct configurations ({override key: value}) from `space`, deterministic for a seed.

    Raises:
        SearchError: the space holds fewer than `trials` distinct configurations.
    """
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = _distributions(space)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        chosen = optuna.samplers.RandomSampler(seed=seed) if sampler == "random" else \
            optuna.samplers.QMCSampler(seed=seed, scramble=True, warn_independent_sampling=False)
        study = optuna.create_study(sampler=chosen)  # in memory: the draw is a function of (space, sampler, seed)
        out, seen = [], set()
        for _ in range(100 * trials):
            if len(out) == trials:
                break
            t = study.ask(dists)
            study.tell(t, 0.0)
            config = {k: _round(v, space[k]["low"], space[k]["high"]) if "choices" not in space[k] else v
                      for k, v in t.params.items()}
            key = tuple(sorted(config.items()))
            if key not in seen:
                seen.add(key)
                out.append(config)
    if len(out) < trials:
        raise SearchError(f"the space holds fewer than search.trials={trials} distinct configurations "
                          f"(drew {len(out)}): {space}")
    return out


def overrides(config: dict) -> list[str]:
    """A trial's configuration as launch.py overrides (`++` sets a key the composed config may lack)."""
    def text(v):
        return "true" if v is True else "false" if v is False else "null" if v is None else repr(v) \
            if isinstance(v, float) else str(v)
    return [f"++{k}={text(v)}" for k, v in config.items()]


def trials_of(search: Search, method: str) -> list[dict]:
    """The K configurations `search` draws for `method` (each key sorted as the space's distributions are)."""
    return draw(load_space(method, search.space), search.trials, search.sampler, search.seed)
