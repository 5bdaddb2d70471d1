"""Pretrain the mini benchmark's tiny backbone on the procedurally generated upstream task.

    python -m bench.pretrain [--out weights/vit_tiny_mini.safetensors] [--images 40000] [--epochs 7]

With random weights every PEFT method looks broken, so the mini benchmark needs a backbone
that has learned something transferable. The upstream task (64 classes: 8 shapes x 8 fill
patterns, see bench/data/mini.py) shares low-level statistics with the downstream tasks but
none of their labels. Deterministic for a fixed seed and thread count; about 3-4 minutes on
2 CPU cores. Writes the weights (safetensors) and a JSON sidecar with the measured
upstream accuracy.
"""
import argparse
import json
import time
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch.utils.data import TensorDataset

from bench import PROJECT_ROOT
from bench.config import TrainConfig, backbone_config
from bench.data import mini
from bench.models import build_backbone
from bench.records import atomic_file
from bench.train.evaluate import top1
from bench.train.loop import train



def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(PROJECT_ROOT / "weights" / "vit_tiny_mini.safetensors"))
    ap.add_argument("--images", type=int, default=40_000, help="upstream training images")
    ap.add_argument("--val-images", type=int, default=2_000)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)

    cfg = backbone_config("vit_tiny_mini")
    cfg.pretrained = False
    torch.manual_seed(args.seed)
    model = build_backbone(cfg, num_classes=mini.TASKS["upstream"].num_classes)

    t0 = time.perf_counter()
    sets = {}
    for split, n in (("train", args.images), ("val", args.val_images)):
        x, y = mini.generate("upstream", split, data_seed=args.seed, n=n)
        sets[split] = TensorDataset((torch.from_numpy(x).float() / 255 - 0.5) / 0.5, torch.from_numpy(y))
    gen_s = time.perf_counter() - t0

    tcfg = TrainConfig(epochs=args.epochs, batch_size=128, lr=2e-3, weight_decay=0.05,
                       warmup_epochs=0.05 * args.epochs, progress=not args.no_progress)
    device = torch.device("cpu")
    out = train(model, sets["train"], tcfg, num_classes=mini.TASKS["upstream"].num_classes, seed=args.seed,
                device=device, desc="pretrain",
                on_epoch=lambda e, m: {"val_top1": top1(m, sets["val"], 500, device, progress=False)})
    for h in out["history"]:
        print(f"epoch {h['epoch']}: train loss {h['train_loss']:.3f}  upstream val top-1 {h['val_top1']:.1f}%")

    path = Path(args.out)
    with atomic_file(path) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp),
                  metadata={"arch": cfg.arch, "upstream_classes": "64"})
    summary = {"weights": path.name, "arch": cfg.arch, "kwargs": cfg.kwargs, "upstream_images": args.images,
               "epochs": args.epochs, "seed": args.seed, "threads": torch.get_num_threads(),
               "history": out["history"], "generate_seconds": round(gen_s, 1),
               "train_seconds": round(out["train_seconds"], 1), "torch": torch.__version__}
    path.with_suffix(".json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"wrote {path} (upstream val top-1 {out['history'][-1]['val_top1']:.1f}%, "
          f"{gen_s:.0f}s generation + {out['train_seconds']:.0f}s training)")
    return summary


if __name__ == "__main__":
    main()
