"""`python -m bench.data check [DATASET ...]`: validate what is on disk, without training.

For each dataset: every split its format has is listed and validated exactly as a run would
(split files present and well-formed, split sizes as configured, labels in range, every image
present), then every image is decoded. One line per dataset: `ok` with the split sizes, or
`FAIL` with what is wrong (the file, and the line where there is one). Robustness sets of
ImageNet are checked as `robustness/<name>`, domain-generalisation targets as `domain/<name>`.

Dataset configs are read from conf/dataset/**.yaml with PyYAML (the library never imports
Hydra), so the names are the config paths: `vtab/dtd`, `fgvc/cub`, patterns like `vtab/*`.
"""
import argparse
import fnmatch
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from bench import PROJECT_ROOT
from bench.config import DatasetConfig, from_dict
from bench.data.files import DataError, Listing, dataset_root

CONF = PROJECT_ROOT / "conf" / "dataset"


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


def _decode(listing: Listing, workers: int) -> list[str]:
    """Decode every image; one problem string per unreadable one."""
    from bench.data.datasets import open_rgb

    def one(i):
        try:
            open_rgb(listing.paths[i])
            return None
        except Exception as e:  # PIL raises many types for broken files
            return f"{listing.origin(i)}: image {listing.paths[i]} is unreadable ({type(e).__name__}: {e})"

    with ThreadPoolExecutor(max(1, workers)) as pool:
        return [p for p in pool.map(one, range(len(listing))) if p]


def _exists(cfg: DatasetConfig) -> bool:
    from bench.data.vtab import task_root

    return (task_root(cfg) if cfg.format == "vtab_txt" else dataset_root(cfg)).exists()


def check_dataset(cfg: DatasetConfig, decode: bool = True, workers: int = 4) -> tuple[list[str], list[str]]:
    """(problems, one 'split n' summary per split)."""
    from bench.data.real import get_format, listing

    problems, sizes, seen = [], [], set()
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
        if decode and cfg.format != "cifar100_python":
            fresh = [i for i, p in enumerate(lst.paths) if p not in seen]  # splits may share images
            seen.update(lst.paths)
            sub = Listing([lst.paths[i] for i in fresh], lst.labels[fresh],
                          [lst.origin(i) for i in fresh] if lst.where is not None else None)
            problems += _decode(sub, workers)
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


def _line(name: str, where: Path, problems: list[str], sizes: list[str], verbose: bool) -> str:
    if not problems:
        return f"ok    {name}: {', '.join(sizes)} ({where})"
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
    failed = 0
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
        if robust is None:
            problems, sizes = check_dataset(cfg, not args.no_decode, args.workers)
            where = dataset_root(cfg)
        else:
            from bench.data.robustness import _root

            problems, sizes = check_robustness(cfg, robust, not args.no_decode, args.workers)
            domain = robust.startswith("domain/")
            where = _root(cfg, robust.removeprefix("domain/"), "domain_shift" if domain else "robustness")
        failed += bool(problems)
        print(_line(name, where, problems, sizes, args.verbose), flush=True)
    return 1 if failed else 0
