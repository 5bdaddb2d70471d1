"""Early stopping of hopeless search trials: an Optuna pruner over a study kept in a real database.

With `search.pruner=median|asha|hyperband` (bench/search.py), the sweeper writes `prune.json` into
each trial's run folder before launching it: the study's storage (`search.storage`: a SQLite file
`<results_dir>/search.db` by default, any SQLAlchemy URL such as `postgresql://...`, or
`journal:<path>` for Optuna's journal file on a shared NFS folder), the study's name (one study per
(method, task, backbone, seed) cell: its trials are compared with each other), the pruner and the
epochs. The run (bench.run.runner) then reports its val top-1 after every epoch to its Optuna trial;
when the pruner says the trial is hopeless, training stops after that epoch, the run is scored as
usual (its val and test top-1 are those of the epoch it stopped at) and its record says
`pruned: true` and `pruned_at_epoch`. A pruned run is a finished run: a relaunch skips it, the
selection never picks it (it did not train to the end), and its seconds count in the tuning cost.

The study lives in the database, not in a process: a relaunch (after a crash, a kill or on another
node) opens the same study and the same trial (its number is kept in `prune.json`), so earlier
trials' reports still count. Pruning applies to single-process runs (several processes would have
to agree on the decision).

Torch-free; Optuna is imported when a study is opened.
"""
import functools
import hashlib
import json
from pathlib import Path

from bench.records import write_json_atomic

PRUNERS = ("none", "median", "asha", "hyperband")
FILE = "prune.json"


@functools.lru_cache(maxsize=8)
def storage(url: str):
    """Optuna's storage for `url`: `journal:<path>` a journal file, anything else a SQLAlchemy URL (one per
    process: setting up a database connection checks its schema, a second or so)."""
    import optuna

    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(url.split(":", 1)[1]))
    return optuna.storages.RDBStorage(url)


def make_pruner(name: str, epochs: int):
    """The pruner `name`: median (MedianPruner: below the median of earlier trials at the same epoch, after two
    trials), asha (SuccessiveHalvingPruner: asynchronous successive halving from epoch 1) or hyperband
    (HyperbandPruner over 1..epochs)."""
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    if name == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 1), reduction_factor=3)
    raise ValueError(f"search.pruner={name}: unknown pruner; valid: {', '.join(PRUNERS)}")


def study_name(cell: list[str]) -> str:
    """A readable, stable name for the study of one search cell (its job's overrides without the drawn values)."""
    keep = sorted(o for o in cell if o.partition("=")[0].lstrip("+") in ("method", "dataset", "backbone", "seed"))
    digest = hashlib.sha1(json.dumps(sorted(cell)).encode()).hexdigest()[:12]
    return "_".join([*(o.partition("=")[2].replace("/", "-") for o in keep), digest])


def prepare(run_dir: Path, url: str, study: str, pruner: str, epochs: int, params: dict) -> None:
    """Create the study if it is not there and write the run's `prune.json` (keeping its trial number)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.create_study(study_name=study, storage=storage(url), direction="maximize", load_if_exists=True)
    path = Path(run_dir) / FILE
    old = json.loads(path.read_text()) if path.is_file() else {}
    same = old.get("storage") == url and old.get("study") == study
    write_json_atomic(path, {"storage": url, "study": study, "pruner": pruner, "epochs": epochs, "params": params,
                             **({"trial": old["trial"]} if same and "trial" in old else {})})


class Pruning:
    """A run's link to its trial: `report` each epoch's val top-1, `finish` once scored."""

    def __init__(self, run_dir: Path, spec: dict):
        import optuna
        from optuna.trial import TrialState

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.path = Path(run_dir) / FILE
        self.study = optuna.load_study(study_name=spec["study"], storage=storage(spec["storage"]),
                                       pruner=make_pruner(spec["pruner"], spec["epochs"]))
        self.trial = None
        if "trial" in spec:  # a relaunch: the same trial, while it is still open
            frozen = next((t for t in self.study.get_trials(deepcopy=False) if t.number == spec["trial"]), None)
            if frozen is not None and frozen.state == TrialState.RUNNING:
                self.trial = optuna.trial.Trial(self.study, frozen._trial_id)
        if self.trial is None:
            self.trial = self.study.ask()
            for k, v in spec.get("params", {}).items():
                self.trial.set_user_attr(k, v)
            self.trial.set_user_attr("run_dir", str(Path(run_dir)))
            write_json_atomic(self.path, {**spec, "trial": self.trial.number})

    @classmethod
    def open(cls, run_dir: Path) -> "Pruning | None":
        """The run's pruning, or None when its folder holds no `prune.json` (not a pruned search's trial)."""
        path = Path(run_dir) / FILE
        if not path.is_file():
            return None
        return cls(run_dir, json.loads(path.read_text()))

    def report(self, epoch: int, value: float) -> bool:
        """Report epoch `epoch`'s val top-1; True when the trial is to stop now."""
        self.trial.report(value, epoch)
        return self.trial.should_prune()

    def finish(self, value: float, pruned: bool) -> None:
        from optuna.trial import TrialState

        self.study.tell(self.trial, state=TrialState.PRUNED) if pruned else self.study.tell(self.trial, value)
