"""`python -m bench.data prepare SOURCE [DATASET ...]`: write the on-disk layouts the loaders read.

Sources (docs/datasets.md, section 'Preparing the datasets'):
    tfds   VTAB-1k from a TFDS data dir (`pip install -e '.[tfds]'`), with task_adaptation's slices
           and label functions (bench/data/vtab_tfds.py); pixels written as PNG, losslessly.
    hf     VTAB-1k or FGVC from Hugging Face datasets: parquet files (image + label columns, named
           splits) or image folders (<split>/<class>/<image>, labels = sorted class names) of a local
           snapshot (`--from`) or of the Hub; one YAML file maps each task to its
           repository, revision, splits and columns (conf/prepare/*.yaml). The images' bytes are
           written as they are (no re-encoding).
    fgvc   FGVC from the official archives' extracted folders plus VPT's JSON splits: the JSON files
           rewritten with one label map over all three splits, the images copied as they are.

Every task is written into a temporary folder beside its destination, read back through the
loaders' own listing (bench/data/splits.py: counts, labels, every image present), given its
`manifest.json` (source, converter version, counts, pixel format, fingerprint and content hash
per split) and only then renamed into place. So a task folder that exists is complete; an
interrupted one leaves only a temporary folder, removed on the next run; a task already
prepared whose manifest agrees with what the loaders read is skipped.

Nothing it did not write is deleted: a task folder without this tool's manifest (a hand-placed
copy, NOAH's JPEGs) is refused unless `--replace`, which moves it aside to `<task>~replaced-<time>`;
a copy of its own that it writes again is deleted only when every file of it equals the new
copy's, else it is kept aside the same way. While a task is prepared its lock file
`.<task>.prepare.lock` (fcntl.flock) is held, so a second prepare of the same task waits, and
temporary folders are removed only by the lock's holder.
"""
import argparse
import contextlib
import dataclasses
import errno
import fcntl
import filecmp
import hashlib
import io
import json
import os
import secrets
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import yaml
from PIL import Image
from tqdm.auto import tqdm

from bench import CONF
from bench.data import jpeg, vtab_tfds
from bench.data.formats import vtab_txt
from bench.data.errors import DataError
from bench.data.roots import data_root
from bench.data.fingerprint import fingerprint, relative_ids
from bench.data.splits import MANIFEST

CONVERTER = {"name": "bench.data.prepare", "version": 1}  # bump when what is written for the same source changes
SOURCES = ("tfds", "hf", "fgvc")
TMP_MARK = ".prepare-"  # .<task>.prepare-<pid>-<token>: a temporary folder
LOCK_MARK = ".prepare.lock"  # .<task>.prepare.lock: held while the task is prepared
ASIDE_MARK = "~replaced-"  # <task>~replaced-<time>: a copy moved aside, never deleted
HF_CONF = CONF / "prepare"
VTAB_FILES = {vtab_txt.stem(s): vtab_txt.SPLIT_FILES[s] for s in vtab_txt.WRITTEN}  # train800 -> train800.txt, ...
FGVC_SPLITS = ("train", "val", "test")


class PrepareError(Exception):
    """A source, mapping or destination problem; main() prints it as one line and exits 1."""


class Refused(PrepareError):
    """An existing task folder this tool did not write: left as it is; main() goes on with the other tasks."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# --- the atomic task writer, the task lock and copies already there ------------------------------
def _aside(dest: Path) -> Path:
    """A free `<task>~replaced-<UTC time>` beside `dest`."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    cand, k = dest.parent / f"{dest.name}{ASIDE_MARK}{stamp}", 1
    while os.path.lexists(cand):
        k += 1
        cand = dest.parent / f"{dest.name}{ASIDE_MARK}{stamp}-{k}"
    return cand


class TaskWriter:
    """Writes one task under `<dest>` atomically: files go to a temporary sibling, `finish()` renames.

    Create it only while holding `task_lock(dest)`: it removes the temporary folders of earlier,
    interrupted attempts, which only the lock's holder may know to be stale.
    """

    def __init__(self, dest: Path):
        self.dest = dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        for stale in dest.parent.glob(f".{dest.name}{TMP_MARK}*"):  # an interrupted earlier attempt
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale, ignore_errors=True)
        self.tmp = dest.parent / f".{dest.name}{TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}"
        self.tmp.mkdir()

    def path(self, rel: str) -> Path:
        p = self.tmp / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def png(self, rel: str, pixels: np.ndarray) -> str:
        """Save (H, W, 3) uint8 pixels as PNG (lossless)."""
        Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8)).save(self.path(rel), "PNG")
        return rel

    def raw(self, rel: str, data: bytes) -> str:
        self.path(rel).write_bytes(data)
        return rel

    def copy(self, rel: str, src: Path) -> str:
        """The source file's bytes as they are (a hard link when on the same file system)."""
        dst = self.path(rel)
        try:
            os.link(src, dst)
        except OSError:
            shutil.copyfile(src, dst)
        return rel

    def finish(self, keep_old: bool) -> Path | None:
        """Rename the new copy into place; a copy already there is moved aside first, and deleted only
        when `keep_old` is false. Returns where a kept copy now is."""
        if not os.path.lexists(self.dest):
            os.rename(self.tmp, self.dest)
            return None
        aside = _aside(self.dest)
        os.rename(self.dest, aside)
        try:
            os.rename(self.tmp, self.dest)
        except BaseException:
            os.rename(aside, self.dest)  # the old copy back where it was
            raise
        if keep_old:
            return aside
        shutil.rmtree(aside, ignore_errors=True)
        return None

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def _open_lock(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)


@contextlib.contextmanager
def task_lock(dest: Path, name: str):
    """Hold `.<task>.prepare.lock` beside `dest` (fcntl.flock, exclusive) while preparing one task.

    A second prepare of the same task (another process or thread) says so in one line and waits. The
    holder unlinks the file before releasing it, so a waiter that then holds an unlinked file tries again.
    Yields the lock's path, or the OSError that kept it from being created (a read-only data
    root, where a prepared task can still be verified but nothing may be written).
    """
    path = dest.parent / f".{dest.name}{LOCK_MARK}"
    said = False
    while True:
        try:
            fd = _open_lock(path)
        except OSError as e:
            if e.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise
            yield e  # a data root one may read, not write: nothing will be written
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not said:
                    print(f"wait  {name}: another prepare of it is running (it holds {path})", flush=True)
                    said = True
                fcntl.flock(fd, fcntl.LOCK_EX)
            held = os.path.samestat(os.fstat(fd), os.stat(path))  # else the previous holder unlinked it
        except FileNotFoundError:
            held = False
        except BaseException:
            os.close(fd)
            raise
        if held:
            break
        os.close(fd)
    try:
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)


def written_here(dest: Path) -> dict | None:
    """The manifest of a task folder this tool wrote (its converter's name), else None."""
    try:
        m = json.loads((dest / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    conv = m.get("converter") if isinstance(m, dict) else None
    return m if isinstance(conv, dict) and conv.get("name") == CONVERTER["name"] else None


def same_files(old: Path, new: Path) -> bool:
    """Whether `old` holds the same files as `new`, byte for byte, the manifests aside (whose time differs).

    A symbolic link in `old` counts as a difference: what it points to is not compared.
    """
    def files(root: Path) -> set[str] | None:
        out = set()
        for folder, dirs, names in os.walk(root):
            for n in dirs + names:
                p = Path(folder) / n
                if p.is_symlink():
                    return None
                if n in names:
                    out.add(p.relative_to(root).as_posix())
        return out - {MANIFEST}

    if old.is_symlink():
        return False
    was, now = files(old), files(new)
    return was is not None and was == now and all(
        os.path.samefile(old / r, new / r) or filecmp.cmp(old / r, new / r, shallow=False) for r in was)  # fgvc links


# --- dataset configs, verification and the manifest ------------------------------------------
def dataset_config(name: str, root: Path):
    """The dataset config `name` (conf/dataset/<name>.yaml) pointed at `root`, any split size accepted."""
    from bench.config import DatasetConfig, from_dict
    from bench.data.check import dataset_configs

    configs = dataset_configs()
    if name not in configs:
        raise PrepareError(f"unknown dataset {name!r}; valid: {', '.join(sorted(configs))}")
    block = {**configs[name], "data_root": str(root), "splits": {}, "cache_dir": ""}
    return from_dict(DatasetConfig, block, "dataset")


def read_back(cfg) -> dict[str, dict]:
    """Every split as the loaders read it: {split: {"images", "fingerprint", "classes", "paths", "labels"}}."""
    from bench.data.formats import get_format
    from bench.data.roots import dataset_root
    from bench.data.splits import list_splits

    out = {}
    for split, lst in list_splits(cfg, get_format(cfg).splits).items():
        out[split] = {"images": len(lst), "fingerprint": fingerprint(relative_ids(lst.paths, dataset_root(cfg)),
                                                                     lst.labels),
                      "classes": int(len(np.unique(lst.labels))), "paths": lst.paths, "labels": lst.labels.tolist()}
    return out


def verified(cfg, dest: Path) -> dict | None:
    """The manifest of an already prepared task when the loaders read exactly what it records, else None."""
    try:
        manifest = json.loads((dest / MANIFEST).read_text())
        seen = read_back(cfg)
    except (OSError, ValueError, DataError):
        return None
    want = manifest.get("splits", {})
    ok = set(want) == set(seen) and all(want[s].get("images") == seen[s]["images"]
                                        and want[s].get("fingerprint") == seen[s]["fingerprint"] for s in seen)
    return manifest if ok else None


def write_manifest(w: TaskWriter, cfg, source: dict, notes: list[str]) -> dict:
    """Read the written task back through the loaders and record what they read; raises PrepareError if they cannot."""
    from bench.data.version import content_hash

    staged = dataclasses.replace(cfg, data_root=str(w.tmp.parent), root=w.tmp.name)
    try:
        seen = read_back(staged)
    except DataError as e:
        raise PrepareError(f"{cfg.name}: the written layout does not read back: {e}") from None
    splits, formats, qualities = {}, set(), []
    for split, s in seen.items():
        px = jpeg.pixel_format(s["paths"])
        formats.add(px["format"])
        if px["jpeg_quality"] is not None:
            qualities.append(px["jpeg_quality"])
        splits[split] = {"images": s["images"], "classes": s["classes"], "fingerprint": s["fingerprint"],
                         "content": content_hash(relative_ids(s["paths"], w.tmp), s["labels"], s["paths"])}
    fmt = formats.pop() if len(formats) == 1 else "/".join(sorted(f for f in formats if f))
    manifest = {"dataset": cfg.name, "format": cfg.format, "source": source, "converter": CONVERTER,
                "prepared_at": _now(), "pixel_format": fmt,
                "jpeg_quality": int(np.median(qualities)) if qualities else None,
                "counts": {k: v["images"] for k, v in splits.items()}, "splits": splits, "notes": notes}
    from bench.records import write_json_atomic

    write_json_atomic(w.tmp / MANIFEST, manifest)
    return manifest


def run_task(name: str, root: Path, force: bool, write, replace: bool = False) -> str:
    """Prepare one dataset unless it is prepared and verified; `write(w, cfg) -> (source, notes)` fills the writer.

    A task folder there that this tool did not write raises Refused unless `replace`; it (and a copy of
    this tool's that differs from the new one) is then kept aside, never deleted.
    """
    from bench.data.roots import dataset_root

    cfg = dataset_config(name, root)
    dest = dataset_root(cfg)
    with task_lock(dest, name) as lock:
        if isinstance(lock, Path) and dest.is_dir() and not dest.is_symlink() and not any(dest.iterdir()):
            dest.rmdir()  # an empty folder: nothing to keep
        foreign = os.path.lexists(dest) and written_here(dest) is None
        if foreign and not replace:
            raise Refused(f"{name}: {dest} exists and was not written by `prepare` (no manifest.json of "
                          f"{CONVERTER['name']}); left as it is. --replace prepares it and moves that copy to "
                          f"{dest.name}{ASIDE_MARK}<time> beside it")
        if not force and not foreign:
            m = verified(cfg, dest)
            if m is not None:
                counts = ", ".join(f"{k} {v}" for k, v in m["counts"].items())
                return f"ok    {name}: already prepared ({counts}; {dest})"
        if not isinstance(lock, Path):
            raise PrepareError(f"{name}: cannot write under {dest.parent} ({lock}); choose a writable --data-root")
        w = TaskWriter(dest)
        try:
            source, notes = write(w, cfg)
            m = write_manifest(w, cfg, source, notes)
            aside = w.finish(keep_old=foreign or (os.path.lexists(dest) and not same_files(dest, w.tmp)))
        except OSError as e:
            w.abort()
            what = "disk full" if e.errno == errno.ENOSPC else type(e).__name__
            raise PrepareError(f"{name}: {what} while writing {dest} ({e}); nothing was left behind") from None
        except BaseException:
            w.abort()
            raise
    q = f" q{m['jpeg_quality']}" if m["jpeg_quality"] else ""
    kept = [f"the copy that was there ({'not written by prepare' if foreign else 'its files differ'}) is now {aside}"] \
        if aside else []
    return (f"done  {name}: {', '.join(f'{k} {v}' for k, v in m['counts'].items())}, {m['pixel_format']}{q} "
            f"-> {dest}" + "".join(f"\n      note: {n}" for n in notes + kept))


# --- VTAB-1k text layout ----------------------------------------------------------------------
def write_vtab(w: TaskWriter, examples: dict[str, "object"], totals: dict[str, int], desc: str,
               save) -> None:
    """NOAH's layout: images/<split>/<i>.<ext>, `<split>.txt` lines '<path> <label>', train800val200 = both.

    Args:
        examples: split -> iterable of (image payload, label); `save(w, rel_stem, payload) -> rel path`.
    """
    lines = {}
    for split in vtab_tfds.SPLITS:
        lines[split] = []
        for i, (payload, label) in enumerate(tqdm(examples[split], total=totals.get(split), desc=f"{desc} {split}",
                                                  unit="img", leave=False)):
            rel = save(w, f"images/{split}/{i:06d}", payload)
            lines[split].append(f"{rel} {int(label)}")
    for split, name in VTAB_FILES.items():
        w.path(name).write_text("\n".join(lines[split]) + "\n")
    both = lines[vtab_txt.stem("train")] + lines[vtab_txt.stem("val")]
    w.path(vtab_txt.SPLIT_FILES["trainval"]).write_text("\n".join(both) + "\n")


def _save_png(w: TaskWriter, stem: str, pixels) -> str:
    return w.png(stem + ".png", pixels)


def _save_bytes(w: TaskWriter, stem: str, data: bytes) -> str:
    """Encoded image bytes as they are, with the suffix of their format."""
    with Image.open(io.BytesIO(data)) as img:
        fmt = (img.format or "").lower()
    ext = {"jpeg": ".jpg", "png": ".png"}.get(fmt, f".{fmt or 'img'}")
    return w.raw(stem + ext, data)


def vtab_task(name: str) -> str:
    task = name.removeprefix("vtab/")
    if task not in vtab_tfds.TASKS or not name.startswith("vtab/"):
        raise PrepareError(f"{name!r} is not a VTAB-1k task; valid: {', '.join('vtab/' + t for t in vtab_tfds.TASKS)}")
    return task


def tfds_writer(name: str, reader, allow: tuple[str, ...] = ()):
    """The writer of one VTAB-1k task from TFDS through `reader` (vtab_tfds.TfdsReader or a stand-in); `allow`:
    the `--allow-version` values (BUILDER:VERSION) that may be prepared although the task holds another version."""
    task = vtab_tfds.TASKS[vtab_task(name)]
    allowed = tuple(a.rsplit(":", 1)[1] for a in allow if a.rsplit(":", 1)[0] == task.builder)

    def write(w, cfg):
        try:
            version = reader.version(task.builder, (task.version, *allowed))
            counts = reader.counts(task.builder)
        except Exception as e:  # TFDS raises many types for a builder that is not in the data dir
            raise PrepareError(f"{name}: TFDS builder {task.builder!r} cannot be read "
                               f"({type(e).__name__}: {e}); prepare it with TFDS first (KMnP/vpt VTAB_SETUP.md)") from None
        notes = []
        if not vtab_tfds.version_matches(version, task.version):
            if version not in allowed:
                raise PrepareError(f"{name}: TFDS {task.builder} is version {version}, the task holds {task.version} "
                                   f"(docs/datasets.md); --allow-version {task.builder}:{version} prepares it anyway")
            notes.append(f"TFDS {task.builder} is version {version}, not {task.version}: --allow-version names it")
        plan = vtab_tfds.slices(task, counts)
        for split, ranges in plan.items():
            for tf_split, start, stop in ranges:
                if tf_split not in counts or stop > counts[tf_split]:
                    raise PrepareError(f"{name}: TFDS {task.builder} split {tf_split!r} has "
                                       f"{counts.get(tf_split, 0)} examples, {split} needs [{start}:{stop}]")
        labels = {s: checked_labels(name, task, reader, s, r, cfg.num_classes) for s, r in plan.items()}

        def examples(split):
            images = (task.image(ex) for t, a, b in plan[split] for ex in reader.read(task.builder, t, a, b))
            return zip(images, labels[split], strict=True)

        totals = {s: sum(b - a for _, a, b in r) for s, r in plan.items()}
        write_vtab(w, {s: examples(s) for s in plan}, totals, name, _save_png)
        source = {"kind": "tfds", "builder": task.builder, "version": version, "version_held": task.version,
                  "slices": {s: [f"{t}[{a}:{b}]" for t, a, b in r] for s, r in plan.items()},
                  "label": getattr(task.label, "__name__", "label")}
        return source, notes

    return write


def checked_labels(name: str, task, reader, split: str, ranges, classes: int) -> list[int]:
    """Every label of one of our splits, read before any image is written; the first impossible one (outside
    0..classes-1, or a label function that fails on its example) stops the task naming the split, index and value,
    as does an example that cannot be decoded (a JPEG that cannot be decoded as TensorFlow does)."""
    out = []
    for tf_split, start, stop in ranges:
        examples = reader.read(task.builder, tf_split, start, stop)
        for i in range(start, stop):
            try:
                ex = next(examples)
            except StopIteration:
                break
            except ValueError as e:
                raise PrepareError(f"{name}: TFDS {task.builder} {tf_split}[{i}] cannot be read ({e}); "
                                   "nothing was written for the task") from None
            try:
                y = task.label(ex)
            except Exception as e:  # e.g. clevr_dist's minimum over an example without objects
                y = f"{type(e).__name__}: {e}"
            if not isinstance(y, int) or not 0 <= y < classes:
                raise PrepareError(f"{name}: {split} label at TFDS {task.builder} {tf_split}[{i}] is {y}, not in "
                                   f"0..{classes - 1}; nothing was written for the task")
            out.append(y)
    return out


# --- Hugging Face datasets --------------------------------------------------------------------
def load_mapping(path: Path) -> dict:
    """A mirror's YAML: `columns: {image, label}`, `splits: {our split: their split}`, `tasks: {dataset: {repo, revision}}`."""
    try:
        m = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise PrepareError(f"--mapping {path}: cannot be read ({e})") from None
    missing = [k for k in ("columns", "splits", "tasks") if not isinstance((m or {}).get(k), dict)]
    if missing:
        raise PrepareError(f"--mapping {path}: needs the mappings {missing} (see conf/prepare/*.yaml)")
    return m


def _parquet_files(folder: Path, split: str) -> list[Path]:
    """Parquet files of one split in a dataset snapshot: <split>-*.parquet or <split>/*.parquet, at any depth."""
    out = []
    for p in sorted(folder.rglob("*.parquet")):
        rel = p.relative_to(folder).parts
        if p.name.startswith((f"{split}-", f"{split}.")) or split in rel[:-1]:
            out.append(p)
    return out


def _image_folder(folder: Path, split: str) -> Path | None:
    """An image-folder split (`<split>/<class>/<image>`, at the top or under data/), as Hugging Face's imagefolder."""
    for cand in (folder / split, folder / "data" / split):
        if cand.is_dir() and any(e.is_dir() for e in cand.iterdir()):
            return cand
    return None


def _folder_rows(split_dir: Path, classes: list[str]):
    """(bytes, label) per image of an image-folder split; labels index the sorted class folder names of all splits,
    as the imagefolder builder assigns them."""
    from bench.data.formats.class_folders import IMAGE_EXTENSIONS

    index = {c: i for i, c in enumerate(classes)}
    for c in sorted(e.name for e in split_dir.iterdir() if e.is_dir()):
        for p in sorted(q for q in (split_dir / c).rglob("*") if q.suffix.lower() in IMAGE_EXTENSIONS):
            yield p.read_bytes(), index[c]


def hf_snapshot(repo: str, revision: str, local: Path | None) -> tuple[Path, str]:
    """(folder holding the repository's files, the revision read)."""
    if local is not None:  # the repository's folder and nothing else: never parquet files of another task
        short = repo.split("/")[-1]
        for cand in (local / repo, local / short, *([local] if local.name == short else [])):
            if cand.is_dir():
                return cand, revision or "local"
        raise PrepareError(f"--from {local}: no folder of the mirror {repo} there; expected {local / repo} or "
                           f"{local / short} (or --from naming that folder itself)")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise PrepareError("the hf source without --from needs huggingface_hub: pip install huggingface_hub") from None
    try:
        path = snapshot_download(repo, repo_type="dataset", revision=revision or None)
    except Exception as e:  # offline, unknown repository, no access: the hub's own message
        raise PrepareError(f"{repo}: cannot download ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    return Path(path), Path(path).name


def _hf_rows(files: list[Path], columns: dict, where: str):
    import pyarrow.parquet as pq

    for f in files:
        table = pq.read_table(f)
        missing = [c for c in (columns["image"], columns["label"]) if c not in table.column_names]
        if missing:
            raise PrepareError(f"{where}: {f} has no column(s) {missing}; its columns: {table.column_names} "
                               f"(set `columns` in the mapping)")
        for image, label in zip(table.column(columns["image"]).to_pylist(), table.column(columns["label"]).to_pylist()):
            data = image.get("bytes") if isinstance(image, dict) else image
            if not isinstance(data, (bytes, bytearray)):
                raise PrepareError(f"{where}: {f}: column {columns['image']!r} holds no image bytes")
            yield bytes(data), int(label)


def hf_writer(name: str, mapping: dict, local: Path | None):
    entry = mapping["tasks"].get(name)
    if not isinstance(entry, dict) or not entry.get("repo"):
        raise PrepareError(f"{name}: not in the mapping; its tasks: {', '.join(sorted(mapping['tasks']))}")
    columns = {"image": "image", "label": "label", **mapping["columns"]}
    split_names = {**mapping["splits"], **(entry.get("splits") or {})}

    def write(w, cfg):
        folder, revision = hf_snapshot(entry["repo"], str(entry.get("revision", "")), local)
        files, dirs, ours = {}, {}, list(VTAB_FILES) if cfg.format == "vtab_txt" else list(FGVC_SPLITS)
        for split in ours:
            theirs = split_names.get(split)
            files[split] = _parquet_files(folder, theirs) if theirs else []
            dirs[split] = _image_folder(folder, theirs) if theirs and not files[split] else None
            if not files[split] and dirs[split] is None:
                raise PrepareError(f"{name}: {entry['repo']} has no split {theirs!r} for our {split!r} under {folder} "
                                   f"(parquet files or an image folder; splits: {', '.join(ours)} -> set `splits` "
                                   f"in the mapping)")
        where = f"{name} ({entry['repo']})"
        classes = sorted({e.name for d in dirs.values() if d for e in d.iterdir() if e.is_dir()})
        rows = {s: _hf_rows(files[s], columns, where) if files[s] else _folder_rows(dirs[s], classes) for s in ours}
        source = {"kind": "huggingface", "repo": entry["repo"], "revision": revision, "splits": split_names,
                  "columns": columns if any(files.values()) else None,
                  "files": {s: {str(f.relative_to(folder)): sha256_file(f) for f in fs} for s, fs in files.items()},
                  "image_folders": {s: str(d.relative_to(folder)) for s, d in dirs.items() if d} or None,
                  "classes": classes or None}
        if cfg.format == "vtab_txt":
            write_vtab(w, rows, {}, name, _save_bytes)
        else:
            labels = {s: [] for s in ours}
            for s in ours:
                for i, (data, y) in enumerate(tqdm(rows[s], desc=f"{name} {s}", unit="img", leave=False)):
                    rel = _save_bytes(w, f"{cfg.image_dir or '.'}/{s}/{i:06d}", data)
                    labels[s].append((Path(rel).relative_to(cfg.image_dir or ".").as_posix(), y))
            _write_fgvc_json(w, labels)
        return source, []

    return write


# --- FGVC: official archives + VPT's JSON splits ----------------------------------------------
def _write_fgvc_json(w: TaskWriter, entries: dict[str, list[tuple[str, int]]]) -> dict[int, int]:
    """train/val/test.json with labels mapped over all three splits at once (sorted class ids -> 0..C-1).

    VPT's and V-PETL's loaders map each split's ids on their own, so a split missing classes (NABirds'
    val has 553 of 555) gets other indices than training; one map over all splits keeps them equal.
    """
    ids = sorted({y for split in entries.values() for _, y in split})
    index = {c: i for i, c in enumerate(ids)}
    for split, items in entries.items():
        w.path(f"{split}.json").write_text(json.dumps({k: index[y] for k, y in items}, indent=0) + "\n")
    return index


def fgvc_writer(name: str, source_dir: Path | None, splits_dir: Path | None, archives: list[Path]):
    if source_dir is None or splits_dir is None:
        raise PrepareError(f"{name}: the fgvc source needs --from (the extracted official archive) and --splits "
                           f"(the folder of VPT's train.json, val.json, test.json)")

    def write(w, cfg):
        for p in (source_dir, splits_dir, *archives):
            if not p.exists():
                raise PrepareError(f"{name}: {p} not found")
        raw, checksums = {}, {}
        for split in FGVC_SPLITS:
            path = splits_dir / f"{split}.json"
            if not path.is_file():
                raise PrepareError(f"{name}: {path} not found; expected VPT's train.json, val.json, test.json there")
            try:
                raw[split] = json.loads(path.read_text())
            except ValueError as e:
                raise PrepareError(f"{name}: {path}: not valid JSON ({e})") from None
            checksums[f"{split}.json"] = sha256_file(path)
        images = source_dir / cfg.image_dir if (source_dir / cfg.image_dir).is_dir() else source_dir
        entries = {}
        for split, table in raw.items():
            entries[split] = []
            for rel, y in tqdm(table.items(), desc=f"{name} {split}", unit="img", leave=False):
                src = images / rel
                if not src.is_file():
                    raise PrepareError(f"{name}: {splits_dir / (split + '.json')}: image {rel!r} not found under {images}")
                w.copy(f"{cfg.image_dir or '.'}/{rel}", src)
                entries[split].append((rel, int(y)))
        index = _write_fgvc_json(w, entries)
        missing = {s: len(index) - len({y for _, y in e}) for s, e in entries.items()}
        notes = [f"{s} lacks {n} of the {len(index)} classes (labels mapped over all splits, so they agree)"
                 for s, n in missing.items() if n]
        source = {"kind": "fgvc_archive", "from": str(source_dir), "split_files": checksums,
                  "archives": {p.name: sha256_file(p) for p in archives}, "classes": len(index)}
        return source, notes

    return write


# --- command line ------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.data prepare", description=__doc__.split("\n\n")[0])
    ap.add_argument("source", choices=SOURCES, help="where the images come from")
    ap.add_argument("datasets", nargs="*", metavar="DATASET",
                    help="config names or patterns (vtab/cifar, 'vtab/*', fgvc/nabirds); default: every task of the source")
    ap.add_argument("--data-root", help="where to write (default: $BENCH_DATA_ROOT, else ./data)")
    ap.add_argument("--tfds-dir", help="tfds: the TFDS data dir (default: TFDS's own, ~/tensorflow_datasets)")
    ap.add_argument("--allow-version", action="append", default=[], metavar="BUILDER:VERSION",
                    help="tfds: prepare BUILDER at VERSION although its task holds another (repeatable; "
                         "docs/datasets.md lists the versions held)")
    ap.add_argument("--mapping", type=Path, help="hf: the mirror's YAML (default conf/prepare/hf_vtab1k.yaml)")
    ap.add_argument("--from", dest="from_dir", type=Path,
                    help="hf: a local snapshot folder (offline); fgvc: the extracted official archive")
    ap.add_argument("--splits", type=Path, help="fgvc: the folder of VPT's train.json, val.json, test.json")
    ap.add_argument("--archive", type=Path, action="append", default=[],
                    help="fgvc: an archive file whose sha256 the manifest records (repeatable)")
    ap.add_argument("--force", action="store_true",
                    help="prepare again even where a verified copy exists (one that differs is kept aside)")
    ap.add_argument("--replace", action="store_true",
                    help="prepare also where a copy not written by prepare is, moving it to <task>~replaced-<time>")
    args = ap.parse_args(argv)

    import fnmatch

    root = data_root(SimpleNamespace(data_root=args.data_root or ""))  # the loaders' rule: flag, $BENCH_DATA_ROOT, ./data
    try:
        if args.source == "tfds":
            names = ["vtab/" + t for t in vtab_tfds.TASKS]
        elif args.source == "hf":
            mapping = load_mapping(args.mapping or HF_CONF / "hf_vtab1k.yaml")
            names = list(mapping["tasks"])
        else:
            names = [n for n in _configs() if n.startswith("fgvc/")]
        chosen = []
        for pattern in args.datasets or ["*"]:
            matches = [n for n in names if fnmatch.fnmatch(n, pattern)]
            if not matches:
                raise PrepareError(f"{pattern!r} matches no dataset of source {args.source!r}; valid: {', '.join(names)}")
            chosen += [m for m in matches if m not in chosen]
        if args.source == "fgvc" and len(chosen) != 1:
            raise PrepareError(f"the fgvc source prepares one dataset at a time (its --from and --splits); got {chosen}")
        builders = sorted({t.builder for t in vtab_tfds.TASKS.values()})
        for a in args.allow_version:
            b, _, v = a.rpartition(":")
            if b not in builders or v.count(".") != 2:
                raise PrepareError(f"--allow-version {a!r}: expected BUILDER:X.Y.Z with BUILDER one of "
                                   f"{', '.join(builders)}")
        reader = vtab_tfds.TfdsReader(args.tfds_dir) if args.source == "tfds" else None
        refused = []
        for name in chosen:
            if args.source == "tfds":
                write = tfds_writer(name, reader, tuple(args.allow_version))
            elif args.source == "hf":
                write = hf_writer(name, mapping, args.from_dir)
            else:
                write = fgvc_writer(name, args.from_dir, args.splits, args.archive)
            try:
                print(run_task(name, root, args.force, write, replace=args.replace), flush=True)
            except Refused as e:  # the other tasks go on
                sys.stderr.write(f"error: {e}\n")
                refused.append(name)
    except (PrepareError, RuntimeError) as e:
        sys.stderr.write(f"error: {e}\n")
        return 1
    if refused and len(chosen) > 1:
        sys.stderr.write(f"error: refused {len(refused)} of {len(chosen)} tasks, copies not written by prepare, "
                         f"left as they are: {', '.join(refused)}; the other tasks are prepared; --replace moves "
                         f"them aside\n")
    return 1 if refused else 0


def _configs() -> dict:
    from bench.data.check import dataset_configs

    return dataset_configs()


__all__ = ["CONVERTER", "PrepareError", "Refused", "TaskWriter", "fgvc_writer", "hf_writer", "main", "run_task",
           "task_lock", "tfds_writer"]
