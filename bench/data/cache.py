"""Decoded pixels, cached once: in memory, or in a memory-mapped file shared by later runs.

VTAB-1k and FGVC runs spend most of their CPU time decoding and resizing JPEGs, the same
ones every epoch and in every run of a sweep. Here each split is decoded once (in
`num_workers` threads) into uint8 arrays:

- fixed size (3, S, S): deterministic evaluation pixels (and un-augmented training, VTAB-1k);
- variable size (H, W, 3) with the shorter side at most `cache_short_side`: the source of
  random-resized crops for augmented training (FGVC), stored as one flat array plus offsets.

On disk (`cache: disk`) a split lives in `<cache_dir>/<name>-<key>/`, where the key hashes the
format, the split, every listed path with its label, size and modification time, and the pixel
settings, so a changed file, label or setting never reuses stale pixels. The folder is written
under a temporary name and renamed into place: a reader sees all of it or nothing, and two runs
racing to build it both end up reading one complete copy.
"""
import hashlib
import json
import os
import shutil
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np

from bench.data.choices import CACHE_MODES
from bench.data.errors import README, DataError
from bench.data.listing import Listing
from bench.data.roots import ENV_CACHE_DIR, data_root

VERSION = 1  # bump when the stored layout or the pixel pipeline changes


def cache_dir(cfg) -> Path:
    d = cfg.cache_dir or os.environ.get(ENV_CACHE_DIR)
    return Path(d).expanduser().absolute() if d else data_root(cfg) / ".cache"


def manifest_key(listing: Listing, settings: dict) -> str:
    """Hash of the listed files (path, label, size, mtime) and the settings that shape the pixels."""
    h = hashlib.sha1(json.dumps({"version": VERSION, **settings}, sort_keys=True).encode())
    for i, (p, y) in enumerate(zip(listing.paths, listing.labels.tolist())):
        if listing.stats is not None:  # stat-ed once when the split was listed (bench.data.listing.stat_files)
            size, mtime = listing.stats[i]
        else:
            try:
                st = os.stat(p)
            except OSError:
                h.update(f"{p}\0{y}\0missing\n".encode())
                continue
            size, mtime = st.st_size, st.st_mtime_ns
        h.update(f"{p}\0{y}\0{size}\0{mtime}\n".encode())
    return h.hexdigest()[:16]


def _decode_all(cfg, listing: Listing, decode: Callable[[int], np.ndarray], store: Callable[[int, np.ndarray], None],
                desc: str) -> np.ndarray:
    """Decode every image in threads, store it; returns the mask of readable images.

    Raises:
        DataError: an unreadable image when `on_bad_image` is `error` (the default).
    """
    n = len(listing)
    ok = np.ones(n, dtype=bool)
    bad: list[tuple[int, str]] = []
    t0 = time.perf_counter()
    print(f"[data] decoding {desc}: {n} images ({max(1, cfg.num_workers)} threads)", flush=True)

    def one(i: int):
        try:
            return decode(i), None
        except Exception as e:  # PIL raises many types for broken files
            return None, f"{type(e).__name__}: {e}"

    with ThreadPoolExecutor(max(1, cfg.num_workers)) as pool:
        for i, (arr, err) in enumerate(pool.map(one, range(n))):
            if err is None:
                store(i, arr)
            else:
                ok[i] = False
                bad.append((i, err))
    if bad and cfg.on_bad_image != "skip":
        i, err = bad[0]
        raise DataError(f"dataset {cfg.name!r}: {listing.origin(i)}: image {listing.paths[i]} is unreadable ({err}); "
                        f"{len(bad)} unreadable images in this split; see {README}")
    for i, err in bad[:10]:
        warnings.warn(f"dataset {cfg.name!r}: skipped unreadable image {listing.paths[i]} ({listing.origin(i)}): {err}",
                      stacklevel=2)
    print(f"[data] decoded {desc} in {time.perf_counter() - t0:.1f}s"
          + (f"; {len(bad)} unreadable images skipped" if bad else ""), flush=True)
    return ok


def _publish(tmp: Path, final: Path) -> None:
    """Rename a finished temporary folder into place; if another process won the race, keep theirs."""
    try:
        os.rename(tmp, final)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (final / "meta.json").is_file():
            raise


def fixed(cfg, listing: Listing, decode: Callable[[int], np.ndarray], shape: tuple[int, ...], settings: dict,
          desc: str) -> tuple[np.ndarray, np.ndarray]:
    """(N, *shape) uint8 pixels and the mask of readable images, from memory or the disk cache."""
    n = len(listing)
    if cfg.cache == "memory":
        pixels = np.zeros((n, *shape), dtype=np.uint8)
        ok = _decode_all(cfg, listing, decode, pixels.__setitem__, desc)
        return pixels, ok
    final = cache_dir(cfg) / f"{cfg.name.replace('/', '_')}-{manifest_key(listing, settings)}"
    if not (final / "meta.json").is_file():
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
        try:
            pixels = np.lib.format.open_memmap(tmp / "pixels.npy", mode="w+", dtype=np.uint8, shape=(n, *shape))
            ok = _decode_all(cfg, listing, decode, pixels.__setitem__, f"{desc} -> {final}")
            pixels.flush()
            del pixels
            np.save(tmp / "ok.npy", ok)
            (tmp / "meta.json").write_text(json.dumps({"n": n, "shape": list(shape), **settings}) + "\n")
            _publish(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return (np.load(final / "pixels.npy", mmap_mode="r", allow_pickle=False),
            np.load(final / "ok.npy", allow_pickle=False))


def variable(cfg, listing: Listing, decode: Callable[[int], np.ndarray], settings: dict,
             desc: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(flat uint8 pixels, offsets, shapes (N, 3) as H, W, C, readable mask) for variable-size images."""
    n = len(listing)
    offsets = np.zeros(n, dtype=np.int64)
    shapes = np.zeros((n, 3), dtype=np.int64)
    if cfg.cache == "memory":
        chunks: list[np.ndarray] = []
        pos = [0]

        def keep(i, arr):
            offsets[i], shapes[i] = pos[0], arr.shape
            chunks.append(arr.ravel())
            pos[0] += arr.size

        ok = _decode_all(cfg, listing, decode, keep, desc)
        flat = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.uint8)
        return flat, offsets, shapes, ok
    final = cache_dir(cfg) / f"{cfg.name.replace('/', '_')}-{manifest_key(listing, settings)}"
    if not (final / "meta.json").is_file():
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
        try:
            with open(tmp / "pixels.u8", "wb") as f:
                def append(i, arr):  # called in listing order (pool.map keeps it)
                    offsets[i], shapes[i] = f.tell(), arr.shape
                    f.write(np.ascontiguousarray(arr).tobytes())

                ok = _decode_all(cfg, listing, decode, append, f"{desc} -> {final}")
                f.flush()
                os.fsync(f.fileno())
            np.save(tmp / "offsets.npy", offsets)
            np.save(tmp / "shapes.npy", shapes)
            np.save(tmp / "ok.npy", ok)
            (tmp / "meta.json").write_text(json.dumps({"n": n, **settings}) + "\n")
            _publish(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    size = (final / "pixels.u8").stat().st_size
    flat = np.memmap(final / "pixels.u8", dtype=np.uint8, mode="r") if size else np.zeros(0, dtype=np.uint8)
    return flat, *(np.load(final / f"{name}.npy", allow_pickle=False) for name in ("offsets", "shapes", "ok"))
