"""One index per results folder of what the statistics read from each run's predictions.npz.

The statistics need only which test images each run got right (bench/analysis/stats.py), but a
predictions.npz holds the predicted and true class of every image, deflated: on the 10,000-record
benchmark (9,515 files, 200 million images) reading them was most of analyze.py's first run.
The index keeps, for every (file, target) read, the per-image correctness packed as bits
(`np.packbits`: one bit per image, 25 MB for those 200 million), the image count, the target's
listing fingerprint, or the error the file gave (a missing target, a malformed file). An entry is
keyed by the file's path relative to the results folder, its size and its modification time
(ns): a changed or replaced file is read again; entries of files that are gone are dropped when
the index is next written.

RESULTS_DIR/.predictions_index.npz: plain arrays (`np.load(..., allow_pickle=False)`: nothing in
it can execute), written atomically (temporary file, then rename), uncompressed (the bits do not
compress, and reading them back is then a copy). An index that does not load or does not hold
together (version, shapes, offsets) is ignored and rebuilt from the files. A folder that cannot be
written leaves analyze.py working without one.
"""
import io
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.predictions import SEP
from bench.records import atomic_file

INDEX = ".predictions_index.npz"  # in each results folder
VERSION = 1
STORED_ERRORS = {"KeyError": KeyError, "ValueError": ValueError}  # from the file's content: kept; OSError: not


def read_correct(path: str | Path, target: str = "") -> tuple[np.ndarray, str]:
    """(`pred == target` as a bool array, the target's fingerprint or "" for the test split) from one file.

    The file is read in one call and each array inflated in one call (`ZipFile.read`), which
    releases the GIL: threads read several files at once. The test split's `fingerprint` entry
    is not read: the record's `test_fingerprint` says the same, and `stats.cell_predictions` checks
    the accuracy. Raises OSError, ValueError (a malformed file, not a zip included) or KeyError (no
    such target).
    """
    suffix = f"{SEP}{target}" if target else ""  # the file format: bench/predictions.py
    data = Path(path).read_bytes()
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            names = set(zf.namelist())
            wanted = [f"pred{suffix}", f"target{suffix}"] + ([f"fingerprint{suffix}"] if target else [])
            missing = [k for k in wanted if f"{k}.npy" not in names]
            if missing:
                raise KeyError(missing[0])
            pred, true, *fp = [np.lib.format.read_array(io.BytesIO(zf.read(f"{k}.npy")), allow_pickle=False)
                               for k in wanted]
    except (zipfile.BadZipFile, EOFError) as e:  # not a zip, or a truncated one
        raise ValueError(f"{path}: not a readable npz ({e})") from e
    if pred.shape != true.shape or pred.ndim != 1:
        raise ValueError(f"pred {pred.shape} and target {true.shape} are not one vector each")
    return pred == true, str(fp[0]) if fp else ""


@dataclass
class Entry:
    n: int  # images
    fingerprint: str  # a target's listing ("" for the test split: the record names it)
    error: str  # "" or "KeyError: ..." / "ValueError: ..."
    bits: np.ndarray  # uint8, np.packbits of the correctness ((n + 7) // 8 bytes)

    def check(self) -> None:
        """Raises the error the file gave, if it gave one."""
        if self.error:
            kind, _, message = self.error.partition(": ")
            raise STORED_ERRORS[kind](message)

    def value(self) -> tuple[np.ndarray, str]:
        """(correctness, fingerprint), or raises the error the file gave."""
        self.check()
        return np.unpackbits(self.bits, count=self.n).view(bool), self.fingerprint


def stamp(path: str | Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


class PredictionIndex:
    """The index of one results folder: `get` an entry whose file is unchanged, `put` a fresh read, `save`."""

    def __init__(self, root: str | Path):
        self.root = os.path.abspath(root)
        self.path = Path(self.root) / INDEX
        # path relative to root -> (the file's (size, mtime_ns) when it was read, target -> entry)
        self.files: dict[str, tuple[tuple[int, int], dict[str, Entry]]] = {}
        self.changed = False
        self.loaded = self._load()

    def _load(self) -> bool:
        """Read the index; False (and an empty index, rewritten on `save`) where it is absent or damaged."""
        try:
            with np.load(self.path, allow_pickle=False) as z:
                if int(z["version"]) != VERSION:
                    raise ValueError("version")
                files, stamps, bits = z["files"], z["stamps"], z["bits"]
                f, targets, n, fps, errors, offsets = (z[k] for k in ("entry_file", "entry_target", "entry_n",
                                                                      "entry_fingerprint", "entry_error", "offsets"))
            e = len(f)
            if (stamps.shape != (len(files), 2) or not all(len(a) == e for a in (targets, n, fps, errors))
                    or offsets.shape != (e + 1,) or offsets[0] != 0 or offsets[-1] != len(bits)
                    or bits.dtype != np.uint8
                    or (e and (f.min() < 0 or f.max() >= len(files) or n.min() < 0))
                    or not np.array_equal(np.diff(offsets), (n + 7) // 8)):
                raise ValueError("inconsistent arrays")
            if any(err and err.partition(": ")[0] not in STORED_ERRORS for err in errors.tolist()):
                raise ValueError("unknown error kind")
            files, stamps = files.tolist(), [tuple(s) for s in stamps.tolist()]
            for rel, st in zip(files, stamps):
                self.files[rel] = (st, {})
            for i, (fi, t, k, fp, err) in enumerate(zip(f.tolist(), targets.tolist(), n.tolist(), fps.tolist(),
                                                        errors.tolist())):
                self.files[files[fi]][1][t] = Entry(k, fp, err, bits[offsets[i]:offsets[i + 1]])
            return True
        except FileNotFoundError:
            return False
        except Exception:  # damaged in any way (not a zip, missing arrays, pickled objects, ...): rebuilt
            self.files.clear()
            self.changed = True
            return False

    def key(self, path: str | Path) -> str | None:
        """`path` relative to this folder (None: not inside it)."""
        path = os.path.abspath(path)
        if not path.startswith(self.root) or path[len(self.root):len(self.root) + 1] != os.sep:
            return None
        return path[len(self.root) + 1:].replace(os.sep, "/")

    def get(self, path: str | Path, target: str, file_stamp: tuple[int, int], rel: str | None = None) -> Entry | None:
        """The entry of `path`'s `target` if it was read from the file as it is now (`file_stamp`);
        `rel`: `key(path)` where the caller has it."""
        st, entries = self.files.get(rel or self.key(path), (None, {}))
        return entries.get(target) if st == file_stamp else None

    def put(self, path: str | Path, target: str, file_stamp: tuple[int, int], correct: np.ndarray | None,
            fingerprint: str = "", error: BaseException | None = None, relative: bool = False) -> None:
        """Record one read (`file_stamp` taken before it); an error is kept only if it came from the content.
        `relative`: `path` is already `key(path)`."""
        if error is not None and type(error).__name__ not in STORED_ERRORS:
            return
        rel = str(path) if relative else self.key(path)
        if rel is None:
            return
        st, entries = self.files.get(rel, (None, {}))
        if st != file_stamp:  # first read, or the file changed: its other targets' entries are stale
            entries = {}
            self.files[rel] = (file_stamp, entries)
        if error is not None:
            message = str(error.args[0]) if error.args else ""
            entries[target] = Entry(0, "", f"{type(error).__name__}: {message}", np.zeros(0, np.uint8))
        else:
            entries[target] = Entry(len(correct), fingerprint, "", np.packbits(correct))
        self.changed = True

    def save(self) -> None:
        """Write the index if anything changed (dropping files that are gone); raises OSError if it cannot."""
        if not self.changed:
            return
        keep = {rel: v for rel, v in self.files.items() if v[1] and os.path.exists(os.path.join(self.root, rel))}
        files = list(keep)
        where = {rel: i for i, rel in enumerate(files)}
        stamps = {rel: st for rel, (st, _) in keep.items()}
        entries = [((rel, t), e) for rel, (_, es) in keep.items() for t, e in es.items()]
        sizes = np.array([len(e.bits) for _, e in entries], dtype=np.int64)
        arrays = {
            "version": np.array(VERSION), "files": np.array(files, dtype=np.str_),
            "stamps": np.array([stamps[r] for r in files], dtype=np.int64).reshape(len(files), 2),
            "entry_file": np.array([where[rel] for (rel, _), _ in entries], dtype=np.int64),
            "entry_target": np.array([t for (_, t), _ in entries], dtype=np.str_),
            "entry_n": np.array([e.n for _, e in entries], dtype=np.int64),
            "entry_fingerprint": np.array([e.fingerprint for _, e in entries], dtype=np.str_),
            "entry_error": np.array([e.error for _, e in entries], dtype=np.str_),
            "offsets": np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
            "bits": np.concatenate([e.bits for _, e in entries]) if entries else np.zeros(0, np.uint8),
        }
        with atomic_file(self.path) as tmp, open(tmp, "wb") as fh:  # a file object: savez would append ".npz"
            np.savez(fh, **arrays)
        self.files, self.changed = keep, False
