"""Time `launch.py --status` on a large grid (a benchmark, not a test): how fast a sweep starts.

    python scripts/bench_sweep.py [--repeat 3] [--grid lr_wd|wide] [-- GRID_OVERRIDES...]

Before it submits anything, the sweeper composes every run of the grid to find its folder and
skip what is done (hydra_plugins/bench_sweeper). This runs that step alone, as `--status` does, on
an empty results folder, `--repeat` times as fresh processes (interpreter start, imports and Hydra
included, as a user would wait for it), and prints each wall time, the median, the number of runs,
the distinct compositions among them, and the sweeper's own time per run after those compositions.

Grids (`--grid`):
  lr_wd (default): SSF's and LoRA's VTAB-1k lr x wd grid with 7 seeds, 19 x 2 x 10 x 4 x 7 = 10,640 runs,
      38 distinct method x dataset compositions. Target: at most 10 s on this machine's 2 cores.
  wide: 9 methods x 19 VTAB-1k tasks x 5 backbones x 6 seeds x 2 learning rates = 10,260 runs, 855 distinct
      method x dataset x backbone compositions (each one a composition: hydra_plugins/bench_sweeper/compose.py).
      Target: at most 20 s on this machine's 2 cores.
"""
import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GRIDS = {  # name: (launch.py overrides, target wall in seconds)
    "lr_wd": (["method=ssf,lora", "dataset=vtab/*", "train.lr=1e-4,2e-4,5e-4,1e-3,2e-3,5e-3,1e-2,2e-2,5e-2,1e-1",
               "train.weight_decay=0,1e-4,1e-3,1e-2", "seed=0,1,2,3,4,5,6"], 10),
    "wide": (["method=ssf,lora,adapter,adaptformer,bias,vpt,full,linear,fact_tt", "dataset=vtab/*",
              "backbone=vit_base_patch16_224.augreg_in21k,vit_base_patch16_224.orig_in21k,vit_base_patch16_224.mae,"
              "vit_base_patch14_dinov2.lvd142m,vit_base_patch16_clip_224.openai", "seed=0,1,2,3,4,5",
              "train.lr=1e-3,1e-2"], 20),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--grid", choices=sorted(GRIDS), default="lr_wd", help="one of the grids above")
    ap.add_argument("overrides", nargs="*", help="launch.py overrides of another grid (target: the --grid's)")
    args = ap.parse_args(argv)
    grid, target = GRIDS[args.grid]
    grid = args.overrides or grid
    walls, lines = [], []
    with tempfile.TemporaryDirectory() as results:
        for i in range(args.repeat):
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, str(ROOT / "launch.py"), "--status", "-m", *grid,
                                   f"results_dir={results}"], cwd=ROOT, capture_output=True, text=True)
            walls.append(time.perf_counter() - t0)
            if proc.returncode != 0:
                sys.stderr.write(proc.stderr[-3000:])
                return proc.returncode
            lines.append(proc.stdout.splitlines()[0])
            print(f"run {i + 1}: {walls[-1]:.2f} s wall; {lines[-1]}", flush=True)
    m = re.search(r"(\d+) runs in the grid \(checked in ([\d.]+) s; (\d+) distinct compositions in ([\d.]+) s\)", lines[-1])
    print(f"median wall: {statistics.median(walls):.2f} s over {args.repeat} runs (target <= {target} s)")
    if m:
        runs, checked, distinct, composing = int(m[1]), float(m[2]), int(m[3]), float(m[4])
        per_run = (checked - composing) / runs * 1e3
        print(f"{runs} runs, {distinct} distinct compositions ({composing:.2f} s); the rest {per_run:.3f} ms per run "
              f"(target <= 1 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
