"""Stanford Dogs in its official layout, as the SSF code reads it (anchors.md 1.4 and 2).

    <root>/train_list.mat, test_list.mat      `file_list` and 1-based `labels`
    <root>/Images/<relative path>

trainval = the official training list.
"""
import numpy as np

from bench.data.errors import README, DataError
from bench.data.listing import Listing
from bench.data.roots import dataset_root, missing

DOGS_FILES = {"trainval": "train_list.mat", "test": "test_list.mat"}
DOGS_EXPECTED = "train_list.mat, test_list.mat and Images/"


def list_split(cfg, split: str) -> Listing:
    from scipy.io import loadmat

    root = dataset_root(cfg)
    path = root / DOGS_FILES[split]
    if not path.is_file():
        raise missing(cfg, path, DOGS_EXPECTED)
    try:
        mat = loadmat(str(path))
        files = [str(np.asarray(f).ravel()[0]) for f in np.asarray(mat["file_list"]).ravel()]
        labels = np.asarray(mat["labels"]).ravel().astype(np.int64) - 1  # 1-based in the .mat lists
    except (KeyError, ValueError, IndexError, OSError) as e:
        raise DataError(f"dataset {cfg.name!r}: {path}: not a Stanford Dogs list with 'file_list' and 'labels' "
                        f"({type(e).__name__}: {e}); see {README}") from None
    if len(files) != len(labels):
        raise DataError(f"dataset {cfg.name!r}: {path}: {len(files)} files but {len(labels)} labels; see {README}")
    where = [f"{path} entry {i + 1}" for i in range(len(files))]
    return Listing([str(root / "Images" / f) for f in files], labels, where, [path])
