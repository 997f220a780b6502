"""The saturation point m_sat(ε) and how its bootstrap distribution is summarised.

m_sat(ε) = the smallest m such that for every m' ≥ m, f(m') − f(2m') ≤ ε.
Closed forms live in :mod:`negscale.fit.forms`; :func:`m_sat_grid` is the
general top-down solver on a log-m grid (any curve, and the reference the
closed forms are tested against).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def m_sat_grid(
    gain: Callable[[np.ndarray], np.ndarray],
    eps: float,
    lo: float,
    hi: float,
    points: int = 4001,
) -> float:
    """Top-down solve of m_sat on a log grid over [lo, hi].

    Walks down from ``hi`` until the gain per doubling first exceeds ε; m_sat
    is the crossing (refined by bisection in log m). Returns ``inf`` when the
    gain still exceeds ε at ``hi`` (not saturated within the grid) and ``lo``
    when it never does (flat everywhere on the grid). A curve that has not
    started rising at tiny m is therefore never mistaken for a saturated one.
    """
    grid = np.geomspace(lo, hi, points)
    g = np.asarray(gain(grid), float)
    above = g > eps
    if above[-1]:
        return float("inf")
    if not above.any():
        return float(lo)
    j = int(np.nonzero(above)[0][-1])  # last grid point where the gain exceeds ε
    a, b = np.log(grid[j]), np.log(grid[j + 1])
    for _ in range(60):
        mid = 0.5 * (a + b)
        if float(np.asarray(gain(np.array([np.exp(mid)])))[0]) > eps:
            a = mid
        else:
            b = mid
    return float(np.exp(b))


def summarise(samples: np.ndarray, point: float | None = None) -> tuple[float, list[float]]:
    """Median and 2.5–97.5 percentile interval of finite bootstrap samples.

    Without usable samples (bootstrap off, or every replicate failed) the
    point estimate is returned with a NaN interval.
    """
    s = np.asarray(samples, float)
    s = s[~np.isnan(s)]  # NaN = a failed replicate; ±inf is a real (extreme) answer
    if s.size < 2:
        v = float(point) if point is not None else float("nan")
        return v, [float("nan"), float("nan")]
    big = np.finfo(float).max / 4
    q = np.percentile(np.clip(s, -big, big), [2.5, 50.0, 97.5])
    q = np.where(q >= big, np.inf, np.where(q <= -big, -np.inf, q))
    return float(q[1]), [float(q[0]), float(q[2])]


def share_beyond(samples: np.ndarray, m_max: float) -> float:
    """Share of replicates whose m_sat lies beyond the largest m tested."""
    s = np.asarray(samples, float)
    s = s[~np.isnan(s)]
    return float(np.mean(s >= m_max)) if s.size else float("nan")


def m_sat_grid_rows(
    gain: Callable[[np.ndarray], np.ndarray],
    eps: float,
    lo: np.ndarray,
    hi: np.ndarray,
    points: int = 801,
    steps: int = 50,
) -> np.ndarray:
    """:func:`m_sat_grid` for R curves at once, on per-row log grids.

    ``gain`` maps log m (R, G) to the gain per doubling (R, G); ``lo``/``hi``
    are per-row log m ends. Returns m_sat (R,): ``inf`` when the gain still
    exceeds ε at ``hi``, 0 when it never does (flat: saturated everywhere).
    """
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    t = np.linspace(0.0, 1.0, points)[None, :]
    lg = lo[:, None] + (hi - lo)[:, None] * t
    above = np.asarray(gain(lg)) > eps
    R = lo.size
    j = points - 1 - np.argmax(above[:, ::-1], axis=1)  # last grid point above ε
    any_above = above.any(axis=1)
    jj = np.minimum(j, points - 2)
    a, b = lg[np.arange(R), jj], lg[np.arange(R), jj + 1]
    for _ in range(steps):
        mid = 0.5 * (a + b)
        up = np.asarray(gain(mid[:, None]))[:, 0] > eps
        a, b = np.where(up, mid, a), np.where(up, b, mid)
    out = np.where(any_above, np.exp(b), 0.0)
    return np.where(above[:, -1], np.inf, out)
