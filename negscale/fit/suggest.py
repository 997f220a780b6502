"""Which runs would narrow the answer most: the fit's own uncertainty, read per n.

For each n group whose interval is wider than ``target`` doublings (or open),
from the answer alone:

* **not reached** (a lower bound): more negatives — the next doublings past
  the largest m, up to what the source can supply; first a level in the top
  gap when it is wider than ``GAP`` (the curve may flatten inside it);
* **saturated at the smallest m** (an upper bound): fewer — halvings below
  the smallest m, down to 1; once m = 1 is tested, [1, upper] is a closed
  interval and is narrowed as a reached answer is;
* **reached**, wider than ``target``: where the interval spans gaps between
  tested levels wider than ``GAP``, and in the gap holding m_sat once it is
  as wide as the target, a new level at the gap's geometric middle (the
  crossing may lie in it and no level can say where); where the forms that
  pass their checks disagree about m_sat beyond their own noise, a seed at
  the tested level where their curves differ most per run (that run tells
  them apart); and more seeds at the two levels around m_sat (the interval
  is set by noise).

Groups are served widest interval first, round-robin, so K runs spread over
the n that need them. A new level gets ``seeds`` seeds (0, 1, …); more seeds
at a level take the next unused seed numbers. Pure: the same report and runs
give the same suggestions, which is what makes an adaptive sweep's rounds
reproducible from its records.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from negscale.fit import levels
from negscale.fit.fmt import fmt
from negscale.fit.report import FitReport, GroupReport

GAP = 1.5  # doublings between tested levels beyond which a new level beats more seeds


@dataclass(frozen=True)
class Suggestion:
    """One run to train next, and why."""

    m: int
    n: float
    seed: int
    reason: str
    deferred: bool = False  # useful only once the runs before it are in (see suggest)

    def to_dict(self) -> dict:
        n = int(self.n) if float(self.n).is_integer() else self.n
        return {"m": self.m, "n": n, "seed": self.seed, "reason": self.reason,
                "deferred": self.deferred}  # fmt: skip


def width(g: GroupReport) -> float:
    """The answer's interval width in doublings (∞ when open)."""
    lo, hi = g.answer.ci
    if lo is None or hi is None or lo <= 0:
        return float("inf")
    return float(np.log2(hi / lo))


def pinned(g: GroupReport, target: float) -> bool:
    """The interval is at most ``target`` doublings wide; for an answer saturated at a
    tested m = 1 (nothing smaller to test), [1, upper end] is that interval."""
    a = g.answer
    if a.status == levels.SATURATED and a.ci[1] is not None and a.m_levels[0] <= 1:
        return bool(np.log2(max(a.ci[1], 1.0)) <= target)  # m = 1 closes it below
    return width(g) <= target


def _seeds_at(runs: set[tuple[int, float, int]], m: int, n: float) -> list[int]:
    return sorted(s for mm, nn, s in runs if mm == m and nn == n)


def _new_level(g: GroupReport, m: float, runs, seeds: int, why: str) -> list[Suggestion]:
    level = round(m)
    taken = _seeds_at(runs, level, g.n)
    todo = [s for s in range(seeds) if s not in taken]
    return [Suggestion(level, g.n, s, why) for s in todo]


def _more_seeds(g: GroupReport, level: float, runs, why: str) -> list[Suggestion]:
    taken = _seeds_at(runs, int(level), g.n)
    nxt = (max(taken) + 1) if taken else 0
    return [Suggestion(int(level), g.n, nxt, why)]


def _for_group(
    g: GroupReport, runs, seeds: int, cap: Callable[[float], int | None], target: float
) -> list[Suggestion]:
    """This group's candidate runs, most useful first (module docstring)."""
    a = g.answer
    m = a.m_levels
    if a.status == levels.NOT_REACHED:
        top = cap(g.n)
        out = _top_gap(g, runs)
        for k in (2, 4):
            want = m[-1] * k if top is None else min(m[-1] * k, top)
            if want > m[-1] and not any(s.m == int(want) for s in out):
                why = f"m = {fmt(want)} at n = {fmt(g.n)}: not reached by m = {fmt(m[-1])}"
                out += _new_level(g, want, runs, seeds, why)
        return out
    if a.status == levels.SATURATED:
        out = []
        for k in (2, 4):
            want = max(1.0, m[0] / k)
            if want < m[0] and not any(s.m == round(want) for s in out):
                why = f"m = {fmt(want)} at n = {fmt(g.n)}: saturated already at m = {fmt(m[0])}"
                out += _new_level(g, want, runs, seeds, why)
        if a.ci[1] is None:  # not yet shown: the gain at the smallest levels is within noise
            for level in m[:2]:
                why = (
                    f"seeds at m = {fmt(level)}, n = {fmt(g.n)}: the gain there is not yet "
                    "shown to be at most ε"
                )
                out += _more_seeds(g, float(level), runs, why)
        elif not out:  # m = 1 closes it below: narrow [1, upper] as a reached answer is
            out += _for_reached(g, runs, seeds, target)
        return out
    return _for_reached(g, runs, seeds, target)


def _top_gap(g: GroupReport, runs) -> list[Suggestion]:
    """Not reached across a gap wider than GAP at the top of the tested range: the
    curve may flatten inside the gap (a gain spread over several doublings reads as
    one that goes on), so a level in its middle comes before larger m."""
    m = g.answer.m_levels
    if m.size < 2 or np.log2(m[-1] / m[-2]) <= GAP:
        return []
    mid = round(float(np.sqrt(m[-1] * m[-2])))
    why = (
        f"m = {fmt(mid)} at n = {fmt(g.n)}: not reached by m = {fmt(m[-1])}, but no level "
        f"is tested between {fmt(m[-2])} and {fmt(m[-1])}"
    )
    return _new_level(g, mid, runs, 1, why)


def _for_reached(g: GroupReport, runs, seeds: int, target: float) -> list[Suggestion]:
    """Gaps first (a new level, one seed, at each gap the interval spans), then where
    the forms that pass disagree most, then seeds around m_sat (noise)."""
    a = g.answer
    t = np.log2(a.m_levels)
    lo, hi = a.ci
    t_lo = np.log2(lo) if lo else t[0]
    t_hi = np.log2(hi) if hi else t[-1]
    point = np.log2(a.m_sat) if a.m_sat else 0.5 * (t_lo + t_hi)
    out: list[Suggestion] = []
    gaps = [(t[i + 1] - t[i], i) for i in range(t.size - 1) if t[i + 1] > t_lo and t[i] < t_hi]
    for size, i in sorted(gaps, reverse=True):
        mid = round(2.0 ** (0.5 * (t[i] + t[i + 1])))
        # the gap holding the point estimate is split once it is as wide as the target:
        # an interval bracketed by two levels a target apart rarely ends narrower
        holds = t[i] <= point <= t[i + 1] and size >= target - 1e-9
        if (size > GAP or holds) and mid not in (int(a.m_levels[i]), int(a.m_levels[i + 1])):
            why = (
                f"m = {fmt(mid)} at n = {fmt(g.n)}: the crossing may lie between "
                f"{fmt(a.m_levels[i])} and {fmt(a.m_levels[i + 1])}, where no level is tested"
            )
            out += _new_level(g, mid, runs, 1, why)
    out += _discriminating(g, runs)
    below, above = a.m_levels[t <= point], a.m_levels[t > point]
    # levels around m_sat further apart than GAP: the new level between them narrows the
    # interval first, so seeds there are only worth it when nothing better is left
    far = bool(below.size and above.size and np.log2(above[0] / below[-1]) > GAP)
    for level in [float(x[0]) for x in (below[-1:], above[:1]) if x.size]:
        why = f"seeds at m = {fmt(level)}, n = {fmt(g.n)}: the interval is set by noise"
        out += [replace(s, deferred=far) for s in _more_seeds(g, level, runs, why)]
    return out


def _discriminating(g: GroupReport, runs) -> list[Suggestion]:
    """Seeds at the tested levels where m_sat is decided, when the forms that pass
    disagree about it beyond their own noise."""
    from negscale.fit.laws import FORMS

    a = g.answer
    passing = [la for la in a.laws if la.passed]
    if len(passing) < 2:
        return []
    cis = [la.ci(0.05) for la in passing]
    widths = [np.log2(hi / lo) for lo, hi in cis if lo > 0 and np.isfinite(hi)]
    hull = np.log2(max(c[1] for c in cis) / max(min(c[0] for c in cis), 1e-300))
    if not widths or not hull > min(widths) + 0.25:
        return []
    c = g.curve
    preds = []
    for la in passing:
        form = FORMS[la.form]
        theta = np.array([[la.params[p] for p in form.params]])
        preds.append(la.params["E"] - la.params["A"] * form.shape(theta, c.m)[0])
    # one more run at a level adds (spread / sd)² to the evidence between the forms,
    # whatever its seeds so far; divided by the level's se instead, the levels already
    # seeded most would look the most telling and collect every later seed
    spread = (np.max(preds, axis=0) - np.min(preds, axis=0)) / c.sd
    # where the crossing is decided: from two doublings below m_sat to three above; a
    # seed at each of those levels, widest disagreement first, lends every form's lack
    # of fit the power to reject the shapes the data do not follow
    point = a.m_sat or np.sqrt(c.m[0] * c.m[-1])
    window = np.nonzero((c.m >= point / 4) & (c.m <= point * 8))[0]
    names = ", ".join(la.form for la in passing)
    out = []
    for i in window[np.argsort(-spread[window])]:
        why = (
            f"seeds at m = {fmt(c.m[i])}, n = {fmt(g.n)}: the forms that fit ({names}) "
            "disagree about m_sat; more seeds where it is decided tell them apart"
        )
        out += _more_seeds(g, float(c.m[i]), runs, why)
    return out


def suggest(
    report: FitReport,
    k: int,
    runs: set[tuple[int, float, int]],
    *,
    target: float = 1.0,
    seeds: int = 2,
    cap: Callable[[float], int | None] | None = None,
    defer: bool = False,
) -> list[Suggestion]:
    """Up to ``k`` runs (m, n, seed) that would narrow the widest answers most.

    ``runs`` are the (m, n, seed) already tested; ``cap(n)`` the largest m the
    negative source can supply at n (None: no limit). With ``defer`` (an adaptive
    round, refitted before its next runs) the deferred suggestions are left out while
    others remain: seeds at levels that a new level between them is about to make moot.
    """
    cap = cap or (lambda n: None)
    open_groups = sorted(
        (g for g in report.groups if not pinned(g, target)), key=width, reverse=True
    )
    queues = [_for_group(g, runs, seeds, cap, target) for g in open_groups]
    useful = [[s for s in q if not s.deferred] for q in queues]
    if defer and any(useful):  # the deferred ones only when nothing else is left
        queues = useful
    out: list[Suggestion] = []
    seen: set[tuple[int, float, int]] = set(runs)
    while len(out) < k and any(queues):
        for q in queues:
            while q:
                s = q.pop(0)
                if (s.m, s.n, s.seed) not in seen:
                    seen.add((s.m, s.n, s.seed))
                    out.append(s)
                    break
            if len(out) >= k:
                break
    return out


def blocked(report: FitReport, cap: Callable[[float], int | None], target: float) -> list[str]:
    """Groups whose answer is a bound the m range cannot close, and what to add."""
    out = []
    for g in report.groups:
        a = g.answer
        top = cap(g.n)
        if a.status == levels.NOT_REACHED and top is not None and a.m_levels[-1] >= top:
            out.append(
                f"n = {fmt(g.n)}: not reached by m = {fmt(a.m_levels[-1])}, the most the source "
                "supplies here: add larger m (a larger batch, or source independent/pool)"
            )
    return out
