"""Peak memory of a stretch of work: GPU allocator peak, or on Linux CPUs the resident set.

Both the trainer (``peak_mem_mb`` of a run) and the benchmarks need "the most
memory this took", reset at a start point, so a sweep's later runs are not
charged with an earlier run's peak.
"""

from __future__ import annotations

import resource
from pathlib import Path

import torch

_PROC = Path("/proc/self")


def _status_kb(field: str) -> int | None:
    try:
        for line in (_PROC / "status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak(device: torch.device) -> bool:
    """Start a new peak window; False where the platform cannot (then peaks are lifetime)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        return True
    try:
        (_PROC / "clear_refs").write_text("5")  # Linux: reset VmHWM to the current RSS
    except OSError:
        return False
    return True


def current_mb(device: torch.device) -> float | None:
    """Memory held now: allocated GPU memory, or the resident set."""
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device) / 2**20
    kb = _status_kb("VmRSS")
    return None if kb is None else kb / 1024


def peak_mb(device: torch.device) -> float:
    """Peak since the last ``reset_peak``: GPU allocated, or the peak resident set."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) / 2**20
    kb = _status_kb("VmHWM")
    if kb is None:  # no /proc: the process's lifetime peak
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024
