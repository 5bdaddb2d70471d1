"""CIFAR-100 (full 50k/10k) in torchvision's `cifar-100-python` format (anchors.md 1.3-1.4).

    <root>/cifar-100-python/train, test     pickles with `data` (N x 3072 uint8, channel-major) and `fine_labels`

SSF loads it as timm's `torch/cifar100` and evaluates on the 10k test set. The images are
already decoded (32x32): a split's listing names each row `<file>[i]` and carries the file's
images (`Listing.arrays`), so each pickle is read once per run.

A pickle can name any function for the reader to call, and a data root may be shared, so the files
are read by `SafeUnpickler`: it builds the containers, bytes, strings, numbers and numpy arrays the
real files hold (as Python 2 or 3 wrote them) and refuses any other global with one line naming the
file, so a planted file runs nothing.
"""
import pickle

import numpy as np

from bench.data.errors import README, DataError
from bench.data.listing import Listing
from bench.data.roots import dataset_root, missing

FILES = {"trainval": "train", "test": "test"}
EXPECTED = "cifar-100-python/train and cifar-100-python/test (torchvision's pickles)"
# the globals a cifar-100-python pickle names: numpy's array and scalar reconstruction (numpy 1 and 2 module
# names), and what Python 3 uses for bytes and containers at protocol 2
ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
           *((f"numpy.{core}.multiarray", name) for core in ("core", "_core") for name in ("_reconstruct", "scalar")),
           *((f"numpy.{core}.numeric", "_frombuffer") for core in ("core", "_core")),
           *(("builtins", name) for name in ("bytearray", "bytes", "set", "frozenset", "complex", "list", "dict",
                                             "tuple", "int", "float", "str", "bool"))}


class Refused(pickle.UnpicklingError):
    """The pickle names a global that a cifar-100-python file does not."""


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that resolves only `ALLOWED` globals (pickle's documented way to restrict globals)."""

    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED:
            raise Refused(f"{module}.{name}")
        return super().find_class(module, name)


def list_split(cfg, split: str) -> Listing:
    """Entries `<file>[i]` with the file's images (N, 32, 32, 3) uint8 as `arrays`, labels (N,) int64."""
    path = dataset_root(cfg) / "cifar-100-python" / FILES[split]
    if not path.is_file():
        raise missing(cfg, path, EXPECTED)
    try:
        with open(path, "rb") as f:
            d = SafeUnpickler(f, encoding="latin1").load()
        d = {k.decode() if isinstance(k, bytes) else k: v for k, v in d.items()}
        data = np.asarray(d["data"], dtype=np.uint8)
        labels = np.asarray(d["fine_labels"], dtype=np.int64)
    except Refused as e:
        raise DataError(f"dataset {cfg.name!r}: {path}: refused: the pickle calls {e}, which a cifar-100-python file "
                        f"never does (read without running it; replace the file with torchvision's); see {README}") \
            from None
    except (pickle.UnpicklingError, EOFError, KeyError, AttributeError, ValueError, TypeError) as e:
        raise DataError(f"dataset {cfg.name!r}: {path}: not a cifar-100-python pickle with 'data' and 'fine_labels' "
                        f"({type(e).__name__}: {e}); see {README}") from None
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise DataError(f"dataset {cfg.name!r}: {path}: 'data' has shape {data.shape} for {len(labels)} labels, "
                        f"expected (N, 3072); see {README}")
    return Listing([f"{path}[{i}]" for i in range(len(labels))], labels, None, [path],
                   arrays=data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
