"""Pretrain the mini benchmark's tiny backbone on the procedurally generated upstream task.

    python -m bench.pretrain [--out weights/vit_tiny_mini.safetensors] [--images 40000] [--epochs 20]
    python -m bench.pretrain --check [--check-epochs K]   # reproduce the shipped weights' hashes

With random weights every PEFT method looks broken, so the mini benchmark needs a backbone
that has learned something transferable. The upstream task (bench/data/mini.py: shapes x fill
patterns, and pen-stroke glyphs) shares low-level statistics with the downstream tasks but none of
their labels. It runs on one thread (`--threads`), where it is deterministic: the weights are the
same bit for bit on every run on the same machine type. Writes the weights (safetensors) and a
JSON sidecar with the measured upstream accuracy and the sha256 of the weights after every epoch,
which `--check` compares a rerun against (after the first K epochs, or all of them).
"""
import argparse
import hashlib
import json
import sys
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

SHIPPED = PROJECT_ROOT / "weights" / "vit_tiny_mini.safetensors"


def weights_sha256(model: torch.nn.Module) -> str:
    """sha256 over the state dict's names, shapes, dtypes and bytes, in order (what safetensors stores)."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        t = t.detach().contiguous().cpu()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


class _Reproduced(Exception):
    """--check: the first K epochs are done and their hashes compared."""


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(SHIPPED))
    ap.add_argument("--images", type=int, default=40_000, help="upstream training images")
    ap.add_argument("--val-images", type=int, default=2_000)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: bit-for-bit reproducible)")
    ap.add_argument("--check", action="store_true",
                    help="retrain with the shipped sidecar's settings and compare each epoch's weights hash; writes nothing")
    ap.add_argument("--check-epochs", type=int, default=0, help="--check: stop after this many epochs (0: all)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    expected = None
    if args.check:
        expected = json.loads(Path(args.out).with_suffix(".json").read_text())
        args.images, args.val_images = expected["upstream_images"], expected["val_images"]
        args.epochs, args.seed, args.threads = expected["epochs"], expected["seed"], expected["threads"]

    torch.set_num_threads(args.threads)
    cfg = backbone_config("vit_tiny_mini")
    cfg.pretrained = False
    num_classes = mini.TASKS["upstream"].num_classes
    torch.manual_seed(args.seed)
    model = build_backbone(cfg, num_classes=num_classes)

    t0 = time.perf_counter()
    sets = {}
    for split, n in (("train", args.images), ("val", args.val_images)):
        x, y = mini.generate("upstream", split, data_seed=args.seed, n=n)
        sets[split] = TensorDataset((torch.from_numpy(x).float() / 255 - 0.5) / 0.5, torch.from_numpy(y))
    gen_s = time.perf_counter() - t0

    tcfg = TrainConfig(epochs=args.epochs, batch_size=128, lr=2e-3, weight_decay=0.05,
                       warmup_epochs=0.05 * args.epochs, progress=not args.no_progress)
    device = torch.device("cpu")

    def on_epoch(epoch: int, m: torch.nn.Module) -> dict:
        entry = {"val_top1": top1(m, sets["val"], 500, device, progress=False), "sha256": weights_sha256(m)}
        if expected is not None:
            want = expected["history"][epoch - 1]["sha256"]
            same = entry["sha256"] == want
            print(f"epoch {epoch}: weights sha256 {entry['sha256'][:16]} {'==' if same else '!='} shipped {want[:16]}",
                  flush=True)
            if not same:
                raise SystemExit(f"pretrain --check: epoch {epoch}'s weights differ from {args.out}'s sidecar")
            if epoch == args.check_epochs:
                raise _Reproduced
        return entry

    try:
        out = train(model, sets["train"], tcfg, num_classes=num_classes, seed=args.seed, device=device,
                    desc="pretrain", on_epoch=on_epoch)
    except _Reproduced:
        out = None
    if expected is not None:
        print(f"pretrain --check: the first {args.check_epochs or args.epochs} epochs reproduce {args.out}")
        return expected
    for h in out["history"]:
        print(f"epoch {h['epoch']}: train loss {h['train_loss']:.3f}  upstream val top-1 {h['val_top1']:.1f}%")

    path = Path(args.out)
    with atomic_file(path) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp),
                  metadata={"arch": cfg.arch, "upstream_classes": str(num_classes)})
    summary = {"weights": path.name, "arch": cfg.arch, "kwargs": cfg.kwargs, "upstream_classes": num_classes,
               "upstream_images": args.images, "val_images": args.val_images, "epochs": args.epochs,
               "seed": args.seed, "threads": args.threads, "history": out["history"],
               "generate_seconds": round(gen_s, 1), "train_seconds": round(out["train_seconds"], 1),
               "torch": torch.__version__}
    with atomic_file(path.with_suffix(".json")) as tmp:
        Path(tmp).write_text(json.dumps(summary, indent=1) + "\n")
    print(f"wrote {path} (upstream val top-1 {out['history'][-1]['val_top1']:.1f}%, "
          f"{gen_s:.0f}s generation + {out['train_seconds']:.0f}s training)")
    return summary


if __name__ == "__main__":
    sys.exit(main() and 0)
