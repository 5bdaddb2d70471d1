"""The data version of a run: which images, with which labels, and which bytes, never where they lie.

A split's fingerprint (bench/data/fingerprint.py) names its images and labels; two copies of a
task with the same file names but re-encoded images share it. So each split also gets a
`content` hash over its ordered (identifier, label, hash of the file's bytes), and a run's
`version` hashes the fingerprint and content of every split it read. Paths enter only relative to
the dataset's folder, so moving the data to another `data_root` keeps the version; re-encoding
one test image changes it.

Hashing every file's bytes for every run would cost a read of the whole split. The content hash
is therefore computed once per copy and cached under the cache dir (bench/data/cache.py), keyed
like the pixel cache by what `os.stat` already tells (absolute path, size, modification time,
label): a later run on the same files pays one stat per file, as its pixel cache does anyway,
and a moved, copied or edited file is hashed again.
"""
import hashlib
import json
import os
from pathlib import Path

from bench.data.fingerprint import PREFIX, relative_ids

CACHE_SUBDIR = "content"
CHUNK = 1 << 20


def file_digest(path: str) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _stat_key(name: str, files: list[str], labels, stats: list[tuple[int, int]] | None = None) -> str:
    """`stats`: each file's (size, mtime_ns) when the listing already stat-ed them (bench.data.listing.stat_files)."""
    h = hashlib.sha1(name.encode())
    for i, (p, y) in enumerate(zip(files, labels)):
        if stats is None:
            st = os.stat(p)
            size, mtime = st.st_size, st.st_mtime_ns
        else:
            size, mtime = stats[i]
        h.update(f"{p}\0{y}\0{size}\0{mtime}\n".encode())  # listings hold absolute paths
    return h.hexdigest()[:20]


def content_hash(ids: list[str], labels, files: list[str]) -> str:
    """`sha256:<32 hex>` over the ordered (identifier, label, blake2b of the file's bytes)."""
    h = hashlib.sha256()
    for i, y, p in zip(ids, labels, files, strict=True):
        h.update(f"{i}\0{int(y)}\0{file_digest(p)}\n".encode())
    return PREFIX + h.hexdigest()[:32]


def split_content(cfg, lst, root: Path, cache: Path | None) -> str | None:
    """The content hash of a validated listing (bench.data.splits.list_splits), cached under `cache`.

    Array-backed splits (CIFAR's python pickles, listed as `file[i]`) hash the array files instead
    of per-image files: the identifiers already say which row. None when a file cannot be read.
    """
    arrays = bool(lst.paths) and lst.arrays is not None and bool(lst.sources)
    files = [str(s) for s in lst.sources] if arrays else list(lst.paths)
    labels = lst.labels.tolist()
    try:
        key_labels = [0] * len(files) if arrays else labels
        key = _stat_key(f"{cfg.name}\0{'|'.join(lst.paths) if arrays else ''}", files, key_labels,
                        None if arrays else lst.stats)
    except OSError:
        return None
    path = cache / CACHE_SUBDIR / f"{cfg.name.replace('/', '_')}-{key}.json" if cache else None
    if path is not None:
        try:
            return json.loads(path.read_text())["content"]
        except (OSError, ValueError, KeyError):
            pass
    ids = relative_ids(lst.paths, root)  # only on a miss: relpath costs more than the stat
    try:
        if arrays:
            h = hashlib.sha256(content_hash([Path(f).name for f in files], [0] * len(files), files).encode())
            for i, y in zip(ids, labels):
                h.update(f"{i}\0{int(y)}\n".encode())
            value = PREFIX + h.hexdigest()[:32]
        else:
            value = content_hash(ids, labels, files)
    except OSError:
        return None
    if path is not None:
        try:  # a read-only cache dir only costs the hashing again next time
            from bench.records import write_json_atomic

            write_json_atomic(path, {"content": value, "images": len(ids)})
        except OSError:
            pass
    return value


def version(splits: dict[str, dict]) -> str | None:
    """A run's data version: `sha256:<16 hex>` over every split's name, fingerprint and content.

    Args:
        splits: split name -> its description in the record (`fingerprint`, and `content` for
            files on disk; generated data has no content beyond its fingerprint).
    Returns None when a split has no fingerprint (records written before fingerprints).
    """
    h = hashlib.sha256()
    for name in sorted(splits):
        s = splits[name] or {}
        if not s.get("fingerprint"):
            return None
        h.update(f"{name}\0{s['fingerprint']}\0{s.get('content') or ''}\n".encode())
    return PREFIX + h.hexdigest()[:16]


__all__ = ["content_hash", "file_digest", "split_content", "version"]
