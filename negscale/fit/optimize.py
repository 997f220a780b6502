"""Bounded robust fitting: a vectorised multi-start, polished by scipy's trf.

Two solvers, one objective (sum of Huber_δ over log residuals):

* :func:`batch_lm` — a Levenberg–Marquardt / IRLS solver with an active-set
  treatment of the box bounds, vectorised over many parameter vectors (and,
  in the bootstrap, many resampled data sets) at once. It evaluates a whole
  grid of starts, or a thousand warm-started replicate refits, in a few
  numpy calls instead of thousands of Python-level optimiser runs.
* :func:`fit_form` — the point estimate: a grid over the nonlinear
  parameters (exponents, or the exponential's scale s) with the linear ones
  (E, A, B) solved by weighted least squares for each grid point, all starts
  refined by :func:`batch_lm`, the best distinct optima polished by
  ``scipy.optimize.least_squares(method="trf", loss="huber")``; flags
  estimates on a bound, non-converged exits, and rival optima within 1%.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import least_squares

from negscale.fit.forms import HILL_SLOPE_BOUNDS, Form
from negscale.fit.objective import Data, huber_rows

GLOBAL_EXP_BOUNDS = (0.05, 3.0)
GROUP_EXP_BOUNDS = (0.02, 5.0)  # per-n-group fits: fewer points, so let them roam


@dataclass
class FitResult:
    """One form fitted to one data set (parameters in scaled units)."""

    form: Form
    params: np.ndarray
    cost: float
    residuals: np.ndarray
    converged: bool
    on_bound: list[str] = field(default_factory=list)
    rivals: list[np.ndarray] = field(default_factory=list)


def bounds(
    form: Form, data: Data, wide: bool = False, delta: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Box bounds: 0 ≤ E < min(y)·exp(3δ), A, B ≥ 0, exponents in [0.05, 3]
    (wider per group), the exponential's scale s within a few times the tested
    m range. The exp(3δ) allowance: on a plateau the smallest *noisy* error
    sits below the true floor E, and pinning E under it biases the exponent."""
    lb, ub = row_bounds(form, data.m[None, :], data.y[None, :], wide, delta)
    return lb[0], ub[0]


def _take(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return x if x.shape[0] == 1 else x[idx]


def _residuals(form: Form, P: np.ndarray, m, n, logy) -> tuple[np.ndarray, np.ndarray]:
    yh = np.maximum(form.predict(P, m, n), 1e-300)
    return np.log(yh) - logy, yh


def batch_lm(
    form: Form,
    m: np.ndarray,
    n: np.ndarray,
    logy: np.ndarray,
    P0: np.ndarray,
    lb: np.ndarray,
    ub: np.ndarray,
    delta: float,
    max_iter: int = 200,
    rtol: float = 1e-10,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Minimise Σ Huber_δ(log ŷ − log y) for R problems at once.

    m, n, logy: (R, N) or (1, N); P0: (R, k); lb, ub: (k,) or (R, k).
    Returns (P, cost, converged) with shapes (R, k), (R,), (R,).
    """
    R, k = P0.shape
    lb = np.broadcast_to(lb, (R, k))
    ub = np.broadcast_to(ub, (R, k))
    P = np.clip(P0, lb, ub)
    r, _ = _residuals(form, P, m, n, logy)
    cost = huber_rows(r, delta)
    lam = np.full(R, 1e-3)
    done = np.zeros(R, bool)
    eye = np.eye(k)
    span = np.where(np.isfinite(ub - lb), ub - lb, np.abs(P) + 1.0)
    for _ in range(max_iter):
        ia = np.nonzero(~done)[0]
        if ia.size == 0:
            break
        Pa = P[ia]
        ma, na, la = _take(m, ia), _take(n, ia), _take(logy, ia)
        ra, yha = _residuals(form, Pa, ma, na, la)
        J = form.jac(Pa, ma, na) / yha[:, :, None]
        w = np.minimum(1.0, delta / np.maximum(np.abs(ra), 1e-300))
        Jw = J * w[:, :, None]
        g = np.matmul(Jw.transpose(0, 2, 1), ra[:, :, None])[:, :, 0]
        H = np.matmul(Jw.transpose(0, 2, 1), J)
        tol_b = 1e-12 * span[ia]
        frozen = ((Pa <= lb[ia] + tol_b) & (g > 0)) | ((Pa >= ub[ia] - tol_b) & (g < 0))
        d = np.diagonal(H, axis1=1, axis2=2)
        Hd = (
            H
            + (lam[ia, None] * d + 1e-12 * d.max(axis=1, keepdims=True) + 1e-300)[:, :, None] * eye
        )
        fz = frozen[:, :, None] | frozen[:, None, :]
        Hd = np.where(fz, 0.0, Hd) + frozen[:, :, None] * eye
        g = np.where(frozen, 0.0, g)
        try:
            step = np.linalg.solve(Hd, -g[:, :, None])[:, :, 0]
        except np.linalg.LinAlgError:
            step = -g / np.maximum(np.abs(d), 1e-300)
        Pn = np.clip(Pa + step, lb[ia], ub[ia])
        rn, _ = _residuals(form, Pn, ma, na, la)
        cn = huber_rows(rn, delta)
        ok = np.isfinite(cn) & (cn <= cost[ia])
        dec = cost[ia] - cn
        acc = ia[ok]
        P[acc] = Pn[ok]
        tiny_step = np.all(np.abs(Pn - Pa) <= 1e-9 * (np.abs(Pa) + 1e-12), axis=1)
        small = ok & ((dec <= rtol * (cost[ia] + 1e-30)) | tiny_step)
        cost[acc] = cn[ok]
        lam[acc] = np.maximum(lam[acc] / 3.0, 1e-9)
        rej = ia[~ok]
        lam[rej] *= 4.0
        gnorm = np.abs(g).max(axis=1)
        done[ia[small]] = True
        done[ia[(gnorm <= 1e-12 * (1 + cost[ia]))]] = True
        done[rej[lam[rej] > 1e10]] = True
    return P, cost, done


def _linear_starts(
    form: Form, m: np.ndarray, n: np.ndarray, y: np.ndarray, theta: np.ndarray, lb, ub
) -> np.ndarray:
    """For each row of nonlinear parameters, E, A, B by relative least squares.

    Rows of m, n, y (S, N) pair with rows of theta (S, q); lb, ub (S, k).
    """
    S = theta.shape[0]
    lin = [form.idx(p) for p in form.names if p in ("E", "A", "B")]
    nl = [form.idx(p) for p in form.nonlinear]
    P = np.ones((S, form.k))
    P[:, nl] = theta
    X = form.jac(P, m, n)[:, :, lin] / y[:, :, None]
    XtX = np.einsum("snk,snl->skl", X, X) + 1e-12 * np.eye(len(lin))
    Xty = X.sum(axis=1)
    try:
        coef = np.linalg.solve(XtX, Xty[:, :, None])[:, :, 0]
    except np.linalg.LinAlgError:  # collinear columns (a Hill knee outside the data)
        coef = np.matmul(np.linalg.pinv(XtX), Xty[:, :, None])[:, :, 0]
    small = 1e-3 * y.min(axis=1, keepdims=True)
    P[:, lin] = np.where(coef > 0, coef, small)
    return np.clip(P, lb, ub)


def _grid(form: Form, lb: np.ndarray, ub: np.ndarray, size: int) -> np.ndarray:
    """Start grid over the nonlinear parameters: (R, G, q) for bounds (R, k)."""
    q = form.nonlinear
    if not q:
        return np.zeros((lb.shape[0], 1, 0))
    axes = [np.linspace(0.0, 1.0, size)] * len(q)
    mesh = np.stack([g.ravel() for g in np.meshgrid(*axes, indexing="ij")], axis=1)  # (G, q)
    idx = [form.idx(p) for p in q]
    lo, hi = np.log(lb[:, idx]), np.log(ub[:, idx])
    return np.exp(lo[:, None, :] + mesh[None, :, :] * (hi - lo)[:, None, :])


def row_bounds(
    form: Form, m: np.ndarray, y: np.ndarray, wide: bool = False, delta: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`bounds` for R data sets at once (rows of m and y), (R, k) each."""
    R = m.shape[0]
    lo_e, hi_e = GROUP_EXP_BOUNDS if wide else GLOBAL_EXP_BOUNDS
    f = 10.0 if wide else 4.0
    lb = np.zeros((R, form.k))
    ub = np.full((R, form.k), np.inf)
    for i, p in enumerate(form.names):
        if p == "E":
            ub[:, i] = y.min(axis=1) * np.exp(3.0 * delta) * (1 - 1e-9)
        elif p in ("a", "b"):
            lb[:, i], ub[:, i] = lo_e, hi_e
        elif p in ("s", "m0"):
            lb[:, i], ub[:, i] = m.min(axis=1) / f, m.max(axis=1) * f
        elif p == "h":
            lb[:, i], ub[:, i] = HILL_SLOPE_BOUNDS
    return lb, ub


def multistart(
    form: Form,
    m: np.ndarray,
    n: np.ndarray,
    y: np.ndarray,
    delta: float,
    wide: bool = False,
    grid_size: int = 8,
    keep: int = 1,
    max_iter: int = 60,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grid multi-start for R data sets (rows of m, n, y) in one batched solve.

    Returns the ``keep`` best distinct optima per data set, ordered by cost:
    P (R, keep, k), cost (R, keep) (inf where fewer were found), converged.
    """
    R = y.shape[0]
    lb, ub = row_bounds(form, m, y, wide, delta)
    theta = _grid(form, lb, ub, grid_size)  # (R, G, q)
    G = theta.shape[1]
    rep = np.repeat(np.arange(R), G)
    P0 = _linear_starts(form, m[rep], n[rep], y[rep], theta.reshape(R * G, -1), lb[rep], ub[rep])
    P, cost, conv = batch_lm(
        form, m[rep], n[rep], np.log(y[rep]), P0, lb[rep], ub[rep], delta, max_iter=max_iter
    )
    P = P.reshape(R, G, -1)
    cost = np.where(np.isfinite(cost), cost, np.inf).reshape(R, G)
    conv = conv.reshape(R, G)
    outP = np.full((R, keep, form.k), np.nan)
    outC = np.full((R, keep), np.inf)
    outV = np.zeros((R, keep), bool)
    order = np.argsort(cost, axis=1)
    for r in range(R):
        got = 0
        for i in order[r]:
            if not np.isfinite(cost[r, i]) or got >= keep:
                break
            if all(_distinct(form, P[r, i], outP[r, j]) for j in range(got)):
                outP[r, got], outC[r, got], outV[r, got] = P[r, i], cost[r, i], conv[r, i]
                got += 1
    return outP, outC, outV


def _flags(form: Form, P: np.ndarray, lb, ub) -> list[str]:
    out = []
    for i, p in enumerate(form.names):
        span = ub[i] - lb[i] if np.isfinite(ub[i]) else max(abs(P[i]), 1.0)
        if P[i] <= lb[i] + 1e-6 * span:
            out.append(f"{p}=lower")
        elif np.isfinite(ub[i]) and P[i] >= ub[i] - 1e-6 * span:
            out.append(f"{p}=upper")
    return out


def _distinct(form: Form, a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two optima differ materially (nonlinear parameters by > 5%)."""
    for p in form.nonlinear:
        i = form.idx(p)
        if abs(a[i] - b[i]) > 0.05 * max(abs(a[i]), abs(b[i]), 1e-12):
            return True
    return False


def scipy_polish(form: Form, data: Data, x0, lb, ub, delta: float):
    """One bounded robust trf run (the reference optimiser)."""

    def fun(p):
        return _residuals(form, p[None, :], data.m[None, :], data.n[None, :], data.logy)[0][0]

    def jac(p):
        yh = np.maximum(form.predict(p[None, :], data.m[None, :], data.n[None, :])[0], 1e-300)
        return form.jac(p[None, :], data.m[None, :], data.n[None, :])[0] / yh[:, None]

    x0 = np.clip(x0, lb, ub)
    return least_squares(
        fun,
        x0,
        jac=jac,
        bounds=(lb, ub),
        method="trf",
        loss="huber",
        f_scale=delta,
        x_scale="jac",
        max_nfev=500,
    )


def infeasible(form: Form, data: Data) -> str | None:
    """Why ``form`` cannot be identified from ``data`` (None when it can)."""
    if np.unique(data.m).size < form.min_m_levels:
        return f"needs >= {form.min_m_levels} distinct m values"
    if np.unique(data.n).size < form.min_n_levels:
        return f"needs >= {form.min_n_levels} distinct n values"
    if len(data) < form.k + 1:
        return f"needs >= {form.k + 1} runs for {form.k} parameters"
    return None


def unidentified_rows(form: Form, M: np.ndarray, N: np.ndarray) -> np.ndarray:
    """:func:`infeasible`'s level rule for R resampled data sets (rows of M, N)."""
    bad = _distinct_per_row(M) < form.min_m_levels
    return bad | (_distinct_per_row(N) < form.min_n_levels)


def _distinct_per_row(X: np.ndarray) -> np.ndarray:
    S = np.sort(X, axis=1)
    return 1 + (np.diff(S, axis=1) > 0).sum(axis=1)


def fit_form(
    form: Form, data: Data, delta: float, wide: bool = False, grid_size: int = 7, polish: int = 3
) -> FitResult | None:
    """Multi-start bounded robust fit of ``form``; None if it cannot be identified."""
    if infeasible(form, data):
        return None
    lb, ub = bounds(form, data, wide, delta)
    P, cost, _ = multistart(
        form,
        data.m[None, :],
        data.n[None, :],
        data.y[None, :],
        delta,
        wide,
        grid_size,
        keep=polish,
    )
    sols = []
    for i in range(polish):
        # only optima that could rival the best (within 5% before polishing) are worth polishing
        if not np.isfinite(cost[0, i]) or (i > 0 and cost[0, i] > 1.05 * cost[0, 0] + 1e-12):
            continue
        res = scipy_polish(form, data, P[0, i], lb, ub, delta)
        c = float(huber_rows(res.fun, delta))
        # keep the better of the batch optimum and the polished one
        x = res.x if c <= cost[0, i] * (1 + 1e-12) else P[0, i]
        sols.append((min(c, float(cost[0, i])), x, res.status > 0))
    if not sols:
        return None
    sols.sort(key=lambda t: t[0])
    best_c, best_x, conv = sols[0]
    rivals = [
        x for c, x, _ in sols[1:] if c <= best_c * 1.01 + 1e-12 and _distinct(form, best_x, x)
    ]
    r = _residuals(form, best_x[None, :], data.m[None, :], data.n[None, :], data.logy)[0][0]
    return FitResult(
        form=form,
        params=np.asarray(best_x, float),
        cost=best_c,
        residuals=r,
        converged=bool(conv),
        on_bound=_flags(form, best_x, lb, ub),
        rivals=rivals,
    )
