"""Memory probes for the run record: each run's own peak, on CUDA or from the kernel's counters.

Apart from the run so that the probes' platform details (CUDA's allocator statistics, Linux's
/proc/self counters, and getrusage's whole-process peak where the mark cannot be reset) sit in one place.
"""
import ctypes
import gc
import resource

import torch


def reset_peak_memory(device: torch.device) -> bool:
    """Start this run's memory peak: CUDA's allocator peak, or on Linux the kernel's RSS high-water
    mark (writing 5 to /proc/self/clear_refs resets VmHWM), so that in a sweep of several runs in
    one process each run records its own peak. False where the mark cannot be reset."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return True
    gc.collect()
    try:  # hand the previous run's freed heap back to the kernel first, so the mark starts from this run's own base
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def status_mb(field: str) -> float:
    """A memory line of /proc/self/status (`VmRSS`, `VmHWM`: KiB there) in MB."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(f"{field}:")) / 1024


def peak_memory_mb(device: torch.device, per_run: bool) -> tuple[float, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_allocated"
    if per_run:
        return status_mb("VmHWM"), "run_peak_rss"
    # ru_maxrss is KiB on Linux; the process's peak, which in a multirun covers the runs before this one
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process_peak_rss"
