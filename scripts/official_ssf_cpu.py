"""Run the official SSF `train.py` unmodified on a machine without a GPU (used by bench_run.py --official).

    python scripts/official_ssf_cpu.py /path/to/SSF [train.py arguments ...]

The official script moves its model, losses and batches with `.cuda()` and calls
`torch.cuda.synchronize()` after every step; here those calls leave everything where it is (the
CPU), so the script runs as written. Nothing else is changed: its arguments, data loaders,
schedule, evaluation, logging and checkpoints are its own. It needs the official code's own
dependencies importable (timm 0.6.5, ipdb, scipy, pyyaml), for example with
`pip install --target DIR timm==0.6.5 ipdb scipy pyyaml` and `PYTHONPATH=DIR` (the torch
installed here is used). Pass `--no-prefetcher`: the official prefetcher needs CUDA streams.
"""
import os
import runpy
import sys

import torch
import torch.nn as nn


def main() -> None:
    if len(sys.argv) < 2 or not os.path.isfile(os.path.join(sys.argv[1], "train.py")):
        raise SystemExit(f"usage: {sys.argv[0]} SSF_CHECKOUT [train.py arguments]: "
                         f"no train.py in {sys.argv[1] if len(sys.argv) > 1 else '(missing)'}")
    repo = os.path.abspath(sys.argv[1])
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    nn.Module.cuda = lambda self, *args, **kwargs: self
    torch.cuda.synchronize = lambda *args, **kwargs: None
    torch.cuda.set_device = lambda *args, **kwargs: None
    sys.path.insert(0, repo)  # its `models`, `data`, `optim_factory` packages
    sys.argv = [os.path.join(repo, "train.py"), *sys.argv[2:]]
    runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
