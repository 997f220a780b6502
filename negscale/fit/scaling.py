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


def default_budgets(m: np.ndarray, n: np.ndarray, count: int = 4) -> list[float]:
    """Budgets S = m·n spanning the tested runs: ``count`` values evenly spaced in
    log S from the smallest to the largest m·n observed, each rounded to two
    significant digits inwards (the ends stay inside the tested range)."""
    s = np.asarray(m, float) * np.asarray(n, float)
    lo, hi = float(s.min()), float(s.max())
    raw = np.geomspace(lo, hi, count) if hi > lo else np.array([lo])
    out: list[float] = []
    for i, v in enumerate(raw):
        r = _round2(float(v), up=i == 0)
        r = min(max(r, lo), hi) if i in (0, raw.size - 1) else r
        if r not in out:
            out.append(r)
    return out


def _round2(v: float, up: bool) -> float:
    """v to two significant digits: rounded up (``up``) or down."""
    if v <= 0 or not np.isfinite(v):
        return v
    e = 10.0 ** (np.floor(np.log10(v)) - 1)
    q = v / e
    q = np.ceil(q - 1e-9) if up else np.floor(q + 1e-9)
    return float(f"{q * e:.2g}")


def budget_optima(
    form: Form,
    P: np.ndarray,
    budgets: list[float],
    m_ref: float,
    n_ref: float,
    *,
    m_min: float = 1.0,
    max_ratio: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Constrained (m*, n*) at each budget for each parameter row: two (R, len(budgets))
    arrays, NaN for forms without an n term (see :func:`forms.budget_optimum`)."""
    P = np.atleast_2d(P)
    ms = np.full((P.shape[0], len(budgets)), np.nan)
    ns = ms.copy()
    if not form.has_n:
        return ms, ns
    for j, S in enumerate(budgets):
        ms[:, j], ns[:, j] = budget_optimum(
            form, P, S, m_ref, n_ref, m_min=m_min, max_ratio=max_ratio
        )
    return ms, ns
