"""The run record: one self-describing JSON file per run, its path, atomic writes, and finding them.

Torch-free and pandas-free on purpose: every training job writes through this, and analyze.py reads
thousands of records through it (bench.analysis.load builds the DataFrame).

Layout (the path is the run's identity, never a timestamp, so a relaunch finds it again):
    <results_dir>/runs/<backbone>/<dataset>/<method>[-<variant>]/<protocol>-seed<k>/record.json
"""
import contextlib
import json
import os
import tempfile
from pathlib import Path

RECORD = "record.json"
CHECKPOINT = "last.pt"  # an unfinished run's checkpoint: bench.train.loop writes it, a relaunch resumes from it
PREDICTIONS = "predictions.npz"  # a completed run's per-image test predictions (bench/predictions.py)
WEIGHTS = "trained.safetensors"  # the run's trained (tunable) parameters: bench.run writes, export reads
SCHEMA = 1
STATUSES = ("completed", "failed", "unsupported")


def method_label(method: str, variant: str = "") -> str:
    return f"{method}-{variant}" if variant else method


def run_dir(results_dir: str | Path, backbone: str, dataset: str, method: str, variant: str, protocol: str,
            seed: int) -> Path:
    return Path(results_dir) / "runs" / backbone / dataset / method_label(method, variant) / f"{protocol}-seed{seed}"


def umask() -> int:
    """The process's umask, read without changing it (Linux /proc; elsewhere set and restored)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_file(path: Path):
    """Yield a temporary path beside `path`; on success fsync it and rename it onto `path`.

    Readers see the old file or the new one, never half of one; a failure leaves no temporary.
    The file gets the permissions `open()` would have given it (0666 less the umask), not the
    temporary's 0600: a lab's shared results folder stays readable to the lab.
    Every file the project persists (records, checkpoints, weights, exports, tables) goes through here.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, obj: dict) -> None:
    with atomic_file(path) as tmp, open(tmp, "w") as f:
        json.dump(obj, f, indent=1, default=str)
        f.write("\n")


def find_records(root: str | Path) -> list[str]:
    """Every record.json under `root`, sorted, as strings (os.walk: a third of Path.rglob's time)."""
    return sorted(os.path.join(d, RECORD) for d, _, files in os.walk(root) if RECORD in files)


IDENTITY = ("status", "method", "dataset", "backbone", "seed")  # a record without these is not one
