"""`python -m bench.data check [DATASET ...]`: validate what is on disk, without training.

For each dataset: every split its format has is listed and validated exactly as a run would
(split files present and well-formed, split sizes as configured, labels in range, every image
present), then every image is decoded. One line per dataset: `ok` with the split sizes, or
`FAIL` with what is wrong (the file, and the line where there is one). Robustness sets of
ImageNet are checked as `robustness/<name>`, domain-generalisation targets as `domain/<name>`.

Decoding also checks integrity, not only presence: class counts per split and the classes a
split lacks (against the classes the other splits have), images of a training split whose
decoded pixels equal a test image's (a leak), images whose decoded mode or size is not the
dataset's usual one, and the pixel format (PNG, or JPEG with the quality estimated from its
quantisation tables). These are `WARN` lines (exit status 0); `--report FILE` writes the
details of every dataset as JSON.

Dataset configs are read from conf/dataset/**.yaml with PyYAML (the library never imports
Hydra), so the names are the config paths: `vtab/dtd`, `fgvc/cub`, patterns like `vtab/*`.
"""
import argparse
import fnmatch
import hashlib
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import yaml

from bench import CONF as CONF_TREE
from bench.config import DatasetConfig, from_dict
from bench.data.errors import DataError
from bench.data.listing import Listing
from bench.data.roots import dataset_root

CONF = CONF_TREE / "dataset"


def dataset_configs(conf: Path = CONF) -> dict[str, dict]:
    """{config name: its `dataset` block} for every dataset config except the generated mini ones."""
    out = {}
    for path in sorted(conf.rglob("*.yaml")):
        data = yaml.safe_load(path.read_text()) or {}
        block = data.get("dataset", data) if "name" not in data else data
        block = {k: v for k, v in block.items() if k != "defaults"}
        if block.get("benchmark") != "mini":
            out[str(path.relative_to(conf).with_suffix(""))] = block
    return out


def _decode(listing: Listing, workers: int, seen: dict | None = None) -> list[str]:
    """Decode every image; one problem string per unreadable one. `seen` gets {path: (pixel hash, mode, (w, h))}."""
    from bench.data.torch_datasets import open_rgb

    def one(i):
        try:
            if seen is None:
                open_rgb(listing.paths[i])
                return None, None
            return None, _pixels(listing.paths[i])
        except Exception as e:  # PIL raises many types for broken files
            return f"{listing.origin(i)}: image {listing.paths[i]} is unreadable ({type(e).__name__}: {e})", None

    problems = []
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for i, (problem, info) in enumerate(pool.map(one, range(len(listing)))):
            if problem:
                problems.append(problem)
            elif seen is not None:
                seen[listing.paths[i]] = info
    return problems


def _pixels(path: str) -> tuple[str, str, tuple[int, int]]:
    """(hash of the decoded RGB pixels, the file's own mode, (width, height)): equal hashes, equal images."""
    from PIL import Image

    with Image.open(path) as img:
        mode, size = img.mode, img.size
        rgb = img.convert("RGB")
    h = hashlib.blake2b(f"{size}".encode(), digest_size=16)
    h.update(rgb.tobytes())
    return h.hexdigest(), mode, size


MAX_LISTED = 20  # examples per kind of finding in the report
USUAL_SIZE = 0.9  # a size this share of the images has is the dataset's size; the others are flagged


def integrity(cfg: DatasetConfig, listings: dict[str, Listing], pixels: dict) -> dict:
    """Class counts, missing classes, train/test duplicates, unusual modes and sizes, pixel format.

    Args:
        listings: split -> its validated listing.
        pixels: path -> (pixel hash, mode, size) of every decoded image (from `_decode`); empty: not decoded.
    Returns:
        the report's entry; `warnings` holds one sentence per finding that needs a look (a leak, unusual
        images: the line says WARN), `notes` one per fact worth knowing (classes a split lacks).
    """
    from bench.data import jpeg

    report, warnings, notes = {"num_classes": cfg.num_classes, "splits": {}}, [], []
    present = {s: set(np.unique(lst.labels).tolist()) for s, lst in listings.items()}
    union = set().union(*present.values()) if present else set()
    report["classes_seen"] = len(union)
    for s, lst in listings.items():
        labels, counts = np.unique(lst.labels, return_counts=True)
        missing = sorted(union - present[s])
        report["splits"][s] = {"images": len(lst), "class_counts": {int(k): int(v) for k, v in zip(labels, counts)},
                               "missing_classes": missing}
        if missing:  # a note, not a warning: VTAB's val200 of 397 classes cannot hold them all
            notes.append(f"{s} lacks {len(missing)} of the {len(union)} classes the other splits have")
    paths = list(dict.fromkeys(p for lst in listings.values() for p in lst.paths))
    if cfg.format != "cifar100_python":
        report["pixel_format"] = jpeg.pixel_format(paths, sample=256)
    if pixels:
        train_hashes = {}
        for s, lst in listings.items():
            if s != "test":
                for p in lst.paths:
                    if p in pixels:
                        train_hashes.setdefault(pixels[p][0], (s, p))
        dups = [{"train_split": train_hashes[pixels[p][0]][0], "train": train_hashes[pixels[p][0]][1], "test": p}
                for p in (listings["test"].paths if "test" in listings else []) if p in pixels
                and pixels[p][0] in train_hashes]
        report["duplicates"] = {"count": len(dups), "examples": dups[:MAX_LISTED]}
        if dups:
            warnings.append(f"{len(dups)} test image(s) equal a training image pixel for pixel (a leak), "
                            f"e.g. {dups[0]['test']} = {dups[0]['train']}")
        modes = Counter(v[1] for v in pixels.values())
        sizes = Counter(v[2] for v in pixels.values())
        usual_mode = modes.most_common(1)[0][0]
        usual_size, n_size = sizes.most_common(1)[0]
        uniform = n_size >= USUAL_SIZE * len(pixels)
        odd = [{"path": p, "mode": m, "size": list(sz),
                "why": "mode" if m != usual_mode else "size"} for p, (_, m, sz) in pixels.items()
               if m != usual_mode or (uniform and sz != usual_size)]
        report["modes"] = dict(modes)
        report["sizes"] = {f"{w}x{h}": n for (w, h), n in sizes.most_common(5)}
        report["odd_images"] = {"count": len(odd), "examples": odd[:MAX_LISTED]}
        if odd:
            warnings.append(f"{len(odd)} image(s) not {usual_mode}" + (f" {usual_size[0]}x{usual_size[1]}" if uniform
                                                                        else "") + f", e.g. {odd[0]['path']} "
                            f"({odd[0]['mode']} {odd[0]['size'][0]}x{odd[0]['size'][1]})")
    report["warnings"], report["notes"] = warnings, notes
    return report


def _exists(cfg: DatasetConfig) -> bool:
    from bench.data.formats.vtab_txt import task_root

    return (task_root(cfg) if cfg.format == "vtab_txt" else dataset_root(cfg)).exists()


def check_dataset(cfg: DatasetConfig, decode: bool = True, workers: int = 4,
                  report: dict | None = None) -> tuple[list[str], list[str]]:
    """(problems, one 'split n' summary per split); `report` (if given) gets `integrity`'s findings."""
    from bench.data.formats import get_format
    from bench.data.splits import listing

    problems, sizes, seen, listings = [], [], {}, {}
    try:
        splits = get_format(cfg).splits
    except ValueError as e:
        return [str(e)], []
    for split in splits:
        try:
            lst = listing(cfg, split)
        except DataError as e:
            problems.append(str(e))
            if not _exists(cfg):
                break  # the whole dataset is missing: one message, not one per split
            continue
        sizes.append(f"{split} {len(lst)}")
        listings[split] = lst
        if decode and cfg.format != "cifar100_python":
            fresh = [i for i, p in enumerate(lst.paths) if p not in seen]  # splits may share images
            seen.update((lst.paths[i], None) for i in fresh)
            sub = Listing([lst.paths[i] for i in fresh], lst.labels[fresh],
                          [lst.origin(i) for i in fresh] if lst.where is not None else None)
            problems += _decode(sub, workers, seen)
    if report is not None and listings:
        report.update(integrity(cfg, listings, {p: v for p, v in seen.items() if v is not None}))
    return problems, sizes


def check_robustness(cfg: DatasetConfig, name: str, decode: bool = True, workers: int = 4) -> tuple[list[str], list[str]]:
    from bench.data import robustness as R

    try:
        if name.startswith("domain/"):  # a domain-generalisation target's NOAH list
            listings = {name: R.domain_listing(cfg, name.removeprefix("domain/"))}
        elif name == "imagenet_c":
            listings = {f"{c}/{s}": R.corruption_listing(cfg, c, s) for c in R.corruptions_present(cfg)
                        for s in R.SEVERITIES}
        else:
            listings = {name: R.subset_listing(cfg, name)}
    except (DataError, KeyError) as e:
        return [str(e)], []
    problems = [p for lst in listings.values() for p in (_decode(lst, workers) if decode else [])]
    total = sum(len(v) for v in listings.values())
    return problems, [f"{len(listings)} folder(s), {total} images"]


def _line(name: str, where: Path, problems: list[str], sizes: list[str], verbose: bool,
          report: dict | None = None) -> str:
    if not problems:
        report = report or {}
        px = report.get("pixel_format") or {}
        fmt = f"; {px['format']}" + (f" q{px['jpeg_quality']}" if px.get("jpeg_quality") else "") if px.get("format") \
            else ""
        found, notes = report.get("warnings") or [], report.get("notes") or []
        note = "".join(f"; {n}" for n in notes)
        if found:
            more = "".join(f"\n      {w}" for w in found[1:]) if verbose else \
                (f" (+{len(found) - 1} more; -v lists them)" if len(found) > 1 else "")
            return f"WARN  {name}: {', '.join(sizes)} ({where}){fmt}; {found[0]}{more}{note}"
        return f"ok    {name}: {', '.join(sizes)} ({where}){fmt}{note}"
    more = f" (+{len(problems) - 1} more problem(s); -v lists them)" if len(problems) > 1 and not verbose else ""
    text = f"FAIL  {name}: {problems[0]}{more}"
    if verbose:
        text += "".join(f"\n      {p}" for p in problems[1:])
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.data check", description=__doc__.split("\n\n")[0])
    ap.add_argument("datasets", nargs="*", metavar="DATASET",
                    help="config names or patterns (vtab/dtd, 'vtab/*', fgvc/cub, robustness/imagenet_a); default: all")
    ap.add_argument("--data-root", help="folder holding every dataset (default: $BENCH_DATA_ROOT, else ./data)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a dataset config key for every dataset checked, e.g. --set format=cub; "
                         "dotted keys set one entry of a mapping: --set splits.test=300")
    ap.add_argument("--no-decode", action="store_true", help="check lists, sizes, labels and presence, not pixels")
    ap.add_argument("--workers", type=int, default=4, help="decoding threads (default 4)")
    ap.add_argument("-v", "--verbose", action="store_true", help="list every problem, not only the first")
    ap.add_argument("--report", type=Path, metavar="FILE",
                    help="write every dataset's details as JSON: class counts per split, missing classes, "
                         "train/test duplicates, unusual images, pixel format")
    args = ap.parse_args(argv)

    configs = dataset_configs()
    extra, nested = {}, {}  # whole keys, and single entries of mappings (splits.test=300)
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            ap.error(f"--set {item!r}: expected KEY=VALUE")
        key, dot, sub = key.removeprefix("dataset.").partition(".")
        if dot:
            nested.setdefault(key, {})[sub] = yaml.safe_load(value)
        else:
            extra[key] = yaml.safe_load(value)
    if args.data_root:
        extra["data_root"] = args.data_root
    names = {n: (n, None) for n in configs}
    for n, block in configs.items():
        for r in block.get("robustness") or {}:
            names[f"robustness/{r}"] = (n, r)
        for r in block.get("domain_shift") or {}:
            names[f"domain/{r}"] = (n, f"domain/{r}")
    chosen = []
    for pattern in args.datasets or ["*"]:
        matches = [n for n in names if fnmatch.fnmatch(n, pattern)]
        if not matches:
            sys.stderr.write(f"error: {pattern!r} matches no dataset; valid: {', '.join(sorted(names))}\n")
            return 2
        chosen += [m for m in matches if m not in chosen]
    failed, full = 0, {}
    for name in chosen:
        config_name, robust = names[name]
        block = {**configs[config_name], **extra}
        bad = [k for k in nested if not isinstance(block.get(k) or {}, dict)]
        if bad:
            print(f"FAIL  {name}: bad config: --set {bad[0]}.<key>=...: dataset.{bad[0]} is not a mapping", flush=True)
            failed += 1
            continue
        block |= {k: {**(block.get(k) or {}), **entries} for k, entries in nested.items()}
        try:
            cfg = from_dict(DatasetConfig, block, "dataset")
        except (ValueError, TypeError) as e:
            print(f"FAIL  {name}: bad config: {e}", flush=True)
            failed += 1
            continue
        details = {}
        if robust is None:
            problems, sizes = check_dataset(cfg, not args.no_decode, args.workers, details)
            where = dataset_root(cfg)
        else:
            from bench.data.robustness import target_root

            problems, sizes = check_robustness(cfg, robust, not args.no_decode, args.workers)
            domain = robust.startswith("domain/")
            where = target_root(cfg, robust.removeprefix("domain/"), "domain_shift" if domain else "robustness")
        failed += bool(problems)
        print(_line(name, where, problems, sizes, args.verbose, details), flush=True)
        full[name] = {"status": "fail" if problems else "warn" if details.get("warnings") else "ok",
                      "root": str(where), "problems": problems, **details}
    if args.report:
        from bench.records import write_json_atomic

        write_json_atomic(args.report, full)
    return 1 if failed else 0
