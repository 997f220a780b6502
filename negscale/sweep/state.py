"""What the files on disk say about a run: done, corrupt, running or pending.

A valid record means done; a record file that is not one is corrupt; a lock
held by a live process means running. Temporary files a killed write leaves
behind are found here and removed by the sweep under the run's claim.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from negscale.config import Recipe
from negscale.results import is_valid_record, record_path, runs_dir
from negscale.sweep.locks import lock_state


def stray_files(results: str | Path, run_id: str) -> list[Path]:
    """Temporary files a killed write of this run may leave (record and checkpoint)."""
    results = Path(results)
    found = list(runs_dir(results).glob(f".{run_id}.*.tmp"))
    ckpt_tmp = results / "checkpoints" / f"{run_id}.tmp"
    return found + ([ckpt_tmp] if ckpt_tmp.exists() else [])


def record_state(results: str | Path, run_id: str) -> str:
    """``done`` (a valid record), ``corrupt`` (a file that is not one) or ``pending``."""
    path = record_path(results, run_id)
    if not path.exists():
        return "pending"
    return "done" if is_valid_record(path) else "corrupt"


def plan_states(plan_recipes: Sequence[Recipe], results: str | Path) -> dict[str, str]:
    """run_id -> done | corrupt | running | pending, as the files show it now."""
    states = {}
    for r in plan_recipes:
        rid = r.run_id()
        state = record_state(results, rid)
        if state != "done":
            state = lock_state(results, rid) or state
        states[rid] = state
    return states
