"""Measure what the decode cache saves on a VTAB-1k-shaped split: `python scripts/bench_data_cache.py [--n 1000]`.

Builds a synthetic NOAH-format task in a temporary folder (N JPEGs of 500 x 375 pixels, the
size of a typical natural image, with smooth random content), then times: building the disk
cache (decode + bicubic squash to 224 + write), reopening it, one epoch read from the cache,
and one epoch decoded from the JPEGs (what every epoch costs with `dataset.cache=none`). Epochs
are read the way the training loop reads them (`bench.train.loop.batches`, batch 64): a small cached
split is one float tensor sliced per batch, anything else goes through a DataLoader.
Then one augmented epoch (random-resized crop + flip, `train_aug=simple`) both ways: per image
in the loader (PIL, from the variable-size cache with the shorter side at 448 px) and per batch
(`dataset.batch_aug`: roi_align crops of the fixed-size cache), on the CPU and, when there is
one, on the GPU with the split held there (`train.data_on_device`).
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
import torch  # noqa: E402

from bench.config import DatasetConfig  # noqa: E402
from bench.data import load_split  # noqa: E402
from bench.train.loop import batches  # noqa: E402


def build(root: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    lines = []
    (root / "images" / "train800val200").mkdir(parents=True)
    for i in range(n):
        small = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)  # upsampled: smooth, JPEG-typical content
        Image.fromarray(small).resize((500, 375), Image.BICUBIC).save(root / f"images/train800val200/{i:06d}.jpg",
                                                                       quality=90)
        lines.append(f"images/train800val200/{i:06d}.jpg {i % 10}")
    (root / "train800val200.txt").write_text("\n".join(lines) + "\n")


def epoch(ds, device=torch.device("cpu")) -> float:
    t0 = time.perf_counter()
    for x, _ in batches(ds, 64, generator=torch.Generator().manual_seed(0)):
        x.to(device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1000, help="images (default 1000, VTAB-1k's train800val200)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        build(tmp / "vtab-1k" / "synthetic", args.n)
        print(f"built {args.n} JPEGs (500x375) in {time.perf_counter() - t0:.1f}s")
        cfg = dict(name="vtab/synthetic", benchmark="vtab", task="synthetic", group="natural", num_classes=10,
                   image_size=224, format="vtab_txt", root="vtab-1k/synthetic", data_root=str(tmp),
                   cache_dir=str(tmp / "cache"), splits={"trainval": args.n}, num_workers=0)
        mean = std = (0.5, 0.5, 0.5)
        rows = []
        t0 = time.perf_counter()
        ds = load_split(DatasetConfig(**cfg, cache="disk"), "trainval", mean, std)
        rows.append(("build the disk cache (decode, squash to 224, write), 1 thread", time.perf_counter() - t0))
        t0 = time.perf_counter()
        ds = load_split(DatasetConfig(**cfg, cache="disk"), "trainval", mean, std)
        rows.append(("reopen the cache and normalise into one float tensor (a later run)", time.perf_counter() - t0))
        rows.append(("one epoch from the cache", epoch(ds)))
        plain = load_split(DatasetConfig(**cfg, cache="none"), "trainval", mean, std)
        rows.append(("one epoch decoding the JPEGs (cache=none)", epoch(plain)))
        aug = DatasetConfig(**cfg, cache="disk", train_aug="simple", cache_short_side=448)
        per_image = load_split(aug, "trainval", mean, std, train=True)
        epoch(per_image)  # builds the 448-px cache: not timed
        rows.append(("one augmented epoch, per image (PIL crop + flip from the 448-px cache)", epoch(per_image)))
        per_batch = load_split(DatasetConfig(**cfg, cache="disk", train_aug="simple", batch_aug=True), "trainval",
                               mean, std, train=True)
        rows.append(("one augmented epoch, per batch (batch_aug, roi_align on the CPU)", epoch(per_batch)))
        if torch.cuda.is_available():
            gpu = torch.device("cuda")
            on_gpu = per_batch.to(gpu)
            epoch(on_gpu, gpu)  # CUDA kernels load: not timed
            rows.append((f"one augmented epoch, per batch, split on the GPU ({torch.cuda.get_device_name()})",
                         epoch(on_gpu, gpu)))
            rows.append(("one augmented epoch, per image, batches copied to the GPU", epoch(per_image, gpu)))
        size = sum(f.stat().st_size for f in (tmp / "cache").rglob("*") if f.is_file())
        print(f"cache on disk: {size / 2**20:.0f} MiB for {args.n} images; cpus: {os.cpu_count()}, "
              f"torch threads: {torch.get_num_threads()}")
        for what, s in rows:
            print(f"{s:8.2f} s  {what}")


if __name__ == "__main__":
    main()
