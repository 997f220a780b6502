"""How m_sat moves with n: γ in m_sat ∝ n^γ, from the per-n answers alone.

Each n group's answer is an interval for log m_sat, some of them open on one
side (a "not reached" group is a lower bound, a "saturated" one an upper
bound). A line log m_sat = c + γ·log n is *consistent* with the study when it
passes through every group's interval. The set of consistent (c, γ) is a
polygon; γ's interval is its extent in γ, and a prediction at a new n is the
extent of c + γ·log n over it (two small linear programmes each). Censored
groups enter as the bounds they are, so a study whose largest n is not
reached still bounds γ from below.

Coverage: with per-n intervals at level 1 − α/G (G groups), all of them hold
the true line with probability ≥ 1 − α, and then the true γ lies in the
polygon's extent: γ's interval is a 1 − α interval whatever the forms
behind the answers. When no line passes through every interval (the per-n
answers are not on one power law, or one interval missed), the intervals are
widened by a common factor until one does, and the result says so.

The point value is the least-squares slope through the groups whose m_sat
was reached (two or more), clipped into the interval.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linprog

THEORY_GAMMA = {"supervised": 0.5, "self-supervised": 1.0}
PINNED_WIDTH = 2.0  # a γ interval wider than this is reported as a range, without a point

Bound = float | None


@dataclass
class Scaling:
    """γ and where it comes from."""

    gamma: float | None
    ci: tuple[Bound, Bound]
    basis: str  # "per-n answers", "per-n bounds", or why there is no γ
    theory: float | None
    n: list[float]
    widened: float = 1.0  # factor the per-n intervals were widened by (1: not at all)

    @property
    def pinned(self) -> bool:
        """Both ends finite and at most PINNED_WIDTH apart: a γ worth predicting with."""
        lo, hi = self.ci
        return lo is not None and hi is not None and hi - lo <= PINNED_WIDTH

    def to_dict(self) -> dict:
        return {
            "gamma": self.gamma,
            "gamma_ci": list(self.ci),
            "basis": self.basis,
            "theory": self.theory,
            "groups": self.n,
            "widened": self.widened,
        }


def _constraints(
    x: np.ndarray, boxes: list[tuple[Bound, Bound]], widen: float
) -> tuple[np.ndarray, np.ndarray]:
    """A_ub·(c, γ) ≤ b_ub for log lo_i − w ≤ c + γ·x_i ≤ log hi_i + w."""
    rows, rhs = [], []
    w = np.log(widen)
    for xi, (lo, hi) in zip(x, boxes, strict=True):
        if lo is not None and lo > 0:
            rows.append([-1.0, -xi])
            rhs.append(-(np.log(lo) - w))
        if hi is not None and np.isfinite(hi):
            rows.append([1.0, xi])
            rhs.append(np.log(hi) + w)
    return np.array(rows, float).reshape(-1, 2), np.array(rhs, float)


def extent(
    x: np.ndarray, boxes: list[tuple[Bound, Bound]], objective: np.ndarray, widen: float = 1.0
) -> tuple[Bound, Bound] | None:
    """(min, max) of objective·(c, γ) over the consistent lines; None when
    there are none; a side is None when unbounded."""
    A, b = _constraints(x, boxes, widen)
    out: list[Bound] = []
    for sign in (1.0, -1.0):
        if A.size == 0:
            out.append(None)
            continue
        res = linprog(sign * objective, A_ub=A, b_ub=b, bounds=[(None, None)] * 2, method="highs")
        if res.status == 2:  # infeasible
            return None
        out.append(None if res.status == 3 else float(sign * res.fun))
    return out[0], out[1]


def consistent_widening(x: np.ndarray, boxes: list[tuple[Bound, Bound]]) -> float:
    """The smallest factor (≥ 1) by which every interval must widen for one
    line to pass through all of them (bisection in log)."""
    gamma_only = np.array([0.0, 1.0])
    if extent(x, boxes, gamma_only) is not None:
        return 1.0
    lo, hi = 0.0, 1.0
    while extent(x, boxes, gamma_only, float(np.exp(hi))) is None:
        hi *= 2.0
        if hi > 50:
            return float("inf")
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if extent(x, boxes, gamma_only, float(np.exp(mid))) is None:
            lo = mid
        else:
            hi = mid
    return float(np.exp(hi))


def gamma(
    ns: list[float],
    boxes: list[tuple[Bound, Bound]],
    points: list[float | None],
    setting: str,
) -> Scaling:
    """γ from the per-n intervals ``boxes`` (at the joint level) and points."""
    theory = THEORY_GAMMA.get(setting)
    if len(ns) < 2:
        return Scaling(None, (None, None), "one value of n: no scaling", theory, list(ns))
    x = np.log(np.asarray(ns, float))
    widen = consistent_widening(x, boxes)
    if not np.isfinite(widen):
        return Scaling(None, (None, None), "no power law fits the per-n answers", theory, list(ns))
    ext = extent(x, boxes, np.array([0.0, 1.0]), widen)
    lo, hi = ext if ext is not None else (None, None)
    reached = [(xi, np.log(p)) for xi, p in zip(x, points, strict=True) if p]
    point = None
    if len(reached) >= 2 and len({r[0] for r in reached}) >= 2:
        xs, ys = np.array(reached).T
        point = float(np.polyfit(xs, ys, 1)[0])
        point = float(
            np.clip(point, lo if lo is not None else -np.inf, hi if hi is not None else np.inf)
        )
    censored = any(b[0] is None or b[1] is None for b in boxes)
    basis = "per-n bounds" if censored else "per-n answers"
    if lo is not None and hi is not None and hi - lo > PINNED_WIDTH:
        point, basis = None, "not pinned by the per-n answers"
    return Scaling(point, (lo, hi), basis, theory, list(ns), widen)


def predict(
    ns: list[float],
    boxes: list[tuple[Bound, Bound]],
    points: list[float | None],
    at_n: float,
    widen: float = 1.0,
) -> dict:
    """m_sat at ``at_n``: the range over the consistent lines, the least-squares
    line's value, and how many decades beyond the tested n it reaches."""
    x = np.log(np.asarray(ns, float))
    xn = float(np.log(at_n))
    ext = extent(x, boxes, np.array([1.0, xn]), widen) if len(ns) >= 2 else None
    lo, hi = ext if ext is not None else (None, None)
    reached = [(xi, np.log(p)) for xi, p in zip(x, points, strict=True) if p]
    point = None
    if len(reached) >= 2 and len({r[0] for r in reached}) >= 2:
        xs, ys = np.array(reached).T
        slope, icpt = np.polyfit(xs, ys, 1)
        point = float(np.exp(icpt + slope * xn))
        point = float(
            np.clip(
                point, np.exp(lo) if lo is not None else 0, np.exp(hi) if hi is not None else np.inf
            )
        )
    n_min, n_max = float(min(ns)), float(max(ns))
    decades = max(np.log10(at_n / n_max), np.log10(n_min / at_n), 0.0)
    return {
        "n": float(at_n),
        "m_sat": point,
        "ci": [
            None if lo is None else float(np.exp(lo)),
            None if hi is None else float(np.exp(hi)),
        ],
        "decades_extrapolated": float(decades),
    }
