"""What the mini tasks give without pretraining: a small CNN trained from scratch on each task's 800 images.

    python scripts/mini_baselines.py [--tasks digits,textures,...] [--epochs 30] [--seed 0]

The reference issue 34 set for the embedded backbone: pretrained full fine-tuning should beat this on
mini/digits, or the backbone has learned nothing a CNN could not learn from the task itself. The CNN is
the pretraining teacher's architecture (bench/pretrain.py: three 3 x 3 conv-BN-ReLU-maxpool stages,
32-64-128 channels), trained with the harness's loop (AdamW lr 3e-3, wd 0.05, batch 64, one epoch of
warm-up then per-step cosine), one thread, seed 0; it prints test top-1 per task (docs/results.md quotes it).
"""
import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main(argv=None) -> dict:
    from bench.data import mini

    tasks = [t for t in mini.TASKS if t != "upstream"]
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", default=",".join(tasks), help=f"comma-separated, of: {', '.join(tasks)}")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    chosen = args.tasks.split(",")
    if bad := [t for t in chosen if t not in tasks]:
        ap.error(f"unknown task(s) {', '.join(bad)}; valid: {', '.join(tasks)}")

    import torch
    from bench.config import TrainConfig
    from bench.pretrain import mini_tensors, teacher_cnn
    from bench.train.evaluate import top1
    from bench.train.loop import train

    torch.set_num_threads(1)
    device = torch.device("cpu")
    out = {}
    for task in chosen:
        data = {split: mini_tensors(task, split) for split in ("train", "test")}
        torch.manual_seed(args.seed)
        model = teacher_cnn(mini.TASKS[task].num_classes)
        cfg = TrainConfig(epochs=args.epochs, batch_size=64, lr=3e-3, weight_decay=0.05, warmup_epochs=1.0,
                          progress=False)
        t0 = time.perf_counter()
        train(model, data["train"], cfg, num_classes=mini.TASKS[task].num_classes, seed=args.seed, device=device)
        out[task] = top1(model, data["test"], 500, device, progress=False)
        print(f"mini/{task}: small CNN from scratch, {args.epochs} epochs: test top-1 {out[task]:.1f}% "
              f"({len(data['test'])} images, {time.perf_counter() - t0:.0f} s)", flush=True)
    return out


if __name__ == "__main__":
    main()
