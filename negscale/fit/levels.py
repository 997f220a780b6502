"""What the tested levels alone say about m_sat: a status, a point, an interval.

The gain per doubling at m is g(m) = f(2m) − f(m) (score units: higher is
better). m_sat(ε) is the smallest m past which g ≤ ε everywhere. Between two
tested levels the data say nothing about where g crosses ε, so this reading
never claims more than the levels show:

* **point**: the cell centres joined by straight lines in log m; the last m
  whose doubling gains more than ε, interpolated linearly (top-down).
* **lower end L**: the largest tested level a whose gain is shown to exceed
  ε. With b the farthest level within one doubling of a, g(a) ≥ f(b) − f(a)
  when f rises (more negatives do not hurt there); when the next level is
  more than a doubling away, g(a) ≥ (f(b) − f(a)) / log2(b/a) when the gain
  per doubling falls with m (the curve bends over, concave in log m). The
  bound's lower confidence limit must exceed ε; then m_sat > a.
* **upper end U**: the smallest level u past L whose gain is shown to be at
  most ε: g(u) ≤ f(b) − f(u) with b the first level at least a doubling up
  (f rises in between), or, in the last doubling, the secant to the last
  level (or from the level before) under the same bend. Its upper confidence
  limit must be ≤ ε; then, with the gain falling past u, m_sat ≤ u.

Each limit is one-sided at α/2 with Student's t on the cells' degrees of
freedom; L keeps the largest of the levels' claims, so its tests are
Bonferroni-corrected over the levels (one unlucky cell among many past the
crossing must not claim a gain the curve does not have). [L, U] is a 1 − α
interval that spans at least the two tested levels around the crossing: on
a thin grid, a bracket. A decline (the metric
falls beyond noise past some level) is a finding: it is reported, and the
bounds read the rise before it (an upper bound then uses the best level past
u + one doubling, not the fallen last one).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from negscale.fit.cells import Curve
from negscale.fit.quantiles import norm_ppf, t_ppf

REACHED = "reached"
NOT_REACHED = "not reached"
SATURATED = "saturated at the smallest m"
DECLINE_Z = 3.5  # a fall this many sds below the best level is a decline, not noise


@dataclass(frozen=True)
class Decline:
    """The metric falls past ``from_m`` (its best level) down to ``to_m``."""

    from_m: float
    to_m: float
    drop: float  # in the metric's units
    drop_sd: float  # in standard errors of the difference


@dataclass(frozen=True)
class Reading:
    """The tested levels' answer for one n group (open ends are None)."""

    status: str
    m_sat: float | None  # the centres' crossing; None unless reached
    lo: float | None
    hi: float | None
    decline: Decline | None

    @property
    def interval(self) -> tuple[float | None, float | None]:
        return self.lo, self.hi


def gains_at_levels(c: Curve) -> tuple[np.ndarray, np.ndarray]:
    """(t', g(t')) at the breakpoints of the interpolated gain, t' = log2 m.

    With the centres joined linearly in t = log2 m, g(t') = f(t'+1) − f(t') is
    linear between the levels and the levels less one doubling, so its values
    there describe it exactly.
    """
    t, f = c.t, c.centre
    if t[-1] - t[0] < 1.0:
        return np.empty(0), np.empty(0)
    knots = np.unique(np.concatenate([t, t - 1.0]))
    knots = knots[(knots >= t[0]) & (knots <= t[-1] - 1.0)]
    return knots, np.interp(knots + 1.0, t, f) - np.interp(knots, t, f)


def crossing(c: Curve, eps: float) -> tuple[str, float | None]:
    """Status and point m_sat from the centres (top-down, linear in log m)."""
    knots, g = gains_at_levels(c)
    if knots.size == 0:
        raise ValueError("levels span less than one doubling")
    over = g > eps
    if over[-1]:
        return NOT_REACHED, None
    if not over.any():
        return SATURATED, None
    j = int(np.nonzero(over)[0][-1])  # g > ε at knot j, ≤ ε at j + 1
    w = (g[j] - eps) / (g[j] - g[j + 1])
    return REACHED, float(2.0 ** (knots[j] + w * (knots[j + 1] - knots[j])))


def find_decline(c: Curve) -> Decline | None:
    """A fall beyond noise past the best level (DECLINE_Z sds below it)."""
    p = int(np.argmax(c.centre))
    if p == len(c) - 1:
        return None
    later = np.arange(p + 1, len(c))
    sd = np.sqrt(c.se[p] ** 2 + c.se[later] ** 2)
    z = (c.centre[p] - c.centre[later]) / np.maximum(sd, 1e-300)
    j = int(later[np.argmax(z)])
    if z.max() < DECLINE_Z:
        return None
    return Decline(float(c.m[p]), float(c.m[j]), float(c.centre[p] - c.centre[j]), float(z.max()))


def _quantile(alpha: float, dof: float) -> float:
    """One-sided α/2 critical value (Student's t; normal when dof is large or unknown)."""
    if not np.isfinite(dof) or dof <= 0 or dof > 1000:
        return norm_ppf(1.0 - alpha / 2.0)
    return t_ppf(1.0 - alpha / 2.0, dof)


def lower_evidence(c: Curve, a: int) -> tuple[float, float, float] | None:
    """(bound, se, dof) with g(m_a) ≥ bound, or None for the last level."""
    t = c.t
    if a >= len(c) - 1:
        return None
    within = np.nonzero((t > t[a]) & (t <= t[a] + 1.0 + 1e-9))[0]
    b = int(within[-1]) if within.size else a + 1
    w = max(1.0, t[b] - t[a])
    est = (c.centre[b] - c.centre[a]) / w
    se = np.hypot(c.se[a], c.se[b]) / w
    return float(est), float(se), float(min(c.dof[a], c.dof[b]))


def upper_evidence(c: Curve, u: int, declined: bool) -> tuple[float, float, float] | None:
    """(bound, se, dof) with g(m_u) ≤ bound."""
    t = c.t
    up = np.nonzero(t >= t[u] + 1.0 - 1e-9)[0]
    if up.size:
        b = int(up[0])
        if declined:  # the fallen last levels understate f(2m): use the best one past u+1
            b = int(up[np.argmax(c.centre[up])])
        est, se = c.centre[b] - c.centre[u], np.hypot(c.se[u], c.se[b])
    elif u < len(c) - 1:
        b = len(c) - 1
        w = t[b] - t[u]
        est, se = (c.centre[b] - c.centre[u]) / w, np.hypot(c.se[u], c.se[b]) / w
    elif u > 0:
        b = u - 1
        w = t[u] - t[b]
        est, se = (c.centre[u] - c.centre[b]) / w, np.hypot(c.se[u], c.se[b]) / w
    else:
        return None
    return float(est), float(se), float(min(c.dof[u], c.dof[b]))


def bounds(c: Curve, eps: float, alpha: float, declined: bool) -> tuple[float | None, float | None]:
    """[L, U] of the module docstring; None where the data leave it open."""
    lo_i = None
    tests = max(len(c) - 1, 1)  # the largest of these claims is kept: Bonferroni over them
    for a in range(len(c) - 1):
        ev = lower_evidence(c, a)
        if ev is not None and ev[0] - _quantile(alpha / tests, ev[2]) * ev[1] > eps:
            lo_i = a
    start = 0 if lo_i is None else lo_i + 1
    hi_i = None
    for u in range(start, len(c)):
        ev = upper_evidence(c, u, declined)
        if ev is not None and ev[0] + _quantile(alpha, ev[2]) * ev[1] <= eps:
            hi_i = u
            break
    lo = None if lo_i is None else float(c.m[lo_i])
    hi = None if hi_i is None else float(c.m[hi_i])
    return lo, hi


def read(c: Curve, eps: float, alpha: float = 0.05) -> Reading:
    """The tested levels' reading of one n group at confidence 1 − α."""
    status, point = crossing(c, eps)
    decline = find_decline(c)
    lo, hi = bounds(c, eps, alpha, decline is not None)
    if status == NOT_REACHED:
        hi = None
    elif status == SATURATED:
        lo = None
    elif point is not None:
        point = float(np.clip(point, lo or 0.0, hi or np.inf))
    return Reading(status, point, lo, hi, decline)
