"""An adaptive study's rounds, as pure functions of the runs recorded so far.

Round 0 is a coarse start: a few levels log-spaced over the m range, every n,
two seeds. Each later round fits the runs of the rounds before it and trains
what :func:`negscale.fit.suggest.suggest` says would narrow the widest
answers most, until every n's interval is at most ``target`` doublings wide,
the run budget is spent, or the answers left open are bounds the source's m
range cannot close. Nothing here trains: :mod:`negscale.sweep.adaptive` runs
the rounds on real recipes, ``benchmarks/bench_adaptive.py`` on simulated
studies with a known answer; both read the same rules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from negscale.fit.pipeline import fit
from negscale.fit.report import FitReport
from negscale.fit.suggest import Suggestion, blocked, pinned, suggest

START_LEVELS = 3  # levels of the coarse start, log-spaced over the m range
START_SEEDS = 2
PINNED = "pinned"
BUDGET = "budget spent"
BOUND = "bound the m range cannot close"


def start_design(m_lo: int, m_hi: int, ns: list[float], levels: int = START_LEVELS,
                 seeds: int = START_SEEDS) -> list[tuple[int, float, int]]:  # fmt: skip
    """(m, n, seed) of round 0: ``levels`` distinct integers log-spaced over [m_lo, m_hi],
    ``seeds`` seeds each but one at the smallest m, where the curve is steep and seed
    noise does not move the answer (later rounds add seeds where noise sets it)."""
    ms = sorted({round(x) for x in np.geomspace(m_lo, m_hi, levels)})
    return [(m, float(n), s) for n in ns for m in ms
            for s in range(1 if m == ms[0] and len(ms) > 1 else seeds)]  # fmt: skip


def round_size(groups: int, slots: int = 1) -> int:
    """Runs a round: one per n group, at least two, and at least ``slots`` (the runs
    the study trains at once: a round smaller than that would leave processes idle).

    Why so small: a round is planned from the fit before it, and the study stops
    as soon as every interval is pinned, so a large round spends runs the answer
    no longer needs. On the simulated studies (bench_adaptive, 20 families x 8
    draws) two a group, at least four, used a median 0.67x the grid's runs; one a
    group, at least two: 0.53x, at the same coverage (94-97 %). One run a round
    was cheaper still where it reached the target, but reached it less often.
    With one seed at the start's smallest m as well: 0.48x (20 x 12 draws,
    coverage 94 %); with suggest's rules of December 2026 as well: 0.43x
    (21 x 12 draws, reached 74 %, coverage 93 %).
    """
    return max(2, groups, slots)


@dataclass
class Round:
    """What the runs so far say, and what to train next (nothing when ``stop`` is set)."""

    report: FitReport | None
    runs: list[Suggestion] = field(default_factory=list)
    stop: str | None = None
    why: list[str] = field(default_factory=list)  # what blocks the answers left open


def next_round(
    table: pd.DataFrame,
    *,
    target: float,
    budget_left: int,
    cap: Callable[[float], int | None],
    fit_kwargs: dict | None = None,
    slots: int = 1,
) -> Round:
    """Fit ``table`` (the runs so far) and plan the next round (``slots``: see
    :func:`round_size`)."""
    report = fit(table, **(fit_kwargs or {}))
    if all(pinned(g, target) for g in report.groups):
        return Round(report, stop=PINNED)
    if budget_left <= 0:
        return Round(report, stop=BUDGET)
    tested = {(int(m), float(n), int(s)) for m, n, s in
              zip(table["m"], table["n"], table["seed"], strict=True)}  # fmt: skip
    k = min(round_size(len(report.groups), slots), budget_left)
    runs = suggest(report, k, tested, target=target, cap=cap, defer=True)
    if not runs:
        why = blocked(report, cap, target) or ["no run left to suggest would narrow them"]
        return Round(report, stop=BOUND, why=why)
    return Round(report, runs)
