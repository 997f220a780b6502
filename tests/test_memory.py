"""Peak-memory windows: a reset forgets earlier peaks; a new allocation shows up."""

from __future__ import annotations

import torch

from negscale import memory

CPU = torch.device("cpu")


def test_peak_window_sees_a_new_allocation_and_forgets_older_ones() -> None:
    if not memory.reset_peak(CPU):  # no /proc on this platform: nothing to check
        return
    big = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
    first = memory.peak_mb(CPU)
    del big
    assert memory.reset_peak(CPU)
    base = memory.current_mb(CPU)
    assert base is not None and memory.peak_mb(CPU) < first  # the old peak is gone
    block = torch.ones(32 * 2**20 // 4)
    assert memory.peak_mb(CPU) - base >= 30  # MiB
    del block
