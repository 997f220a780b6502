"""The budget table: the fitted law's optimal split of S = m·n, and its warnings.

Rows are computed first (:func:`budget_rows`), the warnings they need are
written from them (:func:`budget_warnings`).
"""

from __future__ import annotations

import numpy as np

from negscale.fit.fmt import fmt
from negscale.fit.forms import budget_bounds
from negscale.fit.inputs import Prepared
from negscale.fit.saturation import summarise
from negscale.fit.scaling import budget_optima
from negscale.fit.select import Candidate

_PINNED = {
    "m >=": "m* = 1, the law would put the whole budget into n",
    "n >=": "n* = 1, the law would put the whole budget into m",
    "m <=": "m* at the pool cap m = n, the law would put more into m",
}
_TOL = 1e-9


def budget_max_ratio(setting: str, m: np.ndarray, n: np.ndarray) -> float | None:
    """The cap on m/n for the budget optimum: self-supervised anchors share one
    pool of m negatives drawn from the n training items, so m ≤ n (widened to
    the largest m/n actually run, should the data exceed it); supervised
    anchors draw their own negatives, so only n ≥ 1 (None)."""
    if setting != "self-supervised":
        return None
    return max(1.0, float(np.max(np.asarray(m, float) / np.asarray(n, float))))


def _constraint(mo: float, S: float, max_ratio: float | None) -> str | None:
    """The bound a point optimum sits on (None: interior)."""
    lo_b, hi_b = budget_bounds(S, 1.0, max_ratio)
    if mo <= lo_b * (1 + _TOL):
        return "m >= 1"
    if mo >= hi_b * (1 - _TOL):
        if hi_b >= S * (1 - _TOL):
            return "n >= 1"
        return "m <= n" if max_ratio == 1.0 else f"m <= {max_ratio:.3g}·n"
    return None


def budget_rows(
    chosen: Candidate,
    reps: np.ndarray | None,
    budgets: list[float],
    prep: Prepared,
    setting: str,
    m_ref: float,
    n_ref: float,
) -> list[dict]:
    """Rows of the budget-optimal ratio table.

    The optimum of the fitted law on m·n = S is constrained (m ≥ 1, n ≥ 1, and
    m ≤ n under a shared pool: :func:`budget_max_ratio`); the point estimate
    and every bootstrap replicate go through the same solver. A row is
    ``extrapolated`` when its (point) m* or n* lies outside the tested m or n
    range; ``constraint`` names the bound the point optimum sits on (None:
    interior) and ``constraint_share`` is the share of replicates whose optimum
    sits on a bound (it explains interval ends such as m*/n* = 1/S).
    """
    form = chosen.form
    if not form.has_n or not budgets:
        return []
    max_ratio = budget_max_ratio(setting, prep.m, prep.n)
    kw = {"m_min": 1.0, "max_ratio": max_ratio}
    pm, pn = budget_optima(form, chosen.fit.params, budgets, m_ref, n_ref, **kw)
    rm, rn = (
        budget_optima(form, reps, budgets, m_ref, n_ref, **kw) if reps is not None else (None, None)
    )
    m_lo, m_hi, n_lo, n_hi = prep.m.min(), prep.m.max(), prep.n.min(), prep.n.max()
    rows = []
    for j, S in enumerate(budgets):
        mo, no = float(pm[0, j]), float(pn[0, j])
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = mo / no
            rr = rm[:, j] / rn[:, j] if rm is not None else None
        med, ci = summarise(rr, ratio) if rr is not None else (ratio, [np.nan] * 2)
        finite = np.isfinite(mo) and np.isfinite(no)
        inside = m_lo * (1 - _TOL) <= mo <= m_hi * (1 + _TOL) and n_lo * (
            1 - _TOL
        ) <= no <= n_hi * (1 + _TOL)
        row = {
            "S": S,
            "ratio": med,
            "ratio_ci": ci,
            "m": mo,
            "n": no,
            "ratio_fit": ratio,
            "extrapolated": bool(finite and not inside),
            "constraint": _constraint(mo, S, max_ratio) if finite else None,
        }
        if rm is not None:
            lo_b, hi_b = budget_bounds(S, 1.0, max_ratio)
            row["m_ci"] = summarise(rm[:, j])[1]
            row["n_ci"] = summarise(rn[:, j])[1]
            r = rm[:, j][np.isfinite(rm[:, j])]
            on = (r <= lo_b * (1 + _TOL)) | (r >= hi_b * (1 - _TOL))
            row["constraint_share"] = float(on.mean()) if r.size else float("nan")
        rows.append(row)
    return rows


def budget_warnings(rows: list[dict], prep: Prepared) -> list[str]:
    """What the rows need said: unsolved budgets, extrapolated rows, pinned optima."""
    unsolved = [fmt(r["S"]) for r in rows if not (np.isfinite(r["m"]) and np.isfinite(r["n"]))]
    extra = [fmt(r["S"]) for r in rows if r["extrapolated"]]
    pinned = [f"S={fmt(r['S'])}: {_PINNED[r['constraint'][:4]]}" for r in rows if r["constraint"]]
    out = []
    if unsolved:
        out.append(
            f"budget table: no optimal split at S = {', '.join(unsolved)} (no feasible m, or "
            "a law that depends on neither m nor n): left blank"
        )
    on_constraint = (
        "the optimum sits on a constraint, not at a balance of the two terms ("
        + "; ".join(pinned)
        + ")"
    )
    if extra:
        w = (
            f"budget table: at S = {', '.join(extra)} the optimal m* or n* lies outside the "
            f"tested range (m {fmt(prep.m.min())}–{fmt(prep.m.max())}, n {fmt(prep.n.min())}–"
            f"{fmt(prep.n.max())}): those rows extrapolate the fitted law and are marked"
        )
        out.append(w + (f"; {on_constraint}" if pinned else ""))
    elif pinned:
        out.append(f"budget table: {on_constraint}")
    return out


def budget_table(
    chosen, reps, budgets, prep, setting, m_ref, n_ref
) -> tuple[list[dict], list[str]]:
    """:func:`budget_rows` and :func:`budget_warnings` together."""
    rows = budget_rows(chosen, reps, budgets, prep, setting, m_ref, n_ref)
    return rows, budget_warnings(rows, prep)
