"""The model-free saturation point: m_sat read off the tested levels themselves.

No law is assumed. The seed means of the error y at the tested m levels of
one n group, made non-increasing in m (pool-adjacent-violators: more
negatives do not raise the error, so a rise is noise), are joined by
straight lines in log m; the gain per doubling at
any m' is g(m') = ȳ(m') − ȳ(2m') on that interpolated curve, defined for
m_min ≤ m' ≤ m_max/2. The model-free m_sat is the smallest m' from which
every further doubling gains at most ε (the top-down rule of
:mod:`negscale.fit.saturation`, on the data). g is piecewise linear in log m'
with kinks at the tested levels and at half of each, so checking it at those
points is exact. Outcomes:

* ``inf`` — "not reached": the last doubling inside the data still gains > ε;
* m_min — "flat from the start": no doubling gains more than ε;
* NaN — the levels span less than one doubling: nothing to read.

The bracket names the two tested levels around an estimate; a value past the
largest m tested is only a lower bound ("≥ m_max"), never a finding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from negscale.fit.saturation import summarise


def crossing(
    levels: np.ndarray, ybar: np.ndarray, eps: float, se: np.ndarray | None = None, z: float = 0.0
) -> float:
    """Model-free m_sat of one curve: ``ybar`` (error means) at sorted ``levels``.

    With ``se`` (standard errors of the means) a doubling counts as gaining
    more than ε only when its gain exceeds ε + z·se(gain): z > 0 asks for a
    clear excess (a lower end), z < 0 for any gain not clearly below ε (an
    upper end); z = 0 is the definition itself.
    """
    t = np.log2(np.asarray(levels, float))
    y = np.asarray(ybar, float)
    if t.size < 2 or t[-1] - 1.0 < t[0] - 1e-12:
        return float("nan")
    top = t[-1] - 1.0
    knots = np.concatenate([t, t - 1.0, [t[0], top]])
    knots = np.unique(knots[(knots >= t[0] - 1e-12) & (knots <= top + 1e-12)])
    g = np.interp(knots, t, y) - np.interp(knots + 1.0, t, y)
    if se is not None and z != 0.0:
        s2 = np.asarray(se, float) ** 2
        g = g - z * np.sqrt(np.interp(knots, t, s2) + np.interp(knots + 1.0, t, s2))
    above = g > eps
    if above[-1]:
        return float("inf")
    if not above.any():
        return float(levels[0])
    j = int(np.nonzero(above)[0][-1])
    frac = (g[j] - eps) / (g[j] - g[j + 1])
    return float(2.0 ** (knots[j] + frac * (knots[j + 1] - knots[j])))


def cell_means(m: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct m and the mean of y at each, made non-increasing in m."""
    levels, inv = np.unique(m, return_inverse=True)
    w = np.bincount(inv).astype(float)
    return levels, monotone(np.bincount(inv, weights=y) / w, w)


def monotone(ybar: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted pool-adjacent-violators: the closest non-increasing sequence.

    More negatives never raise the error of the same model family; a level
    whose mean sits above its smaller-m neighbour is noise, and pooling it
    keeps one noisy level from passing for a late gain of more than ε.
    """
    vals, wts, sizes = [], [], []
    for v, k in zip(ybar.tolist(), w.tolist(), strict=True):
        vals.append(v)
        wts.append(k)
        sizes.append(1)
        while len(vals) > 1 and vals[-1] > vals[-2]:
            v2, k2, n2 = vals.pop(), wts.pop(), sizes.pop()
            vals[-1] = (vals[-1] * wts[-1] + v2 * k2) / (wts[-1] + k2)
            wts[-1] += k2
            sizes[-1] += n2
    return np.repeat(vals, sizes)


def crossing_samples(M: np.ndarray, Y: np.ndarray, eps: float) -> np.ndarray:
    """:func:`crossing` of each resampled curve (rows of M, Y), shape (R,)."""
    return np.array([crossing(*cell_means(M[r], Y[r]), eps) for r in range(M.shape[0])])


def bracket(levels: np.ndarray, value: float) -> list[float | None]:
    """The tested levels either side of ``value``: [below, at-or-above].

    None marks an open end: [None, m_min] is "≤ m_min", [m_max, None] is
    "≥ m_max" (a lower bound), [None, None] nothing known (NaN).
    """
    lv = np.sort(np.asarray(levels, float))
    if not np.isfinite(value) and not np.isinf(value):
        return [None, None]
    if value >= lv[-1] * (1 + 1e-9):
        return [float(lv[-1]), None]
    if value <= lv[0] * (1 + 1e-9):
        return [None, float(lv[0])]
    hi = float(lv[lv >= value * (1 - 1e-9)][0])
    lo = float(lv[lv < value * (1 - 1e-9)][-1])
    return [lo, hi]


def bracket_text(br: list[float | None], fmt, n: float | None = None) -> str:
    """A bracket in words: "10–40", "≤ 1", "≥ 100" (and m/n in % with ``n``)."""

    def one(v: float) -> str:
        return fmt(v) + (f" ({100 * v / n:.3g}% of n)" if n else "")

    lo, hi = br
    if lo is None and hi is None:
        return "–"
    if lo is None:
        return f"≤ {one(hi)}"
    if hi is None:
        return f"≥ {one(lo)}"
    return f"{fmt(lo)}–{fmt(hi)}" + (f" ({100 * lo / n:.3g}–{100 * hi / n:.3g}% of n)" if n else "")


@dataclass
class ModelFree:
    """One n group's model-free answer (user units)."""

    point: float  # inf: not reached; NaN: undetermined
    median: float
    ci: list[float]
    levels: np.ndarray
    samples: np.ndarray
    noise_range: tuple[float, float] = (float("nan"), float("nan"))

    @property
    def status(self) -> str:
        if np.isnan(self.point):
            return "undetermined (levels span less than one doubling)"
        if np.isinf(self.point):
            return "not reached (the last doubling tested still gains more than ε)"
        if self.point <= self.levels[0]:
            return "flat from the smallest m tested"
        return "reached"

    def consistent(self) -> tuple[float, float]:
        """The range of m_sat the data allow: the hull of the bootstrap interval,
        the point and the noise range (crossings that ask for a gain clearly
        above, or not clearly below, ε), widened to the tested levels that
        enclose it; 0 below when it reaches the smallest level ("≤ m_min"),
        inf above past the largest."""
        vals = np.array([self.point, *self.ci, *self.noise_range], float)
        vals = vals[~np.isnan(vals)]
        if vals.size == 0:
            return 0.0, float("inf")
        lo, hi = float(vals.min()), float(vals.max())
        lv = self.levels
        lo_out = 0.0 if lo <= lv[0] * (1 + 1e-9) else float(lv[lv <= lo * (1 + 1e-9)][-1])
        hi_out = float("inf") if hi > lv[-1] * (1 + 1e-9) else float(lv[lv >= hi * (1 - 1e-9)][0])
        return lo_out, hi_out


def model_free(
    m: np.ndarray,
    y: np.ndarray,
    eps: float,
    M: np.ndarray | None,
    Y: np.ndarray | None,
    sigma: float = 0.0,
) -> ModelFree:
    """Point and bootstrap summary of the model-free m_sat of one n group.

    ``M``/``Y`` are the group's resampled m and error (rows = replicates, as
    the parametric bootstrap draws them), or None without a bootstrap. The
    interval's ends are percentiles of the replicates' crossings; "not
    reached" replicates count as +inf, so a curve that may still rise gets an
    open upper end. ``sigma`` (noise of log y) gives each level's mean the
    standard error σ·ȳ/√k behind the noise range (z = ±2).
    """
    levels, ybar = cell_means(m, y)
    point = crossing(levels, ybar, eps)
    samples = crossing_samples(M, Y, eps) if M is not None else np.array([])
    med, ci = summarise(samples, point)
    rng: tuple[float, float] = (float("nan"), float("nan"))
    if sigma > 0:
        k = np.unique(m, return_counts=True)[1]
        se = sigma * ybar / np.sqrt(k)
        rng = (crossing(levels, ybar, eps, se, 2.0), crossing(levels, ybar, eps, se, -2.0))
    return ModelFree(point, med, ci, levels, samples, rng)
