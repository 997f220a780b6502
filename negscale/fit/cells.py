"""Runs → cells: one robust centre per (n, m), its standard error, the noise.

Seeds are combined robustly. A run far from the others of its cell, in units
of the noise of the *neighbouring* cells (so a cell whose runs are all noisy,
as small-m cells often are, does not make its own yardstick), is named as an
outlier and left out of its cell; the centre is the mean of the runs kept (a
skipped mean: robust to one diverged seed, efficient without one).

The noise is pooled over all cells. Two numbers come out of it:

* the run-to-run sd σ that sets the default ε: a typical cell's, the median
  of the cells' variances (bias-corrected) once outliers are out, so the few
  noisy cells of unstable small-m runs do not set what "a doubling gains less
  than the noise" means;
* each cell's standard error: its own variance shrunk toward a smooth trend
  of the variance in log m fitted over all cells (an empirical-Bayes blend,
  prior weight PRIOR_DOF), so noise that changes with m is followed without
  trusting one 3-seed cell.

Without seeds there is no within-cell noise; :mod:`negscale.fit.laws` then
supplies σ from the residuals of smooth fits and :func:`with_sigma` sets it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
from scipy import special

from negscale.fit.quantiles import chi2_median, theil_sen_slope

OUTLIER_Z = 8.0  # a run this many sds (of its distance) from the rest of its cell is an outlier
PRIOR_DOF = 8.0  # weight (in degrees of freedom) of the variance trend in a cell's variance
TREND_Z = 2.6  # a variance trend in log m is used only when its slope is this clear


@dataclass(frozen=True)
class Outlier:
    """A run left out of its cell."""

    n: float
    m: float
    value: float  # in the metric's own units
    z: float  # distance from the cell's other runs in local noise sds
    run_id: str | None


@dataclass(frozen=True)
class Curve:
    """One n group's cells, sorted by m, in score units (higher is better)."""

    n: float
    m: np.ndarray
    centre: np.ndarray
    se: np.ndarray  # standard error of each centre
    dof: np.ndarray  # degrees of freedom behind each se
    k: np.ndarray  # runs kept per cell
    k_all: np.ndarray  # runs per cell before outliers were left out
    sd: np.ndarray  # per-run sd used for each cell (se = sd / √k)

    @property
    def t(self) -> np.ndarray:
        """log2 m: one unit is one doubling."""
        return np.log2(self.m)

    def __len__(self) -> int:
        return int(self.m.size)


@dataclass
class Cells:
    """Every n group's curve and the pooled noise."""

    curves: list[Curve]
    sigma: float | None  # pooled run-to-run sd (score units); None without seeds
    sigma_dof: float
    sigma_source: str
    outliers: list[Outlier] = field(default_factory=list)
    seeded: bool = True  # the noise comes from seeds (False: from elsewhere, or unknown)


def build(
    m: np.ndarray,
    n: np.ndarray,
    score: np.ndarray,
    run_id: np.ndarray | None = None,
    sign: float = 1.0,
) -> Cells:
    """Cells of every n group. ``score`` is higher-is-better (the metric times
    ``sign``); outliers are reported back in the metric's own units."""
    m, n, score = (np.asarray(a, float) for a in (m, n, score))
    ids = None if run_id is None else np.asarray(run_id, object)
    groups = [np.nonzero(n == g)[0] for g in np.unique(n)]
    raw = [_cell_lists(m[ix], score[ix], None if ids is None else ids[ix]) for ix in groups]
    screen = _screen_scale(raw)
    outliers: list[Outlier] = []
    curves = []
    for gi, (ix, cells) in enumerate(zip(groups, raw, strict=True)):
        g = float(n[ix[0]])

        def scale(i: int, t: float, gi: int = gi) -> float:
            local = _local_scale(raw, gi, i)
            return max(screen(t), local or 0.0)

        kept = _drop_outliers(g, cells, scale if screen is not None else None, sign, outliers)
        curves.append(_curve(g, cells, kept))
    if screen is None:
        return Cells(curves, None, 0.0, "no seeds", outliers, seeded=False)
    ss = sum(float(np.nansum(c.sd**2 * c.dof)) for c in curves)
    dof = float(sum(c.dof.sum() for c in curves))
    pooled = ss / dof if dof > 0 and ss > 0 else float(np.finfo(float).tiny) ** 2
    trend = _variance_trend(curves, pooled)
    source = "the seed sd of a typical cell (median over the cells, outliers left out)"
    return Cells([_moderate(c, trend) for c in curves], _typical_sd(curves, pooled), dof, source,
                 outliers)  # fmt: skip


def _typical_sd(curves: list[Curve], pooled: float) -> float:
    """The run-to-run sd of a typical cell: the median of the cells' variances, each
    divided by the median of χ²_d/d (so it estimates σ² without bias). A few noisy
    cells (small m, where runs are less stable) do not set it, as they would a mean."""
    d = np.concatenate([c.dof[c.dof > 0] for c in curves])
    v = np.concatenate([c.sd[c.dof > 0] ** 2 for c in curves])
    if v.size == 0 or not (v > 0).any():
        return float(np.sqrt(pooled))
    return float(np.sqrt(np.median(v / (chi2_median(d) / d))))


def _cell_lists(
    m: np.ndarray, v: np.ndarray, ids: np.ndarray | None
) -> list[tuple[float, np.ndarray, np.ndarray | None]]:
    out = []
    for level in np.unique(m):
        sel = m == level
        out.append((float(level), v[sel], None if ids is None else ids[sel]))
    return out


def _screen_scale(raw: list[list]) -> Callable[[float], float] | None:
    """The outlier screen's noise sd at log2 m, from every cell's raw variance.

    A trend in log m (noise is often larger at small m) whose slope is
    Theil–Sen's, kept only when clear (TREND_Z), and whose level is a median
    (log s² less the median of log(χ²_d/d)): neither one noisy cell nor the
    outlier itself sets the yardstick. None without seeds.
    """
    rows = [
        (np.log2(level), vals.size - 1, float(np.var(vals, ddof=1)))
        for cells in raw
        for level, vals, _ in cells
        if vals.size >= 2
    ]
    rows = [r for r in rows if r[2] > 0]
    if not rows:
        return None
    t, d, v = (np.array(x, float) for x in zip(*rows, strict=True))
    slope = _clear_slope(np.log(v), t, d)
    level = float(np.median(np.log(v) - slope * t - np.log(chi2_median(d) / d)))
    return lambda tt: float(np.exp(0.5 * (level + slope * tt)))


def _clear_slope(lv: np.ndarray, t: np.ndarray, d: np.ndarray) -> float:
    """Theil–Sen slope of log s² on log2 m, or 0 unless it stands out of the
    noise of log s² (variance ψ'(d/2)) by TREND_Z."""
    if np.unique(t).size < 3:
        return 0.0
    slope = theil_sen_slope(lv, t)
    se = np.sqrt(np.mean(special.polygamma(1, d / 2.0)) / np.sum((t - t.mean()) ** 2))
    return slope if abs(slope) >= TREND_Z * se else 0.0


def _local_scale(raw: list[list], gi: int, i: int) -> float | None:
    """Robust noise sd near cell i of group gi, without cell i itself: its neighbours
    in log m and the cells at its m in the other n groups. Noise that jumps at small
    m (unstable runs at m = 1, say) is noise of that m, not an outlier."""
    cells = raw[gi]
    level = cells[i][0]
    near = [cells[j][1] for j in (i - 1, i + 1) if 0 <= j < len(cells)]
    near += [
        vals for k, other in enumerate(raw) if k != gi for lvl, vals, _ in other if lvl == level
    ]
    diffs = np.concatenate([_pair_diffs(v) for v in near]) if near else np.empty(0)
    if diffs.size < 3:
        return None
    return 1.4826 * float(np.median(diffs)) / np.sqrt(2.0)


def _pair_diffs(vals: np.ndarray) -> np.ndarray:
    if vals.size < 2:
        return np.empty(0)
    i, j = np.triu_indices(vals.size, 1)
    return np.abs(vals[i] - vals[j])


def _drop_outliers(
    n: float,
    cells: list,
    scale: Callable[[int, float], float] | None,
    sign: float,
    outliers: list[Outlier],
) -> list[np.ndarray]:
    """Per cell, a mask of the runs kept; left-out runs go to ``outliers``.

    With 3 or more runs, a run is out when it lies more than OUTLIER_Z sds
    from the median of the others, the sd being the larger of the screen's at
    its m and the spread of the cells around it (:func:`_local_scale`). With 2, the one
    farther from the line through the neighbouring cells' medians is out when
    the two disagree by more than OUTLIER_Z·√2 sds and the other agrees with
    the neighbours. One run cannot be told from the curve: it stays.
    """
    meds = np.array([np.median(v) for _, v, _ in cells])
    ts = np.log2([lvl for lvl, _, _ in cells])
    kept = []
    for i, (level, vals, ids) in enumerate(cells):
        keep = np.ones(vals.size, bool)
        if scale is not None and vals.size >= 2:
            z = _outlier_z(vals, i, ts, meds, scale(i, ts[i]))
            for j in np.nonzero(z > OUTLIER_Z)[0]:
                keep[j] = False
                rid = None if ids is None else str(ids[j])
                outliers.append(Outlier(n, level, sign * float(vals[j]), float(z[j]), rid))
        kept.append(keep)
    return kept


def _outlier_z(vals: np.ndarray, i: int, ts: np.ndarray, meds: np.ndarray, s: float) -> np.ndarray:
    z = np.zeros(vals.size)
    if vals.size >= 3:
        for j in range(vals.size):
            # the distance to the others' median has sd ≈ s·√(1 + 1/(k − 1))
            rest = np.delete(vals, j)
            z[j] = abs(vals[j] - np.median(rest)) / (s * np.sqrt(1.0 + 1.0 / rest.size))
        worst = int(np.argmax(z))  # at most one run a cell: the worst, if it is out
        return np.where(np.arange(vals.size) == worst, z, 0.0)
    if abs(vals[0] - vals[1]) / (s * np.sqrt(2.0)) <= OUTLIER_Z:
        return z
    ref = _neighbour_line(i, ts, meds)
    if ref is None:
        return z
    far = int(np.argmax(np.abs(vals - ref)))
    if abs(vals[1 - far] - ref) <= 3.0 * s:
        z[far] = abs(vals[far] - vals[1 - far]) / s
    return z


def _neighbour_line(i: int, ts: np.ndarray, meds: np.ndarray) -> float | None:
    """The neighbours' medians interpolated (or extended) to cell i's log m."""
    if 0 < i < ts.size - 1:
        w = (ts[i] - ts[i - 1]) / (ts[i + 1] - ts[i - 1])
        return float((1 - w) * meds[i - 1] + w * meds[i + 1])
    j = [1, 2] if i == 0 else [i - 1, i - 2]
    if min(j) < 0 or max(j) >= ts.size:
        return None
    return float(meds[j[0]])


def _curve(n: float, cells: list, kept: list[np.ndarray]) -> Curve:
    m = np.array([lvl for lvl, _, _ in cells])
    centre = np.array([v[k].mean() for (_, v, _), k in zip(cells, kept, strict=True)])
    var = np.array(
        [
            v[k].var(ddof=1) if k.sum() >= 2 else np.nan
            for (_, v, _), k in zip(cells, kept, strict=True)
        ]
    )
    k = np.array([int(x.sum()) for x in kept])
    k_all = np.array([x.size for x in kept])
    sd = np.sqrt(var)
    se = sd / np.sqrt(k)
    return Curve(n, m, centre, se, np.maximum(k - 1, 0).astype(float), k, k_all, sd)


def _variance_trend(curves: list[Curve], pooled: float) -> tuple[float, float]:
    """(intercept, slope) of log var = c + slope·log2 m over every cell with seeds.

    Noise often changes with m (small-m runs are less stable), smoothly; a
    two-parameter trend over all cells follows that without trusting one
    cell's two or three seeds. The slope is Theil–Sen's (robust to the odd
    tiny s² of a 3-seed cell), kept only when it stands out of the noise of
    log s² (variance ψ'(d/2)) by TREND_Z; the level then matches the cells'
    own variances on average (E s² = σ²). Without a clear slope the trend
    is the pooled variance.
    """
    t = np.concatenate([c.t[c.dof > 0] for c in curves])
    d = np.concatenate([c.dof[c.dof > 0] for c in curves])
    v = np.concatenate([c.sd[c.dof > 0] ** 2 for c in curves])
    if v.size == 0 or not (v > 0).all():
        return float(np.log(pooled)), 0.0
    slope = _clear_slope(np.log(v), t, d)
    return float(np.log(np.average(v / np.exp(slope * t), weights=d))), slope


def _moderate(c: Curve, trend: tuple[float, float]) -> Curve:
    """Each cell's variance shrunk toward the trend: var_i = (PRIOR_DOF·trend_i +
    (k_i − 1)·s_i²) / (PRIOR_DOF + k_i − 1)."""
    prior = np.exp(trend[0] + trend[1] * c.t)
    own = np.nan_to_num(c.sd**2)
    var = (PRIOR_DOF * prior + c.dof * own) / (PRIOR_DOF + c.dof)
    sd = np.sqrt(np.maximum(var, 1e-300))
    return replace(c, sd=sd, se=sd / np.sqrt(np.maximum(c.k, 1)), dof=c.dof + PRIOR_DOF)


def with_sigma(cells: Cells, sigma: float, dof: float, source: str) -> Cells:
    """Cells of a study without seeds, given a noise sd from elsewhere."""
    curves = [
        replace(c, sd=np.full(len(c), sigma), se=sigma / np.sqrt(c.k), dof=np.full(len(c), dof))
        for c in cells.curves
    ]
    return Cells(curves, sigma, dof, source, cells.outliers, seeded=False)
