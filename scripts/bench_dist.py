"""Training throughput of one run in 1 process and in N processes (torchrun), the same job.

    python scripts/bench_dist.py [--procs 2] [--repeat 3] [--threads 2] [-- launch.py overrides ...]

Each repeat runs the job once as a plain process with `--threads` torch threads, then under
`torchrun --nproc-per-node N` with threads/N each (the same cores in both), and reads the
training images/s from the records (images of all ranks over the training time). Default job:
SSF on mini/count, 5 epochs, global batch 64, no deployed-model timing. On CPUs the processes
share the cores and talk through gloo; on a GPU machine pass the GPU count as --procs.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
JOB = ["method=ssf", "dataset=mini/count", "train.epochs=5", "train.batch_size=64", "train.progress=false",
       "deploy_iters=0", "save_weights=false"]


def one(cmd: list[str], results: Path, threads: int) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT), OMP_NUM_THREADS=str(threads))
    proc = subprocess.run([*cmd, f"train.num_threads={threads}", f"results_dir={results}"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        sys.exit(f"error: {' '.join(cmd[:4])} ... failed:\n{proc.stderr[-2000:]}")
    (path,) = list(results.rglob("record.json"))
    return json.loads(path.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the one process (each of N: threads/N)")
    ap.add_argument("overrides", nargs="*", help="launch.py overrides replacing the default job")
    args = ap.parse_args()
    job = args.overrides or JOB
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={args.procs}"]
    rows = {1: [], args.procs: []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeat):
            single = one([sys.executable, "launch.py", *job], Path(tmp) / f"one{r}", args.threads)
            multi = one([*torchrun, "launch.py", *job], Path(tmp) / f"many{r}", max(args.threads // args.procs, 1))
            rows[1].append(single["train_images_per_s"])
            rows[args.procs].append(multi["train_images_per_s"])
            print(f"repeat {r + 1}: 1 process {single['train_images_per_s']:.0f} images/s (test {single['test_top1']}%), "
                  f"{args.procs} processes {multi['train_images_per_s']:.0f} images/s (test {multi['test_top1']}%)",
                  flush=True)
    a, b = statistics.median(rows[1]), statistics.median(rows[args.procs])
    print(f"\nmedians of {args.repeat}: 1 process {a:.0f} images/s, {args.procs} processes {b:.0f} images/s "
          f"({b / a:.2f}x), job: {' '.join(job)}")


if __name__ == "__main__":
    main()
