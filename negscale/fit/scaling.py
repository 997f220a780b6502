"""How m_sat scales with n (gamma), and the budget-optimal ratio m*/n*."""

from __future__ import annotations

import numpy as np

from negscale.fit.forms import Form, budget_optimum

THEORY_GAMMA = {"supervised": 0.5, "self-supervised": 1.0}


def gamma(m_sat: np.ndarray, n: np.ndarray) -> np.ndarray:
    """OLS slope of log m_sat on log n, per row of ``m_sat`` (R, G) → (R,).

    Groups whose m_sat is not finite and positive are left out of that
    replicate; fewer than two usable groups gives NaN.
    """
    M = np.atleast_2d(np.asarray(m_sat, float))
    x = np.log(np.asarray(n, float))[None, :]
    ok = np.isfinite(M) & (M > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ly = np.where(ok, np.log(np.where(ok, M, 1.0)), 0.0)
        cnt = ok.sum(axis=1)
        xm = np.where(ok, x, 0.0).sum(axis=1) / cnt
        ym = ly.sum(axis=1) / cnt
        dx = np.where(ok, x - xm[:, None], 0.0)
        slope = (dx * (ly - ym[:, None])).sum(axis=1) / (dx * dx).sum(axis=1)
    return np.where(cnt >= 2, slope, np.nan)


def default_budgets(m: np.ndarray, n: np.ndarray) -> list[float]:
    """A few budgets S = m·n: the smallest, middle and largest tested, and 10× the largest,
    each rounded to two significant digits."""
    s = np.asarray(m, float) * np.asarray(n, float)
    lo, hi = float(s.min()), float(s.max())
    raw = [lo, float(np.sqrt(lo * hi)), hi, 10 * hi]
    out: list[float] = []
    for v in raw:
        r = float(f"{v:.2g}")
        if r not in out:
            out.append(r)
    return out


def budget_ratios(
    form: Form, P: np.ndarray, budgets: list[float], m_ref: float, n_ref: float
) -> np.ndarray:
    """m*/n* at each budget for each parameter row: (R, len(budgets))."""
    P = np.atleast_2d(P)
    out = np.full((P.shape[0], len(budgets)), np.nan)
    if not form.has_n:
        return out
    for j, S in enumerate(budgets):
        ms, ns = budget_optimum(form, P, S, m_ref, n_ref)
        with np.errstate(divide="ignore", invalid="ignore"):
            out[:, j] = ms / ns
    return out
