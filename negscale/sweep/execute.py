"""Execution: train every pending run of a shard, each under a claim, reporting to a listener.

Safe to repeat: a valid record means done, a corrupt one is removed and
redone, temp files of a killed write are removed under the claim, a run
another live process holds is skipped. This module has no Typer: the CLI
renders what :class:`Listener` reports.
"""

from __future__ import annotations

import time
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from negscale.cohort import cohorts
from negscale.config import Recipe
from negscale.errors import NegscaleError
from negscale.results import RunRecord, record_path
from negscale.sweep.locks import Claim, claim
from negscale.sweep.plan import Plan
from negscale.sweep.signals import signals_deferred
from negscale.sweep.state import record_state, stray_files
from negscale.sweep.workers import Failed, JobPlan, Workers, lent


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


def longest_first(recipes: list[Recipe]) -> list[Recipe]:
    """Runs in order of decreasing work (steps x batch, then m), ties in plan order.

    Why: with several runs at once, a grid in plan order ends on its largest n,
    and one worker trains the last long run while the others wait (about 6 %
    of the quickstart's wall on 2 cores); longest first leaves only short runs
    for the end. Run ids and records do not depend on the order.
    """
    return sorted(recipes, key=lambda r: (-r.train.steps * r.train.batch_size, -(r.m or 0)))


Held = list[tuple[Recipe, Claim]]


def execute(
    plan: Plan,
    results: str | Path,
    *,
    shard: tuple[int, int] | None = None,
    device: str | None = None,
    listener: Listener | None = None,
    report_to: str | None = None,
    jobs: int | JobPlan = 1,
    stack: bool | None = None,
    workers: Workers | None = None,
) -> SweepStats:
    """Train every run of this shard that has no valid record, each under a claim.

    A diverged run is recorded by the trainer and reported; an unexpected error
    in one run is reported and the sweep goes on (the run stays pending, so a
    re-run retries it); a user error (NegscaleError) stops the sweep. With
    ``jobs`` > 1 that many groups train at once, each in a worker process
    (:mod:`negscale.sweep.workers`); this process holds their claims. With
    ``stack`` (default: the job plan's, else True), runs of one design that
    differ only in their seed and m train together as one stacked model
    (:mod:`negscale.cohort`), else one at a time. ``workers``: the caller's pool
    for these jobs (:func:`negscale.sweep.workers.lent`), left to the caller to end.
    """
    if stack is None:
        stack = jobs.stack if isinstance(jobs, JobPlan) else True
    listener = listener or SilentListener()
    results = Path(results)
    mine = plan.shard(shard)
    states = {r.run_id(): record_state(results, r.run_id()) for r in mine}
    todo = [r for r in mine if states[r.run_id()] != "done"]
    stats = SweepStats(in_shard=len(mine), done_before=len(mine) - len(todo))
    if stats.done_before:
        listener.notice(f"{stats.done_before} of {len(mine)} runs already recorded: skipped")
    listener.begin(len(todo))
    running: dict[Future, tuple[Held, float]] = {}
    at_once = jobs.jobs if isinstance(jobs, JobPlan) else jobs
    if at_once > 1:
        todo = longest_first(todo)
    groups = cohorts(todo, at_once) if stack else [[r] for r in todo]
    try:
        if workers is not None:
            workers.notice = listener.notice
        pool = lent(workers) if workers else Workers(jobs, device, report_to, listener.notice)
        with pool as workers:
            for group in groups:
                held: Held = []
                try:  # a signal between two claims, or while the runs train in this process
                    for recipe in group:
                        with signals_deferred():  # the lock and its entry in held, together
                            _claim(results, recipe, stats, listener, held)
                    if not held:
                        continue
                    start = time.perf_counter()
                    for recipe, _ in held:
                        listener.started(recipe)
                    future = workers.submit([r for r, _ in held], results)
                    running[future] = (held, start)
                except BaseException:
                    if not any(h is held for h, _ in running.values()):
                        for _, c in held:
                            c.release()
                    raise
                while len(running) >= at_once:
                    _collect(workers, running, stats, listener, FIRST_COMPLETED)
            while running:
                _collect(workers, running, stats, listener, ALL_COMPLETED)
    finally:  # after the workers stopped: no claim is dropped under a run still training
        for held, _ in running.values():
            for _, c in held:
                c.release()
    return stats


def _claim(results: Path, recipe: Recipe, stats: SweepStats, listener: Listener,
           held: Held) -> None:  # fmt: skip
    """Claim a pending run into ``held`` (its stray files cleaned), or skip it.

    A run another live process holds is busy; one finished since the sweep
    looked is done; a corrupt record is removed so the run is redone. The
    claim joins ``held`` first thing, so a signal after it is released by the
    caller's handler with the group's other claims.
    """
    rid = recipe.run_id()
    mine = claim(results, rid)
    if mine is None:
        stats.busy.append(rid)
        listener.notice(f"run {rid} is being trained by another process: skipped")
        listener.finished(recipe, None, 0.0)
        return
    held.append((recipe, mine))
    for stray in stray_files(results, rid):
        stray.unlink(missing_ok=True)
        stats.cleaned.append(str(stray))
    state = record_state(results, rid)
    if state == "done":  # finished by another process since we looked
        listener.finished(recipe, None, 0.0)
        mine.release()  # idempotent: a signal before the pop releases it again, harmlessly
        held.pop()
        return
    if state == "corrupt":
        path = record_path(results, rid)
        listener.notice(f"corrupt run record {path}: removed, redoing the run")
        path.unlink(missing_ok=True)
        stats.corrupt.append(rid)


def _collect(
    workers: Workers,
    running: dict[Future, tuple[Held, float]],
    stats: SweepStats,
    listener: Listener,
    until: str,
) -> None:
    """Account for the groups that have ended (at least one), releasing their claims."""
    done, _ = wait(list(running), return_when=until)
    for future in done:
        held, start = running[future]
        try:
            outcomes: list = workers.result(future)
        except NegscaleError:
            raise
        except Exception as exc:  # the group could not start (e.g. its data)
            outcomes = [Failed(type(exc).__name__, str(exc))] * len(held)
        finally:  # released before it leaves ``running``: a signal in between drops nothing
            for _, c in held:
                c.release()
            running.pop(future)
        seconds = (time.perf_counter() - start) / len(held)  # a group's time, shared
        for (recipe, _), outcome in zip(held, outcomes, strict=True):
            _account(recipe, outcome, seconds, stats, listener)


def _account(recipe: Recipe, outcome: RunRecord | Failed, seconds: float, stats: SweepStats,
             listener: Listener) -> None:  # fmt: skip
    """One ended run into the stats and the listener."""
    if isinstance(outcome, Failed):
        rid = recipe.run_id()
        stats.failed[rid] = f"{outcome.kind}: {outcome.message}"
        listener.notice(f"run {rid} (m={recipe.m}, n={recipe.data.n}) failed: {outcome.message}")
        listener.finished(recipe, None, seconds)
        return
    stats.trained.append(outcome.run_id)
    if outcome.status == "diverged":
        stats.diverged.append(outcome.run_id)
    elif outcome.status == "collapsed":
        stats.collapsed.append(outcome.run_id)
    listener.finished(recipe, outcome, seconds)
