"""A whole run, side by side with the official SSF code (a benchmark, not a test).

    python scripts/bench_run.py [--repeat 3] [--epochs 3] [--train 1000] [--test 300] [--out results/bench]
                                [--official SSF_CHECKOUT [--official-pythonpath DIR]]

The job (issue 16): SSF on ViT-Ti/16 (`vit_tiny_patch16_224`, random init) at 224 px, a
VTAB-1k-shaped task (1,000 train800val200 images, 300 test images scored after every epoch,
47 classes, 16x16 JPEGs squashed to 224), batch 32, 3 epochs (1 warm-up), AdamW lr 5e-3,
wd 5e-5, 2 threads, 2 loader workers, fp32, `protocol=paper`. The images are generated here;
each repeat is a fresh `launch.py` process with an empty cache and results folder, so the wall
time includes interpreter start, imports, cache building and the deployed-model step.

With `--official`, every repeat also runs the official SSF `train.py` (a checkout of
dongzelian/SSF, unmodified, on the CPU through scripts/official_ssf_cpu.py) on the same files
with the same settings, its dtd script's arguments with the job's model, epochs and warm-up;
the two alternate (ours first in odd repeats, the official code first in even ones), so the
shared machine's drift hits both alike. `--official-pythonpath` is prepended to its PYTHONPATH
for its dependencies (timm 0.6.5, ipdb, scipy, pyyaml). Its training and evaluation times are
read from its own log: the average batch time of each epoch's last `Train:` and `Test:` line
times the number of batches.

Prints, as medians over the repeats: the process's wall time and peak resident memory (its own
rusage, loader workers included), training images/s and evaluation images/s, our run's peak up
to the end of training and of the whole run (its own high-water mark), the time outside
training and evaluation (wall minus both) with its share of the wall, and the final epoch's
test top-1. Without `--official`, the comparison is with the official code's figures measured
once by whoever filed issue 16 (not by this script): 243 s wall, 15.2 training images/s,
3.26 GiB peak.
"""
import argparse
import csv
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.records import atomic_file  # noqa: E402

OFFICIAL = {"wall_s": 243.0, "train_images_per_s": 15.2, "process_peak_rss_gib": 3.26}  # issue 16, official SSF train.py
CLASSES = 47


def sizes(train: int, test: int) -> dict[str, int]:
    return {"train800": train * 4 // 5, "val200": train // 5, "train800val200": train, "test": test}


def make_task(root: Path, split_sizes: dict[str, int], seed: int = 0) -> None:
    """A NOAH-layout VTAB task folder (dtd's name) of random 16x16 JPEGs, as the data loaders read it."""
    from PIL import Image

    rng = random.Random(seed)
    task = root / "vtab-1k" / "dtd"
    for split, n in split_sizes.items():
        (task / "images" / split).mkdir(parents=True, exist_ok=True)
        lines = []
        for i in range(n):
            rel = f"images/{split}/{i:06d}.jpg"
            Image.frombytes("RGB", (16, 16), bytes(rng.randrange(256) for _ in range(16 * 16 * 3))).save(task / rel)
            lines.append(f"{rel} {i % CLASSES}")
        (task / f"{split}.txt").write_text("\n".join(lines) + "\n")


def _spawn(args: list[str], env: dict[str, str]) -> tuple[str, float, float]:
    """Run one fresh process; its output, wall seconds and peak RSS in GiB (itself and its reaped children)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(args, cwd=ROOT, env=dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="2", **env),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if status != 0:
        sys.stderr.write(output[-3000:])
        raise SystemExit(f"error: {' '.join(args[:3])} ... failed (status {status})")
    return output, wall, usage.ru_maxrss / 2**20


def _shares(wall: float, train_s: float, eval_s: float) -> dict:
    return {"outside_train_eval_s": wall - train_s - eval_s, "outside_share": (wall - train_s - eval_s) / wall}


def ours(data: Path, work: Path, epochs: int, n: dict[str, int]) -> dict:
    """One fresh `launch.py` process on the job; its wall, its own peak RSS, and its record."""
    args = [sys.executable, str(ROOT / "launch.py"), "method=ssf", "dataset=vtab/dtd", "backbone=vit_ti16",
            "protocol=paper", f"train.epochs={epochs}", "train.warmup_epochs=1", "train.cooldown_epochs=0",
            "train.batch_size=32", "train.lr=5e-3", "train.weight_decay=5e-5", "train.num_threads=2",
            "dataset.num_workers=2", "train.amp=off", "train.progress=false", "train.device=cpu",
            f"dataset.splits={{train:{n['train800']},val:{n['val200']},trainval:{n['train800val200']},test:{n['test']}}}",
            f"results_dir={work / 'results'}"]
    _, wall, rss = _spawn(args, {"BENCH_DATA_ROOT": str(data), "BENCH_CACHE_DIR": str(work / "cache")})
    (path,) = (work / "results").rglob("record.json")
    rec = json.loads(path.read_text())
    eval_images = n["test"] * len(rec["history"])  # paper protocol: test scored after every epoch
    train_s, eval_s = rec["train_time_s"], rec["eval_time_s"]
    return {"code": "ours", "wall_s": wall, "process_peak_rss_gib": rss,
            "train_images_per_s": rec["train_images_per_s"], "eval_images_per_s": eval_images / eval_s,
            "train_s": train_s, "eval_s": eval_s, **_shares(wall, train_s, eval_s), "test_top1": rec["test_top1"],
            "setup_s": rec["setup_time_s"], "deploy_s": rec["deploy_time_s"],
            "train_peak_mb": rec["train_peak_memory_mb"], "run_peak_mb": rec["peak_memory_mb"]}


# the official log's lines: `Train: epoch [index/batches ...] ... (average batch time`, `Test: [index/last] ...`
TRAIN_LINE = re.compile(r"Train: (\d+) \[\s*(\d+)/(\d+) .*?Time: [\d.]+s,\s+[\d.]+/s\s+\(([\d.]+)s,")
TEST_LINE = re.compile(r"Test: \[\s*(\d+)/(\d+)\]\s+Time: [\d.]+ \(([\d.]+)\).*?Acc@1:\s+[\d.]+ \(\s*([\d.]+)\)")


def parse_official_log(log: str, batch_size: int, n_test: int) -> dict:
    """Training and evaluation seconds, images and the last test top-1, from the official train.py's log.

    Each epoch's last `Train:` line, `[index/batches]`, carries the epoch's average batch time
    (loading included, as the official code measures it) and its number of batches, each of
    `batch_size` images (its training loader drops the last partial batch). Each evaluation's
    last `Test:` line carries its average batch time and the running top-1 over the split.
    """
    train_s, train_images, eval_s, evals, top1 = 0.0, 0, 0.0, 0, None
    for line in log.splitlines():
        if (m := TRAIN_LINE.search(line)) and int(m.group(2)) == int(m.group(3)) - 1:
            batches = int(m.group(3))
            train_s += float(m.group(4)) * batches
            train_images += batches * batch_size
        elif (m := TEST_LINE.search(line)) and m.group(1) == m.group(2):
            eval_s += float(m.group(3)) * (int(m.group(2)) + 1)
            evals += 1
            top1 = float(m.group(4))
    if not train_images or not evals:
        raise ValueError("the official log has no complete training epoch or evaluation")
    return {"train_s": train_s, "train_images": train_images, "eval_s": eval_s, "eval_images": evals * n_test,
            "test_top1": top1, "epochs_evaluated": evals}


def official(data: Path, work: Path, epochs: int, n: dict[str, int], repo: Path, pythonpath: str) -> dict:
    """One fresh process of the official SSF train.py on the same files and settings."""
    args = [sys.executable, str(ROOT / "scripts" / "official_ssf_cpu.py"), str(repo), str(data / "vtab-1k" / "dtd"),
            "--dataset", "dtd", "--num-classes", str(CLASSES), "--no-aug", "--direct-resize",
            "--model", "vit_tiny_patch16_224", "--batch-size", "32", "--epochs", str(epochs), "--cooldown-epochs", "0",
            "--opt", "adamw", "--weight-decay", "5e-5", "--warmup-lr", "1e-7", "--warmup-epochs", "1",
            "--lr", "5e-3", "--min-lr", "1e-8", "--drop-path", "0", "--img-size", "224", "--tuning-mode", "ssf",
            "--mixup", "0", "--cutmix", "0", "--smoothing", "0", "-j", "2", "--no-prefetcher",
            "--output", str(work / "official")]
    env = {"PYTHONPATH": os.pathsep.join(p for p in (pythonpath, os.environ.get("PYTHONPATH", "")) if p)}
    log, wall, rss = _spawn(args, env)
    try:
        got = parse_official_log(log, 32, n["test"])
    except ValueError as e:
        sys.stderr.write(log[-3000:])
        raise SystemExit(f"error: {e}") from None
    if got["epochs_evaluated"] != epochs:
        raise SystemExit(f"error: the official run evaluated {got['epochs_evaluated']} epochs, not {epochs}")
    return {"code": "official", "wall_s": wall, "process_peak_rss_gib": rss,
            "train_images_per_s": got["train_images"] / got["train_s"],
            "eval_images_per_s": got["eval_images"] / got["eval_s"], "train_s": got["train_s"],
            "eval_s": got["eval_s"], **_shares(wall, got["train_s"], got["eval_s"]), "test_top1": got["test_top1"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--train", type=int, default=1000, help="train800val200 images (default 1,000, the job's)")
    ap.add_argument("--test", type=int, default=300, help="test images (default 300, the job's)")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "bench", help="where bench_run.csv goes")
    ap.add_argument("--official", type=Path, help="a checkout of dongzelian/SSF: run its train.py too, interleaved")
    ap.add_argument("--official-pythonpath", default="", help="prepended to PYTHONPATH for the official code")
    args = ap.parse_args(argv)
    if args.official is not None and not (args.official / "train.py").is_file():
        raise SystemExit(f"error: --official {args.official}: no train.py there (a checkout of dongzelian/SSF)")
    rows, n = [], sizes(args.train, args.test)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        make_task(data, n)
        jobs = [lambda w: ours(data, w, args.epochs, n)]
        if args.official is not None:
            repo = args.official.resolve()
            jobs.append(lambda w: official(data, w, args.epochs, n, repo, args.official_pythonpath))
        for i in range(args.repeat):
            for job in jobs if i % 2 == 0 else jobs[::-1]:
                rows.append(job(Path(tmp) / f"run{len(rows)}"))
                print(f"repeat {i + 1}: " + ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                                                      for k, v in rows[-1].items()), flush=True)
    med = {code: {k: statistics.median(r[k] for r in rows if r["code"] == code)
                  for k in next(r for r in rows if r["code"] == code) if k != "code"}
           for code in dict.fromkeys(r["code"] for r in rows)}
    ref, ref_name = med.get("official", OFFICIAL), "official, same runs" if "official" in med else \
        "official, issue 16's measurement"
    o = med["ours"]
    print(f"\nmedians of {args.repeat} runs ({args.epochs} epochs), ours ({ref_name}):")
    print(f"  wall {o['wall_s']:.1f} s ({ref['wall_s']:.1f} s: {o['wall_s'] / ref['wall_s']:.2f}x)")
    print(f"  training {o['train_images_per_s']:.1f} images/s ({ref['train_images_per_s']:.1f}: "
          f"{o['train_images_per_s'] / ref['train_images_per_s']:.2f}x); evaluation {o['eval_images_per_s']:.1f} "
          f"images/s" + (f" ({ref['eval_images_per_s']:.1f})" if "eval_images_per_s" in ref else ""))
    print(f"  peak resident memory of the process {o['process_peak_rss_gib']:.2f} GiB ({ref['process_peak_rss_gib']:.2f} GiB); our run's own peak "
          f"{o['run_peak_mb']:.0f} MB, up to the end of training {o['train_peak_mb']:.0f} MB")
    print(f"  outside training and evaluation {o['outside_train_eval_s']:.1f} s ({100 * o['outside_share']:.1f} % "
          f"of the wall; setup {o['setup_s']:.1f} s, deployed-model step {o['deploy_s']:.1f} s)"
          + (f" ({ref['outside_train_eval_s']:.1f} s, {100 * ref['outside_share']:.1f} %)" if "outside_share" in ref
             else ""))
    print(f"  final test top-1 {o['test_top1']:.2f}" + (f" ({ref['test_top1']:.2f})" if "test_top1" in ref else ""))
    with atomic_file(args.out / "bench_run.csv") as tmp_csv, open(tmp_csv, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        w.writeheader()
        w.writerows(rows)
    print(f"per-run figures: {args.out / 'bench_run.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
