"""Bootstrap: resample runs, refit every replicate at once.

Stratified: within each (m, n) cell, the cell's seeds are resampled with
replacement (the design — which m and n were run — is fixed, only the
run-to-run noise varies). A resample of k seeds has on average (k−1)/k of
their variance, which with 3 seeds makes 95% intervals cover ~89%; so the
resampled log errors are re-spread about the cell's mean log error by
√(k/(k−1)) (Davison & Hinkley's variance-corrected residuals). With one run
per cell there is nothing to resample inside a cell, so runs are resampled
with replacement within each n group (a case bootstrap that keeps each
group's size).

Replicates are refitted together by :func:`negscale.fit.optimize.batch_lm`,
warm-started at the point estimate; a replicate that did not converge, or
whose exponent/scale landed on a bound the point estimate is not on, is
refitted from the full grid of starts (again batched).
"""

from __future__ import annotations

import numpy as np

from negscale.fit.objective import Data
from negscale.fit.optimize import FitResult, batch_lm, multistart, row_bounds, unidentified_rows


def resample_indices(strata: np.ndarray, R: int, rng: np.random.Generator) -> np.ndarray:
    """(R, N) row indices: each column is redrawn from its own stratum."""
    N = strata.size
    out = np.empty((R, N), dtype=np.int64)
    for s in np.unique(strata):
        members = np.nonzero(strata == s)[0]
        out[:, members] = members[rng.integers(0, members.size, size=(R, members.size))]
    return out


def inflate(logy: np.ndarray, strata: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Resampled log errors re-spread by √(k/(k−1)) about their stratum's mean."""
    out = logy[idx].copy()
    for s in np.unique(strata):
        members = np.nonzero(strata == s)[0]
        k = members.size
        if k < 2:
            continue
        mu = logy[members].mean()
        out[:, members] = mu + np.sqrt(k / (k - 1)) * (out[:, members] - mu)
    return out


def strata_for(cells: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, str]:
    """Cells when they hold replicate seeds, else n groups (case bootstrap)."""
    counts = np.bincount(cells)
    if np.median(counts[counts > 0]) >= 2:
        return cells, "stratified (seeds resampled within each (m, n) cell, spread √(k/(k−1)))"
    return groups, "case (one run per cell: runs resampled within each n group)"


def refit(
    fit: FitResult,
    data: Data,
    idx: np.ndarray,
    delta: float,
    wide: bool = False,
    logy: np.ndarray | None = None,
) -> tuple[np.ndarray, dict]:
    """Refit ``fit.form`` on each replicate ``data.subset(idx[r])``; ``logy``
    (same shape as ``idx``) replaces the resampled log errors when given.

    Returns parameters (R, k) in scaled units (NaN rows where the replicate
    cannot identify the form, e.g. a case resample that lost an m level) and
    counts of restarts and failures.
    """
    form = fit.form
    M, Nn = data.m[idx], data.n[idx]
    Y = data.y[idx] if logy is None else np.exp(logy)
    R = idx.shape[0]
    lb, ub = row_bounds(form, M, Y, wide, delta)
    P0 = np.clip(np.broadcast_to(fit.params, (R, form.k)), lb, ub)
    P, cost, conv = batch_lm(form, M, Nn, np.log(Y), P0, lb, ub, delta)

    nl = [form.idx(p) for p in form.nonlinear]
    restart = ~conv
    if nl:
        span = ub[:, nl] - lb[:, nl]
        on_lo = P[:, nl] <= lb[:, nl] + 1e-6 * span
        on_hi = P[:, nl] >= ub[:, nl] - 1e-6 * span
        pt_lo = np.array([f"{form.names[i]}=lower" in fit.on_bound for i in nl])
        pt_hi = np.array([f"{form.names[i]}=upper" in fit.on_bound for i in nl])
        restart |= ((on_lo & ~pt_lo) | (on_hi & ~pt_hi)).any(axis=1)
    rows = np.nonzero(restart)[0]
    if rows.size:
        Pm, Cm, _ = multistart(form, M[rows], Nn[rows], Y[rows], delta, wide, grid_size=4)
        better = Cm[:, 0] < cost[rows]
        P[rows[better]] = Pm[better, 0]

    bad = unidentified_rows(form, M, Nn) | ~np.all(np.isfinite(P), axis=1)
    P[bad] = np.nan
    return P, {"restarts": int(rows.size), "failed": int(bad.sum())}
