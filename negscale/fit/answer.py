"""One n group's headline answer: the tested levels, narrowed by a checked law.

The tested levels give a status, a point and an interval that never claims
more than they show (:mod:`negscale.fit.levels`). A law (:mod:`negscale.fit.laws`)
may narrow that interval, only where

* the study has seeds (without them the noise is estimated from the same
  residuals a law would be checked against, so no law can be checked),
* it passes its checks (lack of fit against the cells' noise, and the
  leave-one-level-out predictions next to its m_sat), and
* its m_sat lies inside the tested range with at least two levels on either
  side and no gap wider than MAX_GAP doublings around it (dense levels).

Every form that passes counts: the law's interval is the hull of their
bootstrap intervals, so the choice between equally good shapes is inside it.
The answer is the intersection of that hull with the levels' interval. When
they do not overlap, one of them is wrong (a law can pass its checks and be
off; one unlucky cell can make the levels claim too much) and the data cannot
say which: the interval then spans both, with a note.
A law whose m_sat lies past the largest m is an extrapolation: the headline
stays a lower bound and the law's number goes to the details.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from negscale.fit import laws, levels
from negscale.fit.cells import Curve

MAX_GAP = 1.5  # doublings between the tested levels around a law's m_sat
BASIS_LEVELS = "tested levels"
BASIS_LAW = "law checked on dense levels"
BASIS_EXTRAPOLATED = "extrapolated"

Bound = float | None


@dataclass
class Answer:
    """The headline answer for one n group, with what it rests on."""

    n: float
    runs: int
    status: str
    m_sat: float | None
    ci: tuple[Bound, Bound]
    basis: str
    reading: levels.Reading
    laws: list[laws.LawAnswer] = field(default_factory=list)
    used: list[str] = field(default_factory=list)  # forms that narrowed the interval
    joint_ci: tuple[Bound, Bound] = (None, None)  # at the level γ's joint coverage needs
    extrapolated: dict | None = None  # a law's m_sat beyond the data
    note: str = ""
    m_levels: np.ndarray = field(default_factory=lambda: np.empty(0))
    scatter: float = 1.0  # the tested levels' se were scaled by √scatter (overdispersion)

    @property
    def decline(self) -> levels.Decline | None:
        return self.reading.decline

    @property
    def bracket(self) -> tuple[Bound, Bound]:
        """The two tested levels around m_sat (an open side for a bound)."""
        m = self.m_levels
        if self.status == levels.NOT_REACHED:
            return float(m[-1]), None
        if self.status == levels.SATURATED or self.m_sat is None:
            return None, float(m[0])
        below, above = m[m <= self.m_sat], m[m >= self.m_sat]
        return (
            float(below[-1]) if below.size else None,
            float(above[0]) if above.size else None,
        )


def dense_around(m: np.ndarray, point: float) -> bool:
    """At least two levels either side of ``point``, the two nearest ≤ MAX_GAP apart."""
    if not np.isfinite(point) or point < m[0] or point > m[-1]:
        return False
    t, tp = np.log2(m), np.log2(point)
    below, above = t[t <= tp], t[t > tp]
    return below.size >= 2 and above.size >= 2 and above[0] - below[-1] <= MAX_GAP


def rise(curve: Curve, decline: levels.Decline | None) -> Curve:
    """The levels up to the best one when the metric declines past it."""
    if decline is None:
        return curve
    keep = curve.m <= decline.from_m
    return replace(
        curve,
        m=curve.m[keep],
        centre=curve.centre[keep],
        se=curve.se[keep],
        dof=curve.dof[keep],
        k=curve.k[keep],
        k_all=curve.k_all[keep],
        sd=curve.sd[keep],
    )


@dataclass
class Started:
    """One n group up to its laws' refits: its rising part and each form's checking."""

    curve: Curve
    part: Curve
    checkings: list[laws.Checking]
    note: str


def start_group(
    curve: Curve, eps: float, *, seeded: bool, reps: int, rng: np.random.Generator
) -> Started:
    """The group's point fits and every random draw of its checks, in the order they are taken."""
    part = rise(curve, levels.find_decline(curve))
    if not seeded:
        return Started(curve, part, [], "no seeds: no law can be checked against the noise")
    noise_dof = float(np.min(part.dof))
    checkings = [laws.start_check(form, part, eps, noise_dof, reps, rng)
                 for form in laws.FORMS.values()]  # fmt: skip
    kept = [c for c in checkings if c is not None]
    return Started(curve, part, kept, "" if kept else "too few levels to check a law")


def finish_group(
    started: Started, checked: list[laws.LawAnswer], eps: float, *, alpha: float,
    joint_alpha: float,
) -> Answer:  # fmt: skip
    """The headline answer from the finished checks (and its interval at ``joint_alpha``)."""
    curve, part = started.curve, started.part
    scatter = overdispersion(checked)
    wide = replace(curve, se=curve.se * np.sqrt(scatter)) if scatter > 1.0 else curve
    reading = levels.read(wide, eps, alpha)
    base = Answer(
        curve.n, int(curve.k_all.sum()), reading.status, reading.m_sat, reading.interval,
        BASIS_LEVELS, reading, checked, note=started.note, m_levels=curve.m, scatter=scatter,
    )  # fmt: skip
    out = _narrow(base, part, alpha)
    joint = _narrow(replace(base, reading=levels.read(wide, eps, joint_alpha)), part, joint_alpha)
    out.joint_ci = joint.ci if joint.basis == out.basis else _hull(out.ci, joint.reading.interval)
    return out


def overdispersion(checked: list[laws.LawAnswer]) -> float:
    """How much more the centres scatter than their seeds say (≥ 1).

    When even the best-fitting form leaves residuals beyond the cells' own
    noise (its lack-of-fit test fails), either no form describes the curve or
    the cells vary more than their seeds show (a shared data order, an
    unlucky few seeds). Either way the tested levels must not read that
    scatter as signal: their standard errors are scaled by √(RSS/dof) of
    that best form. 1 when some form fits within the noise.
    """
    usable = [la for la in checked if la.dof >= 1]
    if not usable:
        return 1.0
    best = min(usable, key=lambda la: la.rss / la.dof)
    if best.check_p >= laws.CHECK_P:
        return 1.0
    return max(1.0, best.rss / best.dof)


def _hull(a: tuple[Bound, Bound], b: tuple[Bound, Bound]) -> tuple[Bound, Bound]:
    lo = None if a[0] is None or b[0] is None else min(a[0], b[0])
    hi = None if a[1] is None or b[1] is None else max(a[1], b[1])
    return lo, hi


def _narrow(ans: Answer, part: Curve, alpha: float) -> Answer:
    """The levels' answer narrowed by the laws that pass, at level 1 − α."""
    passing = [la for la in ans.laws if la.passed]
    if not passing:
        if ans.laws and not ans.note:
            ans.note = "no form passes its checks: " + "; ".join(
                f"{la.form}: {la.why}" for la in ans.laws
            )
        return ans
    best = min(passing, key=lambda la: la.aicc)
    cis = [la.ci(alpha) for la in passing]
    lo_law, hi_law = min(c[0] for c in cis), max(c[1] for c in cis)
    L, U = ans.reading.interval
    lo, hi = max(L or 0.0, lo_law), min(U if U is not None else np.inf, hi_law)
    names = [la.form for la in passing]
    m = part.m
    if lo > hi:  # one of them is wrong and the data cannot say which: span both
        ans.note = (
            f"the law ({', '.join(names)}) and the tested levels disagree: the interval spans both"
        )
        lo, hi = min(L or 0.0, lo_law), max(U if U is not None else np.inf, hi_law)
        point = float(np.clip(best.m_sat, lo, hi))
        return replace(
            ans, status=levels.REACHED, m_sat=point, ci=_within(lo, hi, m), basis=BASIS_LAW,
            used=names,
        )  # fmt: skip
    if best.m_sat > m[-1]:
        ans.extrapolated = {"m_sat": best.m_sat, "ci": [lo_law, hi_law], "forms": names}
        if ans.status != levels.NOT_REACHED:
            return ans
        ans.basis = BASIS_LEVELS
        return ans
    if best.m_sat < m[0]:
        # the law puts m_sat below the smallest m: an upper bound, if the levels show no
        # gain above ε anywhere and the law's own upper end stays inside the tested range
        cap = min(U if U is not None else np.inf, max(float(m[0]), hi_law))
        if L is None and cap <= m[-1]:
            return replace(
                ans, status=levels.SATURATED, m_sat=None, ci=(None, cap), basis=BASIS_LAW,
                used=names,
            )  # fmt: skip
        return ans
    if not dense_around(m, best.m_sat):
        ans.note = f"the law's m_sat ({best.m_sat:.3g}) is not between dense levels: not used"
        return ans
    point = float(np.clip(best.m_sat, lo, hi))
    return replace(
        ans, status=levels.REACHED, m_sat=point, ci=_within(lo, hi, m), basis=BASIS_LAW,
        used=names,
    )  # fmt: skip


def _within(lo: float, hi: float, m: np.ndarray) -> tuple[Bound, Bound]:
    """An interval's ends as the data can state them: an end past the tested
    levels is an extrapolation, so it is open (None), never a number."""
    return (lo if lo >= m[0] else None, hi if hi <= m[-1] else None)
