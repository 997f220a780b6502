"""Peak-memory windows: a reset forgets earlier peaks; a new allocation shows up."""

from __future__ import annotations

import subprocess
import sys

import torch

from negscale import memory

CPU = torch.device("cpu")

# In a fresh process: a long-lived one (the test session) keeps freed heap pages
# resident, and a new tensor may reuse them without raising the resident set.
CHECK = """
import torch
from negscale import memory
cpu = torch.device("cpu")
big = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
first = memory.peak_mb(cpu)
del big
assert memory.reset_peak(cpu)
base = memory.current_mb(cpu)
assert base is not None and memory.peak_mb(cpu) < first, "the old peak is gone"
block = torch.ones(32 * 2**20 // 4)
grew = memory.peak_mb(cpu) - base
assert grew >= 30, grew  # MiB
print("ok")
"""


def test_peak_window_sees_a_new_allocation_and_forgets_older_ones() -> None:
    if not memory.reset_peak(CPU):  # no /proc on this platform: nothing to check
        return
    done = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120
    )
    assert done.stdout.strip() == "ok", done.stderr[-1000:]
