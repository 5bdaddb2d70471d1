"""Typed run configuration: the one shape a run takes, whoever builds it (launch.py or Python).

`from_dict` is strict: an unknown key is an error that lists the valid ones, so a typo in
a YAML file or on the command line never silently falls back to a default.
"""
import dataclasses
import functools
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from bench.data.choices import BAD_IMAGE_MODES, CACHE_MODES, VALID

PROTOCOLS = {
    # name: (split trained on, split scored every epoch, split reported)
    "val": ("train", "val", "test"),  # VPT-style: train on train800, monitor val200, report final test
    "paper": ("trainval", "test", "test"),  # SSF code: train on train800val200, report final-epoch test
    # The val protocol's second stage (scripts/select_and_retrain.py): the lr x wd point with the
    # best final-epoch val200 score, retrained on train800val200 with several seeds; headline =
    # final-epoch test, as VPT's tune_vtab.py does it (anchors.md section 2).
    "val_retrain": ("trainval", "test", "test"),
}


@dataclass
class BackboneConfig:
    name: str  # label used in records, paths and plots
    arch: str  # timm model name, `arch.tag` form
    pretrained: bool = True  # load pretrained weights (from `file` when given, else from the hub)
    file: str | None = None  # local weights (.safetensors/.pth); relative paths are from the project root
    kwargs: dict[str, Any] = field(default_factory=dict)  # extra timm.create_model arguments
    pretrained_cfg: dict[str, Any] = field(default_factory=dict)  # timm pretrained_cfg overlay (mean, std, ...)
    channels_last: bool = False  # NHWC inputs and weights on CUDA: faster for convolutional backbones


@dataclass
class DatasetConfig:
    name: str  # the config path, e.g. mini/digits
    benchmark: str  # mini, vtab, fgvc, ...
    task: str  # task name inside the benchmark
    group: str  # VTAB group: natural / specialized / structured
    num_classes: int
    image_size: int
    data_seed: int = 0  # fixes generated data and split permutations; independent of the run seed
    # --- real data on disk (bench/data/splits.py); the generated mini benchmark ignores these ---
    format: str = "generated"  # on-disk format; bench/data/formats/__init__.py:FORMATS lists the valid ones
    root: str = ""  # this dataset's folder, relative to data_root (or absolute)
    data_root: str = ""  # folder holding every dataset; empty: $BENCH_DATA_ROOT, else ./data
    image_dir: str = ""  # fgvc_json, meta_list: folder inside root that the listed paths are relative to ("": root)
    splits: dict[str, int] = field(default_factory=dict)  # expected images per split; 0 = any number
    resize: str = "squash"  # evaluation pixels: squash (resize to image_size) | crop (shorter side to image_size/crop_pct,
    # centre crop) | squash_crop (square image_size/crop_pct, centre crop: NOAH few-shot)
    crop_pct: float = 0.9
    interpolation: str = "bicubic"
    train_interpolation: str = "random"  # train_aug=timm: timm train.py's default `random`; NOAH: bicubic
    norm: str = "backbone"  # pixel normalisation: backbone (its data config) | imagenet | inception (0.5) | none ([0, 1])
    train_aug: str = "none"  # none (as evaluation) | simple (random-resized crop + flip) | crop_flip (the `crop`
    # resize, then a random crop + flip: VPT's FGVC) | timm (timm's train transform)
    auto_augment: str = ""  # train_aug=timm: timm auto-augment policy, e.g. rand-m9-mstd0.5-inc1
    re_prob: float = 0.0  # train_aug=timm: random-erasing probability
    cache: str = "none"  # decoded, resized pixels: none | memory | disk (memory-mapped file under cache_dir)
    cache_dir: str = ""  # empty: $BENCH_CACHE_DIR, else <data_root>/.cache (also where mini tasks are kept once drawn)
    cache_short_side: int = 0  # augmented training from the cache: images stored with this shorter side; 0 = decode each epoch
    batch_aug: bool = False  # train_aug=simple per batch on the fixed-size cache (on the GPU with the data), not per image
    num_workers: int = 0  # decoding threads for the cache, DataLoader workers for the rest
    on_bad_image: str = "error"  # error | skip (replace by the next readable image, warn and count)
    robustness: dict[str, str] = field(default_factory=dict)  # evaluations after training: name -> folder under data_root
    # --- few-shot, domain generalisation, many-shot (bench/data/formats/meta_list.py, bench/data/subset.py) ---
    split_lists: dict[str, str] = field(default_factory=dict)  # format meta_list: list file per split, over the defaults
    split_dirs: dict[str, str] = field(default_factory=dict)  # format meta_list: image folder per split, over image_dir
    shots: int = 0  # format meta_list: training list train_meta.list.num_shot_<shots>.seed_<fewshot_seed>; 0: train_meta.list
    fewshot_seed: int = 0  # which NOAH list of that many shots (the images drawn); independent of the run seed
    domain_shift: dict[str, str] = field(default_factory=dict)  # after training, score NOAH-list targets: name -> folder
    train_subset: int = 0  # > 0: a stratified subset of this many training images (many-shot curves); 0: the whole split
    subset_seed: int = 0  # which subset; independent of the run seed


SCHED_UNITS = ("step", "epoch")
OPTIMIZERS = ("adamw", "sgd")
WD_POLICIES = ("timm", "all", "vpt")


@dataclass
class TrainConfig:
    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4  # which parameters it reaches: wd_policy
    warmup_epochs: float = 2.0  # linear warm-up from warmup_lr, then cosine to min_lr
    warmup_lr: float = 1e-6
    min_lr: float = 1e-6
    cooldown_epochs: int = 0  # extra epochs at min_lr after the cosine (timm's cooldown; SSF uses 10)
    # --- schedule and batch semantics (docs/recipes.md) ---
    sched_unit: str = "step"  # step: the schedule moves every optimizer step | epoch: held within an epoch (timm t_in_epochs)
    sched_lag: int = 0  # sched_unit=epoch: epoch e (0-based) trains at the schedule's value at max(e - lag, 0);
    # 0: SSF (scheduler.step(epoch + 1) after each epoch), 1: NOAH, PETL_Vision (scheduler.step(epoch))
    warmup_prefix: bool = False  # the cosine starts after the warm-up (VPT) instead of counting it (timm's default)
    drop_last: bool = False  # drop the last partial training batch (always with mixup: pairs need even batches)
    optimizer: str = "adamw"  # adamw | sgd
    momentum: float = 0.9  # sgd
    wd_policy: str = "timm"  # timm: no decay on biases and other 1-D parameters (SSF, NOAH) | all: every trainable
    # parameter (PETL_Vision) | vpt: every trainable parameter but the classifier's bias (VPT's SGD)
    lr_base_batch: int = 0  # > 0: lr scaled by batch_size / lr_base_batch (VPT: 256); 0: lr as given
    head_init: str = "timm"  # timm: the backbone's own head init | vpt: Kaiming-normal (fan_out) weights, bias -log(99)
    # | pytorch: nn.Linear's default init, Kaiming-uniform weights and a uniform bias (PETL_Vision's reset_classifier)
    label_smoothing: float = 0.0
    mixup: float = 0.0  # mixup alpha (timm Mixup); 0 disables
    cutmix: float = 0.0  # cutmix alpha; 0 disables
    drop_path: float = 0.0  # stochastic depth rate of the backbone
    tune_norms: bool = False  # after the method applies, every norm's affine parameters train too (methods/ln.py;
    # adapter_plus's train_ln)
    ema_decay: float = 0.0  # model EMA decay (timm ModelEmaV3); 0 disables; evaluation then uses the EMA
    eval_batch_size: int = 0  # 0: twice the training batch, at most 512 (bench.run.runner.eval_batch_size)
    checkpoint_every: int = 1  # epochs between checkpoints (<run dir>/last.pt) that a relaunch resumes from; 0: never
    checkpoint_interval_s: float = 60.0  # ...and at least this many seconds apart (wall clock): a ViT-B full
    # fine-tuning checkpoint is ~1 GB, one per 1-second epoch would double the run; 0: every checkpoint_every epochs
    amp: str = "auto"  # auto: bf16 autocast on CUDA, off elsewhere | bf16 | off
    tf32: bool = True  # TF32 matmuls and convolutions on CUDA
    fused_adamw: bool | None = None  # None: fused on CUDA and CPU, PyTorch's default elsewhere
    compile: bool = False  # torch.compile the model for training
    linear_fast_path: bool = True  # linear probing: extract frozen features once, train the head on them
    data_on_device: str = "auto"  # in-memory and cached splits held on the device: auto (CUDA, within 1/4 of free memory) | on | off
    device: str = "auto"  # auto: cuda when available, else cpu (several processes: cuda:LOCAL_RANK)
    dist_timeout_s: float = 600.0  # several processes: a collective waiting longer than this ends the run
    num_threads: int = 0  # torch intra-op threads; 0 keeps torch's default
    progress: bool = True  # tqdm bars per epoch and per evaluation

    def __post_init__(self):
        if self.warmup_prefix and self.warmup_epochs >= self.epochs:
            raise ConfigError(f"train.warmup_epochs={self.warmup_epochs}: must be below train.epochs={self.epochs} "
                              "with train.warmup_prefix=true (the cosine runs over the epochs after the warm-up)")


@dataclass
class RecipeConfig:
    """Where a run's training settings come from (conf/recipe/<name>.yaml): what the published
    rows it reproduces were trained with, so a comparison can say whether it is like for like."""
    name: str = ""
    title: str = ""
    source: str = ""  # the official code the settings were read from
    checkpoint: str = ""  # the backbone (timm name) the recipe's published numbers used; "" = any
    selection: str = ""  # how the recipe's published numbers were selected (best epoch on test, val grid, ...)
    benchmarks: list[str] = field(default_factory=list)  # benchmarks it defines
    methods: Any = field(default_factory=list)  # methods it defines, ["*"]: every method; or {benchmark: [...]}
    retrain_seeds: list[int] = field(default_factory=list)  # the val protocol's retrain seeds (select_and_retrain)
    method_args: dict[str, Any] = field(default_factory=dict)  # the method's arguments under this recipe
    # (set by its method layer; applied over the method's config file, under the command line's method.*)
    differences: list[str] = field(default_factory=list)  # where our runs of it deliberately differ from the official code


@dataclass
class RunConfig:
    method: str
    dataset: DatasetConfig
    backbone: BackboneConfig
    train: TrainConfig = field(default_factory=TrainConfig)
    recipe: RecipeConfig = field(default_factory=RecipeConfig)
    method_args: dict[str, Any] = field(default_factory=dict)  # validated by the method's own Config
    protocol: str = "val"
    seed: int = 0
    variant: str = ""  # names a non-default setting (hyper-parameters); part of the run's identity
    results_dir: str = "results"
    save_weights: bool = True  # trained parameters (tunable ones only) next to the record, for export
    deploy_iters: int = 3  # timed rounds (at least) of the deployed model and the untouched backbone; 0 skips
    deploy_budget: float = 0.05  # ...and more rounds (up to 20) while timing has used under this share of training time
    deploy_score: str = "check"  # check: a merged model's logits compared with the trained model's on one batch |
    # full: also its top-1 on the whole report split (deployed_test_top1)
    logger: Any = field(default_factory=dict)  # experiment trackers (bench/trackers.py): {name: its settings}, in
    # order; a list of names takes each one's defaults; {} (logger=none): the record alone
    sweep: str = ""  # the sweep this run belongs to: trackers group its runs by it (launch.py: Hydra's sweep folder)

    def __post_init__(self):
        if self.protocol not in PROTOCOLS:
            raise ConfigError(f"protocol={self.protocol}: unknown protocol; valid: {', '.join(PROTOCOLS)}")
        if isinstance(self.logger, str):
            self.logger = [] if self.logger == "none" else [self.logger]
        if isinstance(self.logger, (list, tuple)):
            self.logger = {name: {} for name in self.logger if name != "none"}
        if not isinstance(self.logger, dict):
            raise ConfigError(f"logger={self.logger!r}: must be a list of logger names or a mapping name -> settings")


# Settings that never change a run's result (where and how fast it runs, what watches it): the one
# list behind both a run's variant name (bench.launch.identity) and what its checkpoint must match to
# be resumed (result_config), so a requeued run with other workers or another data_root resumes.
OPERATIONAL = frozenset({
    "results_dir", "save_weights", "deploy_iters", "deploy_budget", "deploy_score", "logger", "sweep",
    "train.progress", "train.num_threads", "train.device", "train.eval_batch_size", "train.compile",
    "train.fused_adamw", "train.linear_fast_path", "train.tf32", "train.data_on_device", "train.checkpoint_every",
    "train.checkpoint_interval_s", "train.dist_timeout_s",
    "dataset.data_root", "dataset.cache", "dataset.cache_dir", "dataset.num_workers"})


def result_config(config: dict, keys=OPERATIONAL) -> dict:
    """A run's config (`dataclasses.asdict(RunConfig)`, nested) without the `keys` (dotted) that do not change its result."""
    out = {}
    for k, v in config.items():
        if k in keys:
            continue
        inner = {key.partition(".")[2] for key in keys if key.startswith(f"{k}.")}
        out[k] = result_config(v, inner) if inner and isinstance(v, dict) else v
    return out


# A recipe's description (what it reproduces, where its settings were read), never what a run does: its
# `method_args` are in the run's `method_args` and its `checkpoint` in its `backbone`, which are compared themselves.
RECIPE_NOTES = frozenset({"recipe.title", "recipe.source", "recipe.checkpoint", "recipe.selection", "recipe.benchmarks",
                          "recipe.methods", "recipe.retrain_seeds", "recipe.method_args", "recipe.differences"})
# What a run's configuration hash leaves out: what never changes its result, and the seed, which its folder names
# and in which the runs of one cell of analyze.py's tables differ by design.
NOT_HASHED = OPERATIONAL | RECIPE_NOTES | {"seed"}


_ATOMS = {str, int, bool, type(None)}
_UNSET = object()  # a setting a configuration does not hold (at its default)


def _plain(v):
    """A value as configurations compare it: 1.0 and 1 are one value (a float field given as an int in a
    method's YAML), tuples are lists, a dataclass its fields."""
    if type(v) in _ATOMS:
        return v
    if isinstance(v, float):
        return int(v) if v.is_integer() else v
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if dataclasses.is_dataclass(v):
        return {f.name: _plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
    return v


@functools.lru_cache(maxsize=None)
def _defaults(cls) -> dict:
    """Each field of dataclass `cls` that has a default: that default, as compared (`_plain`)."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = _plain(f.default)
        elif f.default_factory is not dataclasses.MISSING and not dataclasses.is_dataclass(f.type):
            out[f.name] = _plain(f.default_factory())
    return out


def _key(config, cls, where: str) -> dict:
    items = config.items() if isinstance(config, dict) else vars(config).items()  # a dataclass: its fields
    plan, defaults, out = _plan(cls, where), _defaults(cls), {}
    for name, value in items:
        key, hint, nested = plan.get(name) or (f"{where}.{name}" if where else name, None, False)
        if key in NOT_HASHED:
            continue
        if nested and (isinstance(value, dict) or dataclasses.is_dataclass(value)):
            out[name] = _key(value, hint, key)
            continue
        value = _plain(value)
        default = defaults.get(name, _UNSET)
        if value != default or type(value) is not type(default):
            out[name] = value
    return out


def config_key(config) -> dict:
    """A run's configuration as relaunches and analyze.py compare it: the settings that change its result.

    `config` is a RunConfig or its dict (a record's `config`). Left out: NOT_HASHED, and every setting of
    the run's dataclasses at its default, so a setting added later (at the default that keeps what runs did
    before) leaves earlier runs' configuration as it was. Values compare by meaning (`_plain`): 1e-3 and
    0.001 are one float, 1.0 and 1 one number. A method's arguments are left out the same way where they
    equal the default in its config file (conf/method/<name>.yaml, which lists every argument:
    tests/test_configs.py), so an argument added to a method later (at the default that keeps what it
    did) leaves its earlier runs as they were, while a default changed in that file changes the key.
    """
    key = _key(config, RunConfig, "")
    args = key.get("method_args")
    if isinstance(args, dict):
        name = config.get("method") if isinstance(config, dict) else config.method
        defaults = _method_defaults(str(name))
        args = {k: v for k, v in args.items()
                if k not in defaults or v != defaults[k] or type(v) is not type(defaults[k])}
        if args:
            key["method_args"] = args
        else:
            key.pop("method_args")
    return key


@functools.lru_cache(maxsize=None)
def _method_defaults(name: str) -> dict:
    """A method's arguments as its config file sets them (compared as `_plain`); {} for a method without one."""
    import yaml

    from bench import CONF

    try:
        text = (CONF / "method" / f"{name}.yaml").read_text()
    except OSError:
        return {}
    method = (yaml.safe_load(text) or {}).get("method") or {}
    return {k: _plain(v) for k, v in method.items() if k != "name"}


def config_hash(config) -> str:
    """The hash of `config_key(config)` (16 hex digits): equal for one configuration, whatever its seed."""
    return key_hash(config_key(config))


def key_hash(key: dict) -> str:
    """The hash of a `config_key` (16 hex digits)."""
    import hashlib
    import json

    text = json.dumps(key, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def record_hash(rec: dict) -> str | None:
    """The configuration hash of a record: its `config_hash`, or, for records written before it, worked out from
    its `config`; None where it has neither (nothing says what it ran)."""
    if rec.get("config_hash"):
        return str(rec["config_hash"])
    return config_hash(rec["config"]) if isinstance(rec.get("config"), dict) else None


def config_changes(old, new) -> list[str]:
    """The settings in which two configurations (`config_key`s) differ, one `key: old -> new` each, sorted;
    a setting at its default shows as `default`."""
    import json

    def flat(d: dict, prefix: str = "") -> dict:
        out = {}
        for k, v in d.items():
            out |= flat(v, f"{prefix}{k}.") if isinstance(v, dict) and v else {f"{prefix}{k}": v}
        return out

    def show(v) -> str:
        return "default" if v is _UNSET else v if isinstance(v, str) else json.dumps(v)

    a, b = flat(old), flat(new)
    return [f"{k}: {show(a.get(k, _UNSET))} -> {show(b.get(k, _UNSET))}"
            for k in sorted(a.keys() | b.keys()) if a.get(k, _UNSET) != b.get(k, _UNSET)]


class ConfigError(ValueError):
    """A setting that is not valid, named with its key and what it may be: `train.batch_size=0: must be ...`.

    launch.py prints it as one line and exits with status 2, before any record is written.
    """


# --- ranges and choices: checked when a run's configuration is built (from_dict) -----------------
# key -> (test, what it must be). Types are checked first, from the dataclasses' annotations. A
# method module adds the rules of its own arguments (`RULES` beside its Config, keys `method.<arg>`).
POSITIVE, NON_NEGATIVE = (lambda v: v > 0, "must be > 0"), (lambda v: v >= 0, "must be >= 0")
UNIT = (lambda v: 0 <= v < 1, "must be in [0, 1)")
PROBABILITY = (lambda v: 0 <= v <= 1, "must be in [0, 1]")
NORMS = ("backbone", "imagenet", "inception", "none")  # dataset.norm (bench.models.normalization)
HEAD_INITS = ("timm", "vpt", "pytorch")  # train.head_init (bench.models.init_head)


def one_of(*choices):
    return (lambda v: v in choices, f"valid: {', '.join(choices)}")


RULES = {
    "train.epochs": POSITIVE, "train.batch_size": POSITIVE, "train.eval_batch_size": NON_NEGATIVE,
    "train.lr": POSITIVE, "train.weight_decay": NON_NEGATIVE, "train.warmup_epochs": NON_NEGATIVE,
    "train.warmup_lr": NON_NEGATIVE, "train.min_lr": NON_NEGATIVE, "train.cooldown_epochs": NON_NEGATIVE,
    "train.label_smoothing": UNIT, "train.mixup": NON_NEGATIVE, "train.cutmix": NON_NEGATIVE,
    "train.drop_path": UNIT, "train.ema_decay": UNIT, "train.checkpoint_every": NON_NEGATIVE,
    "train.checkpoint_interval_s": NON_NEGATIVE, "train.momentum": UNIT, "train.sched_lag": NON_NEGATIVE,
    "train.lr_base_batch": NON_NEGATIVE, "train.num_threads": NON_NEGATIVE, "train.dist_timeout_s": POSITIVE,
    "train.sched_unit": one_of(*SCHED_UNITS), "train.optimizer": one_of(*OPTIMIZERS),
    "train.wd_policy": one_of(*WD_POLICIES), "train.amp": one_of("auto", "bf16", "off"),
    "train.head_init": one_of(*HEAD_INITS), "train.data_on_device": one_of("auto", "on", "off"),
    "train.device": (lambda v: v in ("auto", "cpu", "mps") or v == "cuda" or v.startswith("cuda:") and v[5:].isdigit(),
                     "valid: auto, cpu, cuda, cuda:<index>, mps"),
    "dataset.num_classes": POSITIVE, "dataset.image_size": POSITIVE,
    "dataset.crop_pct": (lambda v: 0 < v <= 1, "must be in (0, 1]"),
    # resize, interpolation, train_interpolation, train_aug: the pixel pipelines' own table
    **{f"dataset.{key}": one_of(*choices) for key, choices in VALID.items()},
    "dataset.cache": one_of(*CACHE_MODES),
    "dataset.norm": one_of(*NORMS), "dataset.re_prob": PROBABILITY,
    "dataset.num_workers": NON_NEGATIVE, "dataset.cache_short_side": NON_NEGATIVE,
    "dataset.on_bad_image": one_of(*BAD_IMAGE_MODES), "dataset.shots": NON_NEGATIVE,
    "dataset.fewshot_seed": NON_NEGATIVE, "dataset.train_subset": NON_NEGATIVE, "dataset.subset_seed": NON_NEGATIVE,
    "deploy_iters": NON_NEGATIVE, "deploy_budget": NON_NEGATIVE,
    "deploy_score": one_of("check", "full"),
}


@functools.lru_cache(maxsize=None)
def _spec(hint) -> tuple:
    """(optional, base type, list/dict origin) of an annotation, worked out once per annotation."""
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint)
    if optional:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    origin = typing.get_origin(hint)
    return optional, hint, origin if origin in (list, dict) else None


def _typed(value, hint, key: str):
    """`value` converted to `hint` where that loses nothing, else ConfigError naming `key`."""
    optional, hint, origin = _spec(hint)
    if value is None and optional:
        return None
    kind = type(value)
    if kind is hint and hint is not float:  # the common case: already the right type
        return value
    shown = f"{key}={value!r}" if isinstance(value, str) else f"{key}={value}"
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is float:
        if not number:
            raise ConfigError(f"{shown}: must be a number")
        return float(value)
    if hint is int:
        if not number or not float(value).is_integer():
            raise ConfigError(f"{shown}: must be an integer")
        return int(value)
    if hint is bool and not isinstance(value, bool):
        raise ConfigError(f"{shown}: must be true or false")
    if hint is str and not isinstance(value, str):
        raise ConfigError(f"{shown}: must be a string")
    if origin is not None and not isinstance(value, origin):
        raise ConfigError(f"{shown}: must be a {'list' if origin is list else 'mapping'}")
    return value


@functools.lru_cache(maxsize=None)
def _plan(cls, where: str) -> dict:
    """Per field of dataclass `cls` at `where`: (its dotted key, its annotation, nested dataclass?).

    Worked out once per class and place: a sweep builds thousands of configs, and annotations,
    dataclass checks and key strings cost more than the values' checks themselves.
    """
    hints = typing.get_type_hints(cls)
    return {f.name: (f"{where}.{f.name}" if where else f.name, hints[f.name],
                     isinstance(hints[f.name], type) and dataclasses.is_dataclass(hints[f.name]))
            for f in dataclasses.fields(cls)}


def setting_type(key: str) -> type | None:
    """The type of a `train.*`, `dataset.*` or `backbone.*` setting (the dataclasses here); None for others
    (a method's arguments: their types are the method's, known only once torch loads)."""
    section, _, name = key.partition(".")
    cls = {"train": TrainConfig, "dataset": DatasetConfig, "backbone": BackboneConfig}.get(section)
    field = _plan(cls, section).get(name) if cls else None
    return _spec(field[1])[1] if field else None


@functools.lru_cache(maxsize=None)
def _required(cls) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls)
                 if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)


def from_dict(cls, data: dict, where: str = "", rules: dict | None = None):
    """Build dataclass `cls` from a plain dict, recursing into nested dataclasses.

    Every value is checked against its annotation (an int where an int is due, a number where a
    float is) and against `RULES` (ranges and choices), so a bad setting fails here, as one line
    naming the key, before anything runs. `rules` replaces `RULES` (a method's own added to them).

    Raises:
        ConfigError: on an unknown, missing, mistyped or out-of-range key, naming it and what is valid.
    """
    plan = _plan(cls, where)
    unknown = sorted(set(data) - set(plan))
    if unknown:
        raise ConfigError(f"{', '.join(f'{where}.{u}' if where else u for u in unknown)}: unknown key; "
                          f"valid: {', '.join(plan)}")
    rules = RULES if rules is None else rules
    kwargs = {}
    for name, value in data.items():
        key, hint, nested = plan[name]
        if nested:
            if not isinstance(value, dict):
                raise ConfigError(f"{key}: must be a mapping of {', '.join(f.name for f in dataclasses.fields(hint))}")
            value = from_dict(hint, value, key, rules)
        else:
            value = _typed(value, hint, key)
            rule = rules.get(key)
            if rule is not None and value is not None and not rule[0](value):
                raise ConfigError(f"{key}={value}: {rule[1]}")
        kwargs[name] = value
    missing = [plan[n][0] for n in _required(cls) if n not in kwargs]
    if missing:
        raise ConfigError(f"{', '.join(missing)}: missing key")
    return cls(**kwargs)


def to_dict(obj) -> dict:
    return dataclasses.asdict(obj)


def backbone_config(name: str) -> BackboneConfig:
    """conf/backbone/<name>.yaml as a BackboneConfig, without Hydra (benchmarks, pretraining, tests)."""
    import yaml

    from bench import CONF

    path = CONF / "backbone" / f"{name}.yaml"
    return from_dict(BackboneConfig, yaml.safe_load(path.read_text()), str(path))
