"""Method x backbone speed benchmark on synthetic data (no downloads).

    python scripts/bench_methods.py                      # CPU: tiny backbones of every family, 32 px
    python scripts/bench_methods.py --gpu-check          # GPU: ViT-B/16 at 224 px in bf16, every method
    python scripts/bench_methods.py --backbones tiny_vit --methods ssf,lora --steps 30

For each method x backbone it measures, in one process:
- training images/s through our loop (`bench.train.loop.train`: batching, scheduler, autocast, ...)
  and through a minimal bare PyTorch loop on the same model and batches, and their ratio
  (medians over --rounds alternating rounds, each loop at least --steps steps and --min-loop-s
  seconds; the ratio is of the two medians, and `ours_over_bare_best` of the best round of
  each, since noise only ever slows a loop down);
- peak memory of our loop: CUDA max allocated, or on CPU the peak RSS increase over the
  loop's start (sampled every 2 ms; CPU has no allocator counter);
- the deployed model's (merged where the method folds) inference images/s over the
  untouched backbone's, measured round-robin on the same batch;
- each method's training step time over full fine-tuning's on the same backbone
  (`step_over_full`: full's images/s over the method's, both through our loop in this run;
  empty where `full` is not among --methods);
- on CUDA, the FLOPs of one training step (torch.utils.flop_counter) and the achieved
  FLOP/s as a fraction of the device's peak (--peak-tflops, default from the device name).
Then, unless --no-linear-probe, the linear-probe fast path against the epoch loop on a mini
task: time from the start of training to the final test score (`fit_time_s`), and test top-1.
Writes a CSV (--out) and prints a markdown table. Numbers vary run to run on a shared
machine: compare rows of one run, not across runs.
"""
import argparse
import copy
import csv
import math
import dataclasses
import os
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import psutil  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils.data import TensorDataset  # noqa: E402

import methods  # noqa: E402
from bench import PROJECT_ROOT  # noqa: E402
from bench.analysis import tables  # noqa: E402
from bench.config import BackboneConfig, TrainConfig, backbone_config  # noqa: E402
from bench.models import build_backbone, data_config  # noqa: E402
from bench.records import atomic_file  # noqa: E402
from bench.run.deploy import deployable, images_per_s  # noqa: E402
from bench.train.loop import autocast_dtype, train  # noqa: E402

PEAK_TFLOPS_BF16 = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0}  # dense, vendor specs


def backbone_cfg(name: str, image_size: int | None) -> BackboneConfig:
    cfg = backbone_config(name)
    cfg.pretrained = False  # speed does not depend on the weights: nothing to download
    if image_size and "img_size" in cfg.kwargs:
        cfg.kwargs["img_size"] = image_size
    return cfg


class RssPeak:
    """Peak RSS increase (MB) over the block, sampled by a thread."""

    def __enter__(self):
        self.proc, self.base, self.peak, self.stop = psutil.Process(), psutil.Process().memory_info().rss, 0, False
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()
        return self

    def _poll(self):
        while not self.stop:
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.002)

    def __exit__(self, *exc):
        self.stop = True
        self.thread.join()
        self.mb = max(self.peak - self.base, 0) / 2**20


def bare_loop(model, data: TensorDataset, batch: int, steps: int, amp, device) -> float:
    """Images/s of the simplest correct loop: shuffled batches of the same in-memory data,
    gathered as ours gathers them, AdamW on the trainable parameters, CE, nothing else.

    Timed like ours: a fresh optimizer on the already-warm model, every step counted (our
    loop's time includes its optimizer's first step, which allocates the AdamW state). A loop
    that reused one batch would run from a warm cache and beat any real loop by up to 15 %
    on the fastest CPU rows here, for no reason a training run could use.
    """
    # the same AdamW kernel as ours (fused), so the ratio is the loop's overhead alone
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, fused=True)
    model.train()
    xs, ys = data.tensors
    sync(device)
    t0 = time.perf_counter()
    order = torch.randperm(len(ys)).to(xs.device)
    for i in range(steps):
        idx = order[i * batch:(i + 1) * batch]
        x = xs.index_select(0, idx).to(device, non_blocking=True)
        y = ys.index_select(0, idx).to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync(device)
    return steps * batch / (time.perf_counter() - t0)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def step_flops(model, x, y, amp, device) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def bench_one(backbone: str, method: str, args, device) -> dict:
    cfg = backbone_cfg(backbone, args.image_size)
    torch.manual_seed(0)
    model = build_backbone(cfg, num_classes=args.classes)
    size = cfg.kwargs.get("img_size") or data_config(model)["input_size"][-1]
    untouched = copy.deepcopy(model).to(device)
    try:
        model = methods.get_method(method).apply(model, methods.method_config(method, {}))
    except methods.Unsupported as e:
        return {"backbone": backbone, "method": method, "status": f"unsupported: {e}"}
    model.to(device)
    tcfg = TrainConfig(epochs=1, batch_size=args.batch, lr=1e-4, warmup_epochs=0, progress=False,
                       linear_fast_path=False, amp=args.amp)
    amp = autocast_dtype(tcfg, device)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(args.batch, 3, size, size, generator=g), torch.randint(0, args.classes, (args.batch,), generator=g)
    channels_last = cfg.channels_last and device.type == "cuda"
    train(model, TensorDataset(x.repeat(2, 1, 1, 1), y.repeat(2)), tcfg, num_classes=args.classes, seed=0,
          device=device, channels_last=channels_last)
    x, y = x.to(device), y.to(device)
    # Enough steps that each timed loop lasts --min-loop-s: short loops are at the mercy of
    # the machine's bursts of noise.
    calibrate = TensorDataset(x.repeat(args.steps, 1, 1, 1), y.repeat(args.steps))
    bare_speed = bare_loop(model, calibrate, args.batch, args.steps, amp, device)
    del calibrate  # on a GPU: 20 batches of 224-px images, not needed again
    steps = max(args.steps, math.ceil(args.min_loop_s * bare_speed / args.batch))
    n = args.batch * steps
    # held on the device, as `train.data_on_device` holds a cached split in a run (a no-op on the CPU)
    data = TensorDataset(torch.randn(n, 3, size, size, generator=g).to(device),
                         torch.randint(0, args.classes, (n,), generator=g).to(device))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    ours_runs, bare_runs = [], []
    for _ in range(args.rounds):  # alternate the two loops so machine noise hits both alike
        out = train(model, data, tcfg, num_classes=args.classes, seed=0, device=device, channels_last=channels_last)
        ours_runs.append(out["images_seen"] / out["train_seconds"])
        bare_runs.append(bare_loop(model, data, args.batch, steps, amp, device))
    ours, bare = statistics.median(ours_runs), statistics.median(bare_runs)
    with RssPeak() as rss:  # an extra, untimed round: the sampling thread would slow the timed ones
        train(model, data, tcfg, num_classes=args.classes, seed=0, device=device, channels_last=channels_last)
    row = {"backbone": backbone, "method": method, "status": "ok", "device": device_name(device),
           "image_size": size, "batch": args.batch, "amp": str(amp).replace("torch.", "") if amp else "fp32",
           "tunable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
           "steps": steps, "train_img_s_ours": float(f"{ours:.4g}"), "train_img_s_bare": float(f"{bare:.4g}"),  # 4 digits: ViT-B on a CPU runs ~2 img/s
           "ours_over_bare": round(ours / bare, 3),
           "ours_over_bare_best": round(max(ours_runs) / max(bare_runs), 3),  # timeit's rule: noise only slows
           "peak_mem_mb": round(torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else rss.mb, 1),
           "peak_mem_kind": "cuda_max_allocated" if device.type == "cuda" else "cpu_rss_increase_sampled"}
    deployed, merged = deployable(model.eval(), methods.get_method(method))
    with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
        speed = images_per_s({"deployed": deployed, "backbone": untouched}, x, iters=args.infer_iters)
    row.update(merged=merged, infer_img_s=round(speed["deployed"], 1), infer_img_s_backbone=round(speed["backbone"], 1),
               infer_ratio=round(speed["deployed"] / speed["backbone"], 3))
    if device.type == "cuda":
        flops = step_flops(model.train(), x, y, amp, device)
        achieved = flops * ours / args.batch  # FLOP/s of our loop
        peak = args.peak_tflops or next((v for k, v in PEAK_TFLOPS_BF16.items() if k in row["device"]), None)
        row.update(train_tflop_per_step=round(flops / 1e12, 3), achieved_tflops=round(achieved / 1e12, 1),
                   mfu=round(achieved / (peak * 1e12), 3) if peak else None)
    return row


def add_step_over_full(rows: list[dict]) -> None:
    """`step_over_full` on every measured row: its training step time over full fine-tuning's on the
    same backbone in this run (full's images/s through our loop over the row's, same batch); a PEFT
    method computes no weight gradient for the frozen backbone, so above 1 is its own extra work."""
    full = {r["backbone"]: r["train_img_s_ours"] for r in rows if r["method"] == "full" and r["status"] == "ok"}
    for r in rows:
        if r["status"] == "ok" and r["backbone"] in full:
            r["step_over_full"] = round(full[r["backbone"]] / r["train_img_s_ours"], 3)


def device_name(device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu x{torch.get_num_threads()} threads"


def loop_overhead(device, steps: int = 2000, rounds: int = 5) -> dict:
    """Our loop's fixed cost per step, measured where nothing else costs anything: a 48 -> 10
    linear model on 4 x 4 images, our loop against the bare loop, medians of alternating rounds."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 10)).to(device)
    n = 64 * steps
    data = TensorDataset(torch.randn(n, 3, 4, 4).to(device), torch.randint(0, 10, (n,)).to(device))
    tcfg = TrainConfig(epochs=1, batch_size=64, lr=1e-4, warmup_epochs=0, progress=False, amp="off")
    ours, bare = [], []
    for _ in range(rounds):
        out = train(model, data, tcfg, num_classes=10, seed=0, device=device)
        ours.append(out["train_seconds"] / steps * 1e6)
        bare.append(64 / bare_loop(model, data, 64, steps, None, device) * 1e6)
    o, b = statistics.median(ours), statistics.median(bare)
    return {"model": "Linear(48, 10)", "steps": steps, "ours_us_per_step": round(o, 1), "bare_us_per_step": round(b, 1),
            "overhead_us_per_step": round(o - b, 1)}


def linear_probe_check(args) -> list[dict]:
    """The fast path against the epoch loop on one mini task, at each of --lp-epochs: time from the
    start of training to the final test score (`fit_time_s`, every evaluation included), and test top-1."""
    import tempfile

    from bench.config import DatasetConfig, RunConfig
    from bench.run.runner import run

    backbone = backbone_config("vit_tiny_mini")
    task = DatasetConfig("mini/count", "mini", "count", "structured", 8, 32)
    rows = []
    for epochs in args.lp_epochs:
        times: dict[bool, list[float]] = {True: [], False: []}
        accs: dict[bool, float] = {}
        with tempfile.TemporaryDirectory() as tmp:
            for rep in range(args.lp_repeats + 1):  # the first round warms the process up and is not counted
                for fast in (True, False):
                    cfg = RunConfig(method="linear", dataset=task, backbone=backbone, results_dir=tmp, deploy_iters=0,
                                    save_weights=False,
                                    train=TrainConfig(epochs=epochs, lr=1e-2, progress=False, linear_fast_path=fast))
                    rec = run(cfg)
                    if rep:
                        times[fast].append(rec["fit_time_s"])
                    accs[fast] = rec["test_top1"]
        tf, tl = statistics.median(times[True]), statistics.median(times[False])
        rows.append({"task": "mini/count", "epochs": epochs, "loop_fit_s": round(tl, 3), "fast_fit_s": round(tf, 3),
                     "speedup": round(tl / tf, 1), "loop_test_top1": accs[False], "fast_test_top1": accs[True],
                     "diff_points": round(accs[True] - accs[False], 2)})
    return rows


def vtab_sized_run(args, device) -> dict:
    """SSF on the first backbone, a VTAB-1k-sized job end to end: build the model, train on
    --vtab-images images for --vtab-epochs epochs (batch 64, the VTAB recipe's), then one test
    pass over --vtab-test images. Random uint8 images held on the device (as
    `train.data_on_device` holds a cached split), normalised per batch; the loop, evaluation and
    autocast are the ones `bench.run.runner` uses. Reading a real cached split adds about 1 s per
    1,000 images (scripts/bench_data_cache.py)."""
    from bench.data.on_device import BatchDataset
    from bench.train.evaluate import top1

    t0 = time.perf_counter()
    cfg = backbone_cfg(args.backbones.split(",")[0], args.image_size)
    model = build_backbone(cfg, num_classes=100)
    dcfg = data_config(model)
    size = dcfg["input_size"][-1]
    model = methods.get_method("ssf").apply(model, methods.method_config("ssf", {})).to(device)
    g = torch.Generator(device).manual_seed(0)

    def split(n):
        return BatchDataset(torch.randint(0, 256, (n, 3, size, size), generator=g, device=device, dtype=torch.uint8),
                            torch.randint(0, 100, (n,), generator=g, device=device), dcfg["mean"], dcfg["std"])

    train_set, test_set = split(args.vtab_images), split(args.vtab_test)
    tcfg = TrainConfig(epochs=args.vtab_epochs, batch_size=64, lr=1e-3, warmup_epochs=min(10, args.vtab_epochs),
                       progress=False, linear_fast_path=False, amp=args.amp)
    sync(device)
    t1 = time.perf_counter()
    out = train(model, train_set, tcfg, num_classes=100, seed=0, device=device)
    sync(device)
    t2 = time.perf_counter()
    acc = top1(out["eval_model"], test_set, 500, device, progress=False, amp=autocast_dtype(tcfg, device))
    t3 = time.perf_counter()
    return {"job": f"ssf, {args.vtab_images} images x {args.vtab_epochs} epochs + {args.vtab_test} test images",
            "backbone": cfg.name, "image_size": size, "setup_s": round(t1 - t0, 1), "train_s": round(t2 - t1, 1),
            "train_img_s": round(out["images_seen"] / (t2 - t1), 1), "test_s": round(t3 - t2, 1),
            "total_s": round(t3 - t0, 1), "test_top1_random_labels": round(acc, 2)}


def write_csv(path: Path, rows: list[dict]) -> None:
    with atomic_file(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        w.writeheader()
        w.writerows(rows)


def markdown(rows: list[dict], cols: list[str]) -> str:
    """The `cols` of each row dict as a markdown table (bench.analysis.tables.markdown, as analyze.py prints them)."""
    return tables.markdown(cols, [[str(r.get(c, "")) for c in cols] for r in rows])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backbones", default="tiny_vit,tiny_swin,tiny_convnext,tiny_mixer")
    ap.add_argument("--methods", default=",".join(sorted(methods.METHODS)))
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20, help="timed training steps per loop, at least")
    ap.add_argument("--min-loop-s", type=float, default=0.5, help="more steps if a loop would be shorter than this")
    ap.add_argument("--rounds", type=int, default=9, help="alternating rounds of our loop and the bare loop (medians)")
    ap.add_argument("--infer-iters", type=int, default=20)
    ap.add_argument("--classes", type=int, default=100)
    ap.add_argument("--image-size", type=int, default=None, help="override img_size for ViT/Swin/Mixer configs")
    ap.add_argument("--amp", default="auto", help="auto (bf16 on CUDA), bf16, off")
    ap.add_argument("--peak-tflops", type=float, default=None, help="device peak for MFU (default: from its name)")
    ap.add_argument("--gpu-check", action="store_true", help="ViT-B/16, 224 px, bf16, every method (needs CUDA)")
    ap.add_argument("--no-linear-probe", action="store_true")
    ap.add_argument("--lp-repeats", type=int, default=3)
    ap.add_argument("--lp-epochs", type=lambda s: [int(e) for e in s.split(",")], default=[20, 100],
                    help="epochs of the linear-probe check (20: the mini recipe; 100: the VTAB-1k recipe's length)")
    ap.add_argument("--vtab-run", action="store_true", help="also time a VTAB-1k-sized SSF run (on with --gpu-check)")
    ap.add_argument("--vtab-images", type=int, default=1000)
    ap.add_argument("--vtab-epochs", type=int, default=100)
    ap.add_argument("--vtab-test", type=int, default=10000)
    ap.add_argument("--out", type=Path, default=None, help="CSV path (default results/bench/methods_<device>.csv)")
    args = ap.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.gpu_check:
        if device.type != "cuda":
            print("error: --gpu-check needs a CUDA device", file=sys.stderr)
            return 2
        args.backbones, args.batch, args.image_size = "vit_base_patch16_224.augreg_in21k", 64, 224
        args.rounds = min(args.rounds, 3)  # a quiet, dedicated GPU; keeps the check within 5 minutes
        args.vtab_run = True
    rows = []
    # A fresh process runs its first steps several times slower (allocator, thread pools): one
    # untimed configuration first, so the first row is measured like the others.
    bench_one(args.backbones.split(",")[0], "full", argparse.Namespace(**{**vars(args), "rounds": 1}), device)
    for b in args.backbones.split(","):
        for m in args.methods.split(","):
            row = bench_one(b, m, args, device)
            rows.append(row)
            print(f"{b} {m}: {row.get('status')} ours {row.get('train_img_s_ours', '-')} img/s, "
                  f"ours/bare {row.get('ours_over_bare', '-')}, deployed/backbone {row.get('infer_ratio', '-')}", flush=True)
    add_step_over_full(rows)
    out = args.out or PROJECT_ROOT / "results" / "bench" / f"methods_{device.type}.csv"
    write_csv(out, rows)
    ok = [r for r in rows if r["status"] == "ok"]
    cols = ["backbone", "method", "train_img_s_ours", "step_over_full", "train_img_s_bare", "ours_over_bare",
            "ours_over_bare_best", "peak_mem_mb", "merged", "infer_ratio"] + (["achieved_tflops", "mfu"] if device.type == "cuda" else [])
    print(f"\n{device_name(device)}, batch {args.batch}, {args.rounds} rounds of at least {args.steps} steps and "
          f"{args.min_loop_s} s per loop\n")
    print(markdown(ok, cols))
    skipped = [f"{r['backbone']}/{r['method']}" for r in rows if r["status"] != "ok"]
    if skipped:
        print(f"\nunsupported: {', '.join(skipped)}")
    if not args.no_linear_probe and device.type == "cpu":
        lp = linear_probe_check(args)
        print(f"\nlinear-probe fast path vs epoch loop (fit = training + every evaluation; median of "
              f"{args.lp_repeats} runs each):\n\n" + markdown(lp, list(lp[0])))
    over = loop_overhead(device)
    print("\nour loop's fixed cost per step (a trivial model, where only the loop costs anything):\n\n"
          + markdown([over], list(over)))
    if args.vtab_run:
        job = vtab_sized_run(args, device)
        print("\nVTAB-1k-sized SSF run, end to end (target on one H100: at most 180 s):\n\n" + markdown([job], list(job)))
        write_csv(out.with_name(out.stem + "_vtab_run.csv"), [job])
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
