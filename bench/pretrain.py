"""Pretrain the mini benchmark's tiny backbone on the procedurally generated upstream task.

    python -m bench.pretrain [--out weights/vit_tiny_mini.safetensors]
    python -m bench.pretrain --check [--check-epochs K]   # retrain and compare with the shipped weights' hashes

With random weights every PEFT method looks broken, so the mini benchmark needs a backbone that has
learned something transferable. The upstream task (bench/data/mini.py: 64 shape x fill classes, the
fills structuring the object at its own scale, and 64 pen-stroke glyph classes) shares low-level
statistics with the downstream tasks but none of their labels.

Why a teacher: the tiny ViT learns this task slowly from its labels alone (no locality built in; the
earlier shapes-only backbone reached 21.4 % upstream after 20 epochs, and on glyphs alone it stayed at
chance), and what it learned transferred little (mini/digits full fine-tuning 24.3 %, below a small
CNN trained from scratch on the same 800 images). A three-layer CNN learns the same task in three
epochs, so it is trained first and the ViT is distilled from it (docs/datasets.md has the measurements):
the labels (cross-entropy), the teacher's logits (KL divergence, as DeiT's soft distillation) and,
per 8 x 8 patch, the teacher's feature maps (FitNets-style hints: the second block's patch tokens
regress the teacher's 8 x 8 x 64 map, two by two cells per patch, and the final patch tokens its
4 x 4 x 128 map, each standardised per channel, through linear maps that are dropped afterwards).
Only the ViT (with its 128-class head) is written.

It runs on one thread (`--threads`), where it is deterministic: the weights are the same bit for bit
on every run on the same kind of machine. The JSON sidecar records the settings, the measured upstream
accuracy and the sha256 of the teacher's and the ViT's weights after every epoch, which `--check`
compares a rerun against (after the first K epochs, teacher first, or all of them).
"""
import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file
from torch.utils.data import TensorDataset
from tqdm.auto import tqdm

from bench import PROJECT_ROOT
from bench.config import TrainConfig, backbone_config
from bench.data import mini
from bench.data.batching import batches, n_batches
from bench.models import build_backbone
from bench.records import atomic_file
from bench.train.evaluate import top1
from bench.train.loop import train
from bench.train.optim import make_optimizer, make_schedule

SHIPPED = PROJECT_ROOT / "weights" / "vit_tiny_mini.safetensors"
DEVICE = torch.device("cpu")


def weights_sha256(model: nn.Module) -> str:
    """sha256 over the state dict's names, shapes, dtypes and bytes, in order (what safetensors stores)."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        t = t.detach().contiguous().cpu()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")  # 0-d: BN's batch count
    return h.hexdigest()


def mini_tensors(task: str, split: str, seed: int = 0, n: int | None = None) -> TensorDataset:
    """One generated mini split as a TensorDataset: images normalised as the mini backbone's (x / 255 - 0.5) / 0.5."""
    x, y = mini.generate(task, split, data_seed=seed, n=n)
    return TensorDataset((torch.from_numpy(x).float() / 255 - 0.5) / 0.5, torch.from_numpy(y))


def teacher_cnn(num_classes: int, width: int = 32) -> nn.Sequential:
    """Three conv-BN-ReLU-maxpool stages (32 -> 16 -> 8 -> 4 px), global average pool, linear head.

    Indices: [0:8] gives the 8 x 8 x 2w map, [8:12] the 4 x 4 x 4w map, [12:] the logits.
    """
    def stage(c_in, c_out):
        return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2)]
    return nn.Sequential(*stage(3, width), *stage(width, 2 * width), *stage(2 * width, 4 * width),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * width, num_classes))


@torch.no_grad()
def teacher_targets(teacher: nn.Sequential, x: torch.Tensor, chunk: int = 1000) -> dict[str, torch.Tensor]:
    """The teacher's logits (N, C) and its two feature maps as per-patch vectors, standardised per channel:
    `mid` (N, 16, 256): the 8 x 8 x 64 map, each ViT patch's 2 x 2 cells; `last` (N, 16, 128): the 4 x 4 x 128 map."""
    teacher.eval()
    mid, last, logits = [], [], []
    for i in range(0, len(x), chunk):
        f2 = teacher[:8](x[i:i + chunk])  # (B, 64, 8, 8)
        f3 = teacher[8:12](f2)  # (B, 128, 4, 4)
        b, c = f2.shape[:2]
        mid.append(f2.reshape(b, c, 4, 2, 4, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, 16, 4 * c))  # patch-major
        last.append(f3.flatten(2).transpose(1, 2))
        logits.append(teacher[12:](f3))
    out = {"logits": torch.cat(logits)}
    for name, parts in (("mid", mid), ("last", last)):
        f = torch.cat(parts)
        out[name] = (f - f.mean((0, 1))) / (f.std((0, 1)) + 1e-3)
    return out


class Distiller(nn.Module):
    """The ViT plus the two linear maps from its tokens (96) to the teacher's per-patch features."""

    def __init__(self, vit: nn.Module, mid_dim: int, last_dim: int):
        super().__init__()
        self.vit = vit
        self.to_mid = nn.Linear(vit.embed_dim, mid_dim)
        self.to_last = nn.Linear(vit.embed_dim, last_dim)

    def loss(self, x: torch.Tensor, y: torch.Tensor, target: dict[str, torch.Tensor]) -> torch.Tensor:
        v = self.vit
        tokens = v.norm_pre(v._pos_embed(v.patch_embed(x)))  # (B, 1 + 16, 96), CLS first
        hint = 0.0
        for k, block in enumerate(v.blocks):
            tokens = block(tokens)
            if k == 1:  # the second block's patch tokens: the teacher's middle map
                hint = F.mse_loss(self.to_mid(tokens[:, 1:]), target["mid"])
        tokens = v.norm(tokens)
        logits = v.forward_head(tokens)
        return (F.cross_entropy(logits, y) + hint + F.mse_loss(self.to_last(tokens[:, 1:]), target["last"])
                + F.kl_div(F.log_softmax(logits, -1), F.softmax(target["logits"], -1), reduction="batchmean"))


class _Reproduced(Exception):
    """--check: the first K epochs are done and their hashes compared."""


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(SHIPPED))
    ap.add_argument("--images", type=int, default=40_000, help="upstream training images")
    ap.add_argument("--val-images", type=int, default=2_000)
    ap.add_argument("--teacher-epochs", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=8, help="the ViT's (distillation) epochs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: bit-for-bit reproducible)")
    ap.add_argument("--check", action="store_true",
                    help="retrain with the --out sidecar's settings and compare each epoch's weights hash; "
                         "writes nothing")
    ap.add_argument("--check-epochs", type=int, default=0,
                    help="--check: stop after this many epochs, the teacher's first (0: all)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    path = Path(args.out)
    expected = None
    if args.check:
        sidecar = path.with_suffix(".json")
        if not sidecar.is_file():
            raise SystemExit(f"pretrain --check: no sidecar {sidecar} to compare with")
        expected = json.loads(sidecar.read_text())
        for key in ("images", "val_images", "teacher_epochs", "epochs", "seed", "threads"):
            setattr(args, key, expected["settings"][key])
    torch.set_num_threads(args.threads)
    progress = not args.no_progress
    expected_hashes = [h["sha256"] for h in expected["teacher_history"] + expected["history"]] if expected else []
    done = [0]  # epochs finished, teacher's first

    def checked(entry: dict, model: nn.Module, stage: str, epoch: int) -> dict:
        entry["sha256"] = weights_sha256(model)
        if expected is not None:
            want = expected_hashes[done[0]]
            same = entry["sha256"] == want
            print(f"{stage} epoch {epoch}: weights sha256 {entry['sha256'][:16]} {'==' if same else '!='} "
                  f"shipped {want[:16]}", flush=True)
            if not same:
                raise SystemExit(f"pretrain --check: the {stage}'s epoch {epoch} differs from {path}'s sidecar")
        done[0] += 1
        if expected is not None and done[0] == args.check_epochs:
            raise _Reproduced
        return entry

    num_classes = mini.TASKS["upstream"].num_classes
    t0 = time.perf_counter()
    sets = {split: mini_tensors("upstream", split, args.seed, n)
            for split, n in (("train", args.images), ("val", args.val_images))}
    gen_s = time.perf_counter() - t0
    x_train, y_train = sets["train"].tensors

    def evaluate(model):
        return top1(model, sets["val"], 500, DEVICE, progress=False)

    try:
        # --- 1. the teacher: the harness's own loop, cross-entropy on the labels ----------------
        torch.manual_seed(args.seed)
        teacher = teacher_cnn(num_classes)
        tcfg = TrainConfig(epochs=args.teacher_epochs, batch_size=128, lr=3e-3, weight_decay=0.05,
                           warmup_epochs=0.1 * args.teacher_epochs, progress=progress, checkpoint_every=0)
        t_teacher = train(teacher, sets["train"], tcfg, num_classes=num_classes, seed=args.seed, device=DEVICE,
                          desc="teacher", on_epoch=lambda e, m: checked({"val_top1": evaluate(m)}, m, "teacher", e))
        teacher_history = t_teacher["history"]

        # --- 2. the ViT, distilled -----------------------------------------------------------
        t1 = time.perf_counter()
        targets = teacher_targets(teacher, x_train)
        cfg = backbone_config("vit_tiny_mini")
        cfg.pretrained = False
        torch.manual_seed(args.seed)
        vit = build_backbone(cfg, num_classes=num_classes)
        student = Distiller(vit, targets["mid"].shape[-1], targets["last"].shape[-1])
        scfg = TrainConfig(epochs=args.epochs, batch_size=128, lr=2e-3, weight_decay=0.05,
                           warmup_epochs=0.1 * args.epochs)
        optimizer = make_optimizer(student, scfg, DEVICE)
        steps = n_batches(len(x_train), scfg.batch_size, False)
        scheduler = make_schedule(optimizer, scfg, steps)
        generator = torch.Generator().manual_seed(args.seed)
        index = TensorDataset(torch.arange(len(x_train)), y_train)
        history, step = [], 0
        for epoch in range(1, args.epochs + 1):
            student.train()
            loss_sum = 0.0
            for i, y in tqdm(batches(index, scfg.batch_size, generator), total=steps, leave=False,
                             desc=f"distil epoch {epoch}/{args.epochs}", disable=not progress):
                loss = student.loss(x_train[i], y, {k: t[i] for k, t in targets.items()})
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
                scheduler.step_update(step)
                loss_sum += loss.item() * len(y)
            history.append(checked({"epoch": epoch, "train_loss": loss_sum / len(x_train), "val_top1": evaluate(vit)},
                                   vit, "vit", epoch))
        distil_s = time.perf_counter() - t1
    except _Reproduced:
        history = None
    if expected is not None:
        print(f"pretrain --check: the first {done[0]} epochs (teacher's first) reproduce {path}")
        return expected

    for stage, hist in (("teacher", teacher_history), ("vit", history)):
        for h in hist:
            print(f"{stage} epoch {h['epoch']}: train loss {h['train_loss']:.3f}  "
                  f"upstream val top-1 {h['val_top1']:.2f}%")
    with atomic_file(path) as tmp:
        save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, str(tmp),
                  metadata={"arch": cfg.arch, "upstream_classes": str(num_classes)})
    summary = {"weights": path.name, "arch": cfg.arch, "kwargs": cfg.kwargs, "upstream_classes": num_classes,
               "settings": {"images": args.images, "val_images": args.val_images,
                            "teacher_epochs": args.teacher_epochs, "epochs": args.epochs, "seed": args.seed,
                            "threads": args.threads},
               "teacher_history": teacher_history, "history": history, "weights_sha256": weights_sha256(vit),
               "generate_seconds": round(gen_s, 1), "teacher_seconds": round(t_teacher["train_seconds"], 1),
               "distil_seconds": round(distil_s, 1), "torch": torch.__version__}
    with atomic_file(path.with_suffix(".json")) as tmp:
        Path(tmp).write_text(json.dumps(summary, indent=1) + "\n")
    print(f"wrote {path} (upstream val top-1 {history[-1]['val_top1']:.2f}%; {gen_s:.0f} s generation, "
          f"{t_teacher['train_seconds']:.0f} s teacher, {distil_s:.0f} s distillation)")
    return summary


if __name__ == "__main__":
    sys.exit(main() and 0)
