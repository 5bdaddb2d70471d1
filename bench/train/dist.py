"""One run over several processes: torch.distributed, as torchrun or Slurm start it.

A run is distributed when the launcher says so in the environment: torchrun sets WORLD_SIZE,
RANK, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; under Slurm (several tasks of one job) the same
variables come from submitit's `TorchDistributedEnvironment`, which reads Slurm's. `setup`
then joins the process group: NCCL on GPUs, gloo on CPUs, with a timeout on every collective
so a dead rank ends the run instead of hanging it.

How a run is split (bench/train/loop.py, bench/train/evaluate.py): every rank draws the same permutation
each epoch and takes its contiguous part of every global batch (`train.batch_size` is the
global batch); each rank's loss is its images' summed loss over the global batch's size times
the world size, so DistributedDataParallel's gradient average is the mean over the global
batch, exactly one process's gradient; evaluation predicts each rank's contiguous part of every
batch and gathers the per-image predictions back into the split's order, so every image counts
once (bench/train/evaluate.py). Rank 0 writes the record (and the predictions file),
checkpoints and weights; every rank resumes from the same checkpoint.
"""
import datetime
import os
import signal

import torch
import torch.distributed as dist


def world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def requested() -> int:
    """The world size the launcher asked for (1: a plain process)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def from_slurm() -> None:
    """Under a Slurm job of several tasks, export torch.distributed's variables from Slurm's (submitit)."""
    if "SLURM_NTASKS" in os.environ and int(os.environ["SLURM_NTASKS"]) > 1 and "WORLD_SIZE" not in os.environ:
        from submitit.helpers import TorchDistributedEnvironment

        TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


def setup(timeout_s: float) -> torch.device | None:
    """Join the process group when the launcher started several processes; returns this rank's device
    (cuda:LOCAL_RANK on GPUs), or None when the run is a single process."""
    from_slurm()
    if requested() <= 1:
        return None
    if not dist.is_initialized():
        # torchrun stops the other ranks with SIGTERM when one fails: as an exception, so this rank
        # still writes its failed record (rank 0: naming the rank that failed first) before it exits
        signal.signal(signal.SIGTERM, _terminated)
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(seconds=timeout_s))
    return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")


def shield() -> None:
    """From here on a SIGTERM is ignored: the failed record being written must not be cut off by a second one."""
    if world() > 1:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _terminated(signum, frame):
    raise RuntimeError("terminated (SIGTERM) by the launcher, most likely because another rank failed")


def all_sum(*values: float | int) -> list[float]:
    """The sum over ranks of each value (the values themselves in a single process)."""
    if world() == 1:
        return list(values)
    t = torch.tensor([float(v) for v in values], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return t.cpu().tolist()


def backend() -> str | None:
    return dist.get_backend() if world() > 1 else None


def gather(value):
    """Every rank's `value` (any picklable object), in rank order (a collective: every rank must call it)."""
    if world() == 1:
        return [value]
    out: list = [None] * world()
    dist.all_gather_object(out, value)
    return out


def shard() -> tuple[int, int] | None:
    """(rank, world) when there are several processes, else None: what bench.data.batching cuts batches by."""
    return (rank(), world()) if world() > 1 else None


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
