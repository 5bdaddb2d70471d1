"""Where data lives: the data root, each dataset's folder, the cache folder's variable, and the
error for a dataset (or one of its files) that is not where it should be."""
import os
from pathlib import Path

from bench.data.errors import README, DataError

ENV_DATA_ROOT = "BENCH_DATA_ROOT"
ENV_CACHE_DIR = "BENCH_CACHE_DIR"


def data_root(cfg) -> Path:
    """`cfg.data_root`, else $BENCH_DATA_ROOT, else ./data (relative paths from the current folder)."""
    root = cfg.data_root or os.environ.get(ENV_DATA_ROOT) or "data"
    return Path(root).expanduser().absolute()


def dataset_root(cfg) -> Path:
    """The dataset's own folder: `cfg.root` under the data root (or `cfg.root` itself when absolute)."""
    root = Path(cfg.root).expanduser()
    return root if root.is_absolute() else data_root(cfg) / root


def missing(cfg, what: Path, expected: str) -> DataError:
    """The error for a dataset (or one of its files) that is not where it should be."""
    return DataError(
        f"dataset {cfg.name!r}: {what} not found. Expected under {dataset_root(cfg)}: {expected} "
        f"(format {cfg.format!r}). The data root is {data_root(cfg)} (set dataset.data_root or "
        f"${ENV_DATA_ROOT}); see {README}.")


def require(cfg, path: Path, expected: str) -> Path:
    if not path.exists():
        raise missing(cfg, path, expected)
    return path


__all__ = ["ENV_CACHE_DIR", "ENV_DATA_ROOT", "data_root", "dataset_root", "missing", "require"]
