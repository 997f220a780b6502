"""Execution: train every pending run of a shard, each under a claim, reporting to a listener.

Safe to repeat: a valid record means done, a corrupt one is removed and
redone, temp files of a killed write are removed under the claim, a run
another live process holds is skipped. This module has no Typer: the CLI
renders what :class:`Listener` reports.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from negscale.errors import NegscaleError
from negscale.recipe import Recipe
from negscale.results import RunRecord, record_path
from negscale.sweep.locks import claim
from negscale.sweep.plan import Plan
from negscale.sweep.state import record_state, stray_files


class Listener(Protocol):
    """What a sweep reports while it runs; the CLI renders it, tests may record it."""

    def begin(self, pending: int) -> None:
        """``pending``: runs of this shard not done when the sweep started."""

    def notice(self, message: str) -> None:
        """Something the user should know (a corrupt record removed, a busy run)."""

    def started(self, recipe: Recipe) -> None:
        """A run is claimed and about to train."""

    def finished(self, recipe: Recipe, record: RunRecord | None, seconds: float) -> None:
        """A run ended: ``record`` is None when it was skipped after all (done/busy) or failed."""


class SilentListener:
    """The default listener: reports nothing."""

    def begin(self, pending: int) -> None:
        pass

    def notice(self, message: str) -> None:
        pass

    def started(self, recipe: Recipe) -> None:
        pass

    def finished(self, recipe: Recipe, record: RunRecord | None, seconds: float) -> None:
        pass


@dataclass
class SweepStats:
    """What one ``execute`` did, by run_id."""

    in_shard: int = 0
    done_before: int = 0
    trained: list[str] = field(default_factory=list)
    diverged: list[str] = field(default_factory=list)
    collapsed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    busy: list[str] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)
    cleaned: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "in_shard": self.in_shard,
            "done_before": self.done_before,
            "trained": list(self.trained),
            "diverged": list(self.diverged),
            "collapsed": list(self.collapsed),
            "failed": dict(self.failed),
            "busy": list(self.busy),
            "corrupt_redone": list(self.corrupt),
            "stray_files_removed": list(self.cleaned),
        }


class _DataCache:
    """The last built dataset, reused while the data config is equal: all m and seeds of one n."""

    def __init__(self) -> None:
        self.key: str | None = None
        self.data: Any = None

    def get(self, recipe: Recipe) -> Any:
        from negscale import data as datasets

        key = recipe.data.model_dump_json()
        if key != self.key:
            self.key, self.data = None, None  # free the old one before building the next
            self.data, self.key = datasets.build(recipe.data), key
        return self.data


def execute(
    plan: Plan,
    results: str | Path,
    *,
    shard: tuple[int, int] | None = None,
    device: str | None = None,
    listener: Listener | None = None,
    report_to: str | None = None,
) -> SweepStats:
    """Train every run of this shard that has no valid record, each under a claim.

    A diverged run is recorded by the trainer and reported; an unexpected error
    in one run is reported and the sweep goes on (the run stays pending, so a
    re-run retries it); a user error (NegscaleError) stops the sweep.
    """
    from negscale.train import run

    listener = listener or SilentListener()
    results = Path(results)
    mine = plan.shard(shard)
    states = {r.run_id(): record_state(results, r.run_id()) for r in mine}
    todo = [r for r in mine if states[r.run_id()] != "done"]
    stats = SweepStats(in_shard=len(mine), done_before=len(mine) - len(todo))
    cache = _DataCache()
    if stats.done_before:
        listener.notice(f"{stats.done_before} of {len(mine)} runs already recorded: skipped")
    listener.begin(len(todo))
    for recipe in todo:
        rid = recipe.run_id()
        held = claim(results, rid)
        if held is None:
            stats.busy.append(rid)
            listener.notice(f"run {rid} is being trained by another process: skipped")
            listener.finished(recipe, None, 0.0)
            continue
        # try/finally rather than `with`: a signal arriving while __enter__ runs
        # would skip __exit__ and leave the lock behind.
        try:
            for stray in stray_files(results, rid):
                stray.unlink(missing_ok=True)
                stats.cleaned.append(str(stray))
            state = record_state(results, rid)
            if state == "done":  # finished by another process since we looked
                listener.finished(recipe, None, 0.0)
                continue
            if state == "corrupt":
                path = record_path(results, rid)
                listener.notice(f"corrupt run record {path}: removed, redoing the run")
                path.unlink(missing_ok=True)
                stats.corrupt.append(rid)
            listener.started(recipe)
            start = time.perf_counter()
            try:
                record = run(
                    recipe,
                    results,
                    device=device,
                    progress=False,
                    data=cache.get(recipe),
                    notice=listener.notice,
                    report_to=report_to,
                )
            except NegscaleError:
                raise
            except Exception as exc:
                stats.failed[rid] = f"{type(exc).__name__}: {exc}"
                listener.notice(f"run {rid} (m={recipe.m}, n={recipe.data.n}) failed: {exc}")
                listener.finished(recipe, None, time.perf_counter() - start)
                continue
            stats.trained.append(rid)
            if record.status == "diverged":
                stats.diverged.append(rid)
            elif record.status == "collapsed":
                stats.collapsed.append(rid)
            listener.finished(recipe, record, time.perf_counter() - start)
        finally:
            held.release()
    return stats
