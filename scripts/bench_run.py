"""A whole run, side by side with the official SSF code's figures (a benchmark, not a test).

    python scripts/bench_run.py [--repeat 3] [--epochs 3] [--train 1000] [--test 300] [--out results/bench]

The job (issue 16): SSF on ViT-Ti/16 (`vit_tiny_patch16_224`, random init) at 224 px, a
VTAB-1k-shaped task (1,000 train800val200 images, 300 test images scored after every epoch,
47 classes, 16x16 JPEGs squashed to 224), batch 32, 3 epochs (1 warm-up), AdamW lr 5e-3,
wd 5e-5, 2 threads, 2 loader workers, fp32, `protocol=paper`. The images are generated here;
each repeat is a fresh `launch.py` process with an empty cache and results folder, so the wall
time includes interpreter start, imports, cache building and the deployed-model step.

Prints, as medians over the repeats: the process's wall time and peak resident memory (its own
rusage), training images/s and evaluation images/s (from the record: optimizer steps, and
evaluation passes), the peak memory up to the end of training and of the whole run (the run's
own high-water mark), and the time outside training and evaluation (wall minus both) with its
share of the wall. The official code's figures on the same job and machine kind, measured once
by whoever filed issue 16 (not by this script): 243 s wall, 15.2 training images/s, 3.26 GiB peak.
"""
import argparse
import csv
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.records import atomic_file  # noqa: E402

OFFICIAL = {"wall_s": 243.0, "train_images_per_s": 15.2, "peak_rss_gib": 3.26}  # issue 16, official SSF train.py
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


def one_run(data: Path, work: Path, epochs: int, n: dict[str, int]) -> dict:
    """One fresh `launch.py` process on the job; its wall, its own peak RSS, and its record."""
    args = [sys.executable, str(ROOT / "launch.py"), "method=ssf", "dataset=vtab/dtd", "backbone=vit_ti16",
            "protocol=paper", f"train.epochs={epochs}", "train.warmup_epochs=1", "train.cooldown_epochs=0",
            "train.batch_size=32", "train.lr=5e-3", "train.weight_decay=5e-5", "train.num_threads=2",
            "dataset.num_workers=2", "train.amp=off", "train.progress=false", "train.device=cpu",
            f"dataset.splits={{train:{n['train800']},val:{n['val200']},trainval:{n['train800val200']},test:{n['test']}}}",
            f"results_dir={work / 'results'}"]
    env = dict(os.environ, BENCH_DATA_ROOT=str(data), BENCH_CACHE_DIR=str(work / "cache"), HF_HUB_OFFLINE="1",
               OMP_NUM_THREADS="2")
    t0 = time.perf_counter()
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if status != 0:
        sys.stderr.write(output[-3000:])
        raise SystemExit(f"error: the run failed (status {status})")
    (path,) = (work / "results").rglob("record.json")
    rec = json.loads(path.read_text())
    eval_images = n["test"] * len(rec["history"])  # paper protocol: test scored after every epoch
    train_s, eval_s = rec["train_time_s"], rec["eval_time_s"]
    return {"wall_s": wall, "process_peak_rss_gib": usage.ru_maxrss / 2**20,
            "train_images_per_s": rec["train_images_per_s"], "eval_images_per_s": eval_images / eval_s,
            "train_s": train_s, "eval_s": eval_s, "setup_s": rec["setup_time_s"], "deploy_s": rec["deploy_time_s"],
            "outside_train_eval_s": wall - train_s - eval_s, "outside_share": (wall - train_s - eval_s) / wall,
            "train_peak_mb": rec["train_peak_memory_mb"], "run_peak_mb": rec["peak_memory_mb"],
            "test_top1": rec["test_top1"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--train", type=int, default=1000, help="train800val200 images (default 1,000, the job's)")
    ap.add_argument("--test", type=int, default=300, help="test images (default 300, the job's)")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "bench", help="where bench_run.csv goes")
    args = ap.parse_args(argv)
    rows, n = [], sizes(args.train, args.test)
    with tempfile.TemporaryDirectory() as tmp:
        make_task(Path(tmp) / "data", n)
        for i in range(args.repeat):
            rows.append(one_run(Path(tmp) / "data", Path(tmp) / f"run{i}", args.epochs, n))
            print(f"run {i + 1}: " + ", ".join(f"{k} {v:.3g}" for k, v in rows[-1].items()), flush=True)
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    print(f"\nmedians of {args.repeat} runs ({args.epochs} epochs):")
    print(f"  wall {med['wall_s']:.1f} s (official {OFFICIAL['wall_s']:.0f} s: {med['wall_s'] / OFFICIAL['wall_s']:.2f}x)")
    print(f"  training {med['train_images_per_s']:.1f} images/s (official {OFFICIAL['train_images_per_s']}: "
          f"{med['train_images_per_s'] / OFFICIAL['train_images_per_s']:.2f}x); evaluation {med['eval_images_per_s']:.1f} images/s")
    print(f"  peak resident memory of the process {med['process_peak_rss_gib']:.2f} GiB (official "
          f"{OFFICIAL['peak_rss_gib']} GiB); the run's own peak {med['run_peak_mb']:.0f} MB, up to the end of "
          f"training {med['train_peak_mb']:.0f} MB")
    print(f"  outside training and evaluation {med['outside_train_eval_s']:.1f} s ({100 * med['outside_share']:.1f} % "
          f"of the wall; setup {med['setup_s']:.1f} s, deployed-model step {med['deploy_s']:.1f} s)")
    with atomic_file(args.out / "bench_run.csv") as tmp_csv, open(tmp_csv, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"per-run figures: {args.out / 'bench_run.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
