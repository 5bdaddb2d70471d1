"""Time analyze.py on N synthetic run records (a benchmark, not a test; default 10,000).

    python scripts/bench_analyze.py [--n 10000] [--repeat 3] [--dir DIR] [--no-predictions] [-- ANALYZE_ARGS...]

Writes N records shaped like bench/run/runner.py's (nested config, environment and per-epoch history
included, so the files are as large as real ones) over VTAB-1k, FGVC, CIFAR-100, ImageNet
(with robustness fields) and the mini benchmark, several backbones, methods, variants, both
protocols and several seeds, with some failed, unsupported and truncated records, and beside each
completed one a predictions.npz of the test split's real size (`TEST_IMAGES`; a shared per-image
difficulty per backbone and dataset makes the runs' errors correlate as real ones do). Then runs
`python analyze.py DIR --out DIR/leaderboard` as a fresh process `--repeat` times (interpreter
start and imports included, as a user would see it) and prints each time and the median. The
first run draws every figure and computes every statistic, reading every predictions.npz (no
index of them yet); the second does the same with the index of prediction summaries the first
wrote (DIR/.predictions_index.npz: the first analysis after a sweep added or changed runs); later
ones find the figures' and statistics' inputs unchanged and read them back (analyze.py's
OUT/.figures.json and statistics cache), so the script prints those first two times apart.
The accuracies are random: the numbers mean nothing, only the time does. Target: <= 3 s on
2 CPU cores.
"""
import argparse
import itertools
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.analysis.benchmarks import BENCHMARK_GROUPS, BENCHMARK_TASKS  # noqa: E402
from bench.analysis.prediction_index import INDEX  # noqa: E402
from bench.config import config_hash  # noqa: E402
from bench.predictions import arrays, save  # noqa: E402
from bench.records import PREDICTIONS, RECORD, SCHEMA, run_dir  # noqa: E402

BACKBONES = {  # name -> (timm arch, benchmarks it runs)
    "vit_base_augreg": ("vit_base_patch16_224.augreg_in21k", ("vtab", "fgvc", "cifar100", "imagenet")),
    "vit_base_orig": ("vit_base_patch16_224.orig_in21k", ("vtab", "fgvc", "cifar100", "imagenet")),
    "swin_base": ("swin_base_patch4_window7_224.ms_in22k", ("vtab", "fgvc", "cifar100", "imagenet")),
    "vit_tiny_mini": ("vit_tiny_patch16_224", ("mini",)),
}
METHODS = {  # label -> (method, variant, tunable params without head, inference extra params)
    "full": ("full", "", 85_800_000, 0), "linear": ("linear", "", 0, 0), "bias": ("bias", "", 100_000, 0),
    "adapter": ("adapter", "", 160_000, 160_000), "vpt_shallow": ("vpt_shallow", "", 80_000, 80_000),
    "vpt": ("vpt", "", 530_000, 530_000), "lora": ("lora", "", 290_000, 0), "ssf": ("ssf", "", 200_000, 0),
    "ssf-lr0.01": ("ssf", "lr0.01", 200_000, 0), "lora-r8": ("lora", "r8", 580_000, 0),
}
EPOCHS = {"vtab": 100, "fgvc": 100, "cifar100": 100, "imagenet": 30, "mini": 20}
# Test split sizes (images): VTAB-1k's full test sets, FGVC's, CIFAR-100, ImageNet val, the mini tasks.
TEST_IMAGES = {
    "vtab/cifar": 10_000, "vtab/caltech101": 6_084, "vtab/dtd": 1_880, "vtab/oxford_flowers102": 6_149,
    "vtab/oxford_iiit_pet": 3_669, "vtab/svhn": 26_032, "vtab/sun397": 21_750, "vtab/patch_camelyon": 32_768,
    "vtab/eurosat": 5_400, "vtab/resisc45": 6_300, "vtab/diabetic_retinopathy": 42_670, "vtab/clevr_count": 15_000,
    "vtab/clevr_dist": 15_000, "vtab/dmlab": 22_735, "vtab/kitti": 711, "vtab/dsprites_loc": 73_728,
    "vtab/dsprites_ori": 73_728, "vtab/smallnorb_azi": 12_150, "vtab/smallnorb_ele": 12_150, "fgvc/cub": 5_794,
    "fgvc/nabirds": 24_633, "fgvc/oxford_flowers": 6_149, "fgvc/stanford_dogs": 8_580, "fgvc/stanford_cars": 8_041,
    "cifar100/cifar100": 10_000, "imagenet/imagenet": 50_000,
}


def _group(benchmark: str, dataset: str) -> str | None:
    return next((g for g, ts in BENCHMARK_GROUPS.get(benchmark, {}).items() if dataset in ts), None)


def synthetic_record(rng: random.Random, backbone: str, dataset: str, label: str, protocol: str, seed: int) -> dict:
    """One record as bench/run/runner.py writes it; random but plausible values."""
    benchmark = dataset.split("/")[0]
    arch = BACKBONES[backbone][0]
    method, variant, extra, infer_extra = METHODS[label]
    rec = {
        "schema": SCHEMA, "status": "running", "error": None, "method": method, "variant": variant,
        "dataset": dataset, "benchmark": benchmark, "group": _group(benchmark, dataset), "backbone": backbone,
        "backbone_arch": arch, "protocol": protocol, "seed": seed,
        "config": {"method": method, "dataset": {"name": dataset, "benchmark": benchmark, "num_classes": 100},
                   "backbone": {"name": backbone, "arch": arch, "pretrained": True, "kwargs": {}},
                   "train": {"epochs": EPOCHS[benchmark], "batch_size": 64, "lr": 0.005, "weight_decay": 5e-5,
                             "warmup_epochs": 10.0, "label_smoothing": 0.0}, "method_args": {},
                   "protocol": protocol, "seed": seed, "variant": variant, "results_dir": "results"},
        "git": {"commit": "0" * 40, "dirty": False},
        "env": {"python": "3.11.7", "torch": "2.14.1", "timm": "1.0.31", "peft": "0.21.2", "numpy": "2.4.6"},
        "hardware": {"device": "cuda", "gpu": "NVIDIA H100", "torch_threads": 16, "host": "node"},
        "started_at": "2026-01-01T00:00:00+00:00",
    }
    rec["config_hash"] = config_hash(rec["config"])
    if method == "vpt" and backbone.startswith("swin"):
        rec.update(status="unsupported", error={"type": "Unsupported", "message": "prompts need a ViT"})
    elif rng.random() < 0.02:
        rec.update(status="failed", error={"type": "RuntimeError", "message": "CUDA out of memory",
                                           "traceback": "Traceback (most recent call last):\n  ...\n" * 5})
    else:
        head = 100 * 768
        acc = rng.uniform(20, 95)
        monitor = "test" if protocol == "paper" else "val"
        history = [{"epoch": e + 1, "train_loss": rng.uniform(0.1, 3), "lr": 1e-3,
                    f"{monitor}_top1": acc - rng.random()} for e in range(EPOCHS[benchmark])]
        rec.update(tunable_params=extra + head + (0 if method != "full" else 0), tunable_params_no_head=extra,
                   total_params=86_000_000 + infer_extra, test_top1=acc, status="completed", history=history,
                   train_time_s=600.0, train_images_per_s=rng.uniform(100, 900), peak_memory_mb=rng.uniform(3e3, 2e4),
                   peak_memory_kind="cuda_max_allocated", inference_extra_params=infer_extra,
                   inference_images_per_s_ratio=1.0 if infer_extra == 0 else rng.uniform(0.8, 0.98))
        if protocol == "paper":
            rec["test_top1_best_epoch_optimistic"] = acc + rng.random()
        else:
            rec["val_top1"] = acc + rng.uniform(-3, 3)
        if benchmark == "imagenet":
            rec["robustness"] = {"imagenet_a_top1": rng.uniform(5, 40), "imagenet_r_top1": rng.uniform(30, 60),
                                 "imagenet_c_mce": rng.uniform(40, 70)}
    rec.update(wall_time_s=700.0, finished_at="2026-01-01T01:00:00+00:00")
    return rec


def write_predictions(folder: Path, rec: dict, difficulty) -> None:
    """predictions.npz for a completed record: correct where the image's difficulty is below the accuracy;
    the record's test_top1 becomes that file's accuracy (analyze.py checks they agree)."""
    import numpy as np

    n = len(difficulty)
    target = np.arange(n) % 100
    correct = difficulty < rec["test_top1"] / 100
    pred = np.where(correct, target, (target + 1) % 100)
    fingerprint = f"sha256:{rec['dataset']}-test-{n}"
    rec.update(test_top1=100.0 * float(correct.mean()), test_fingerprint=fingerprint, predictions=PREDICTIONS,
               predictions_images=n)
    save(folder / PREDICTIONS, arrays(pred, target, fingerprint, num_classes=100))  # the runs' own writer


def generate(root: Path, n: int, seed: int = 0, predictions: bool = True) -> int:
    """Write n records under root (plus n // 2000 + 1 truncated ones); returns how many were written."""
    import numpy as np

    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    difficulty: dict = {}  # (backbone, dataset) -> per-image difficulty in [0, 1), shared by its runs
    cells = [(b, d, lab, p) for b, (_, benches) in BACKBONES.items() for bench in benches
             for d in BENCHMARK_TASKS[bench] for lab in METHODS for p in ("val", "paper")]
    written = 0
    for s in itertools.count():
        for b, d, lab, p in cells:
            if written == n:
                break
            method, variant = METHODS[lab][:2]
            path = run_dir(root, b, d, method, variant, p, s) / RECORD
            path.parent.mkdir(parents=True, exist_ok=True)
            rec = synthetic_record(rng, b, d, lab, p, s)
            if predictions and rec["status"] == "completed":
                if (b, d) not in difficulty:
                    difficulty[(b, d)] = nrng.random(TEST_IMAGES.get(d, 1000))
                # each seed's own noise on top of the shared difficulty: seeds disagree on some images
                noisy = np.clip(difficulty[(b, d)] + nrng.normal(0, 0.05, len(difficulty[(b, d)])), 0, 1)
                write_predictions(path.parent, rec, noisy)
            path.write_text(json.dumps(rec, indent=1) + "\n")  # no fsync: speed
            written += 1
        else:
            continue
        break
    for k in range(n // 2000 + 1):  # truncated records: analyze.py must skip and count them
        bad = root / "runs" / "corrupt" / f"r{k}" / RECORD
        bad.parent.mkdir(parents=True, exist_ok=True)
        bad.write_text('{"schema": 1, "status": "compl')
    return written


def _busy_cpu_s() -> float:
    """CPU seconds the whole machine has spent busy (Linux /proc/stat; NaN elsewhere)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return float("nan")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10_000, help="number of records (default 10,000)")
    ap.add_argument("--repeat", type=int, default=3, help="timed analyze.py runs (default 3)")
    ap.add_argument("--dir", type=Path, default=None,
                    help="folder for the records; reused if it already holds records (default: a temporary one)")
    ap.add_argument("--no-predictions", action="store_true",
                    help="records without predictions.npz (as before per-image predictions existed)")
    ap.add_argument("--analyze", type=Path, default=ROOT / "analyze.py",
                    help="the analyze.py to time (default: this checkout's; another checkout's to compare)")
    ap.add_argument("analyze_args", nargs="*", help="extra arguments passed to analyze.py (after --)")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        root = args.dir or Path(tmp)
        if not any(root.glob("runs/*")):
            t = time.perf_counter()
            n = generate(root, args.n, predictions=not args.no_predictions)
            print(f"generated {n} records in {root} ({time.perf_counter() - t:.1f} s)")
        out = root / "leaderboard"
        cmd = [sys.executable, str(args.analyze), str(root), "--out", str(out), "--quiet", *args.analyze_args]
        print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs (other work skews the times)")
        times, cpus, others = [], [], []
        for k in range(args.repeat):
            if k < 2:  # the first two timed runs draw every figure and compute every table's statistics ...
                (out / ".figures.json").unlink(missing_ok=True)
                for cache in out.glob(".stats*"):
                    shutil.rmtree(cache) if cache.is_dir() else cache.unlink()
            if k == 0:  # ... the first also reads every predictions file
                (root / INDEX).unlink(missing_ok=True)
            before, busy = resource.getrusage(resource.RUSAGE_CHILDREN), _busy_cpu_s()
            t = time.perf_counter()
            proc = subprocess.run(cmd, cwd=args.analyze.parent, capture_output=True, text=True)
            times.append(time.perf_counter() - t)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
            others.append(_busy_cpu_s() - busy - cpus[-1])
            if proc.returncode != 0:
                print(proc.stdout[-2000:], proc.stderr[-3000:], sep="\n")
                return proc.returncode
        print(proc.stdout.strip().splitlines()[0] if proc.stdout.strip() else "")
        print(f"analyze.py wall: {' '.join(f'{t:.2f}' for t in times)} s; median {statistics.median(times):.2f} s "
              f"(target <= 3 s on 2 CPU cores); its CPU (all processes): median {statistics.median(cpus):.2f} s; "
              f"other processes' CPU meanwhile: {' '.join(f'{o:.1f}' for o in others)} s; "
              f"{len(list(out.iterdir()))} files written")
        firsts = ("first run (every figure drawn, every statistic computed, every predictions file read)",
                  "first run with the index of predictions (every figure drawn, every statistic computed)")
        for label, t, c in zip(firsts, times, cpus):
            print(f"{label}: {t:.2f} s wall, {c:.2f} s CPU")
        if len(times) > 2:
            print(f"later runs (figures and statistics unchanged, read back): median {statistics.median(times[2:]):.2f} s "
                  f"wall, {statistics.median(cpus[2:]):.2f} s CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
