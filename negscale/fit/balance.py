"""The theory's balance point and the budget split, under the joint additive law.

score(m, n) = E − A·m^(−a) − B·n^(−b) (A, B ≥ 0). Its m term equals its n
term at m_bal(n) = (A·n^b/B)^(1/a), so m_bal ∝ n^(b/a) (theory: ½
supervised, 1 self-supervised). With a budget S = m·n, the best split is
m* = G·S^(b/(a+b)), G = (aA/(bB))^(1/(a+b)), clipped to m ≥ 1, n ≥ 1 and,
with a shared pool, m ≤ n.

Both numbers mean something only when this one law describes every cell,
so the law is checked like any other (lack of fit against the cells' own
noise, :func:`negscale.fit.laws.lack_of_fit_p`); a law that fails is
reported as not supported and no budget row is printed. The fit is weighted
least squares over a log grid of (a, b) (9 % steps) with E, A, B in closed
form (A, B ≥ 0); its interval is a parametric bootstrap.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from negscale.fit.cells import Curve
from negscale.fit.laws import CHECK_P, lack_of_fit_p

EXPONENTS = np.exp(np.linspace(np.log(0.02), np.log(3.0), 48))
BALANCE_REPS = 200  # parametric replicates behind the exponent's and the budget's intervals
_SUBSETS = ((True, True), (True, False), (False, True), (False, False))  # which of A, B are free


@dataclass
class JointFit:
    """Parameters (R rows) of the joint law and the weighted residual sum."""

    E: np.ndarray
    A: np.ndarray
    a: np.ndarray
    B: np.ndarray
    b: np.ndarray
    rss: np.ndarray


@dataclass
class Balance:
    """The balance exponent, whether the joint law supports it, and the budget rows."""

    exponent: float
    exponent_ci: tuple[float, float]
    theory: float | None
    supported: bool
    check_p: float
    params: dict[str, float]
    budget: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "exponent": self.exponent,
            "exponent_ci": list(self.exponent_ci),
            "theory": self.theory,
            "supported": self.supported,
            "check_p": self.check_p,
            "law": "E − A·m^(−a) − B·n^(−b)",
            "params": self.params,
        }


def _stack(curves: list[Curve]) -> tuple[np.ndarray, ...]:
    m = np.concatenate([c.m for c in curves])
    n = np.concatenate([np.full(len(c), c.n) for c in curves])
    y = np.concatenate([c.centre for c in curves])
    se = np.concatenate([c.se for c in curves])
    return m, n, y, se


def fit_joint(m: np.ndarray, n: np.ndarray, Y: np.ndarray, w: np.ndarray) -> JointFit:
    """Weighted LS of each row of Y (R, L) on [1, −m^(−a), −n^(−b)] over the
    exponent grid, A, B ≥ 0 (the best feasible of the four subsets)."""
    Y = np.atleast_2d(Y)
    R = Y.shape[0]
    a, b = (g.ravel() for g in np.meshgrid(EXPONENTS, EXPONENTS, indexing="ij"))
    mr, nr = np.exp(np.mean(np.log(m))), np.exp(np.mean(np.log(n)))  # conditioning
    Xm, Xn = (m / mr)[None, :] ** -a[:, None], (n / nr)[None, :] ** -b[:, None]  # (G, L)
    best = np.full(R, np.inf)
    out = {k: np.zeros(R) for k in ("E", "A", "a", "B", "b")}
    for use_a, use_b in _SUBSETS:
        cols = [np.ones_like(Xm)] + ([-Xm] if use_a else []) + ([-Xn] if use_b else [])
        X = np.stack(cols, -1)  # (G, L, p)
        XtW = X.transpose(0, 2, 1) * w  # (G, p, L)
        M = XtW @ X  # (G, p, p)
        ok = np.linalg.cond(M) < 1e12
        Minv = np.linalg.pinv(M)
        XtWy = np.einsum("gpl,rl->rgp", XtW, Y)  # (R, G, p)
        coef = np.einsum("gpq,rgq->rgp", Minv, XtWy)
        # Σw(y − Xc)² = yᵀWy − 2cᵀXᵀWy + cᵀMc, without the (R, G, L) residuals
        quad = np.einsum("rgp,gpq,rgq->rg", coef, M, coef)
        rss = (Y**2 * w).sum(-1)[:, None] - 2 * (coef * XtWy).sum(-1) + quad
        feasible = ok[None, :] & (coef[..., 1:] >= 0).all(-1)
        rss = np.where(feasible, rss, np.inf)
        j = np.argmin(rss, axis=1)
        rows = np.arange(R)
        better = rss[rows, j] < best
        best = np.where(better, rss[rows, j], best)
        c = coef[rows, j]
        k = 1
        upd = {"E": c[:, 0], "a": a[j], "b": b[j]}
        upd["A"] = c[:, k] * mr ** a[j] if use_a else np.zeros(R)
        k += use_a
        upd["B"] = c[:, k] * nr ** b[j] if use_b else np.zeros(R)
        for key, val in upd.items():
            out[key] = np.where(better, val, out[key])
    return JointFit(out["E"], out["A"], out["a"], out["B"], out["b"], best)


def predict(f: JointFit, m: np.ndarray, n: np.ndarray) -> np.ndarray:
    return f.E[:, None] - f.A[:, None] * m ** -f.a[:, None] - f.B[:, None] * n ** -f.b[:, None]


def budget_split(f: JointFit, S: float, max_ratio: float | None) -> tuple[np.ndarray, np.ndarray]:
    """(m*, n*) of each row for the budget S, clipped to the feasible range."""
    hi = S if max_ratio is None else min(S, float(np.sqrt(max_ratio * S)))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        G = (f.a * f.A / (f.b * f.B)) ** (1.0 / (f.a + f.b))
        m = np.clip(G * S ** (f.b / (f.a + f.b)), 1.0, hi)
    m = np.where(np.isnan(m), np.nan, m)
    return m, S / m


def balance(
    curves: list[Curve], setting: str, noise_dof: float, rng: np.random.Generator
) -> Balance | None:
    """The joint law's balance exponent and budget rows (None with < 3 values of n)."""
    if len(curves) < 3:
        return None
    m, n, y, se = _stack(curves)
    w = 1.0 / se**2
    point = fit_joint(m, n, y[None], w)
    dof = m.size - 5
    p = lack_of_fit_p(float(point.rss[0]), dof, noise_dof)
    reps = predict(point, m, n) + rng.standard_normal((BALANCE_REPS, m.size)) * se
    boot = fit_joint(m, n, reps, w)
    ratio = boot.b / boot.a
    lo, hi = np.nanpercentile(ratio, [2.5, 97.5])
    theory = {"supervised": 0.5, "self-supervised": 1.0}.get(setting)
    params = {k: float(getattr(point, k)[0]) for k in ("E", "A", "a", "B", "b")}
    out = Balance(
        float(point.b[0] / point.a[0]), (float(lo), float(hi)), theory, bool(p >= CHECK_P), p,
        params,
    )  # fmt: skip
    if out.supported:
        out.budget = budget_rows(point, boot, m, n, setting)
    return out


def budget_rows(
    point: JointFit, boot: JointFit, m: np.ndarray, n: np.ndarray, setting: str
) -> list[dict]:
    """Four budgets across the tested m·n: the split, its interval, and flags."""
    S_all = m * n
    max_ratio = max(1.0, float(np.max(m / n))) if setting == "self-supervised" else None
    rows = []
    for S in np.geomspace(S_all.min(), S_all.max(), 4):
        pm, pn = budget_split(point, float(S), max_ratio)
        bm, bn = budget_split(boot, float(S), max_ratio)
        mo, no = float(pm[0]), float(pn[0])
        hi = S if max_ratio is None else min(S, np.sqrt(max_ratio * S))
        constraint = None
        if mo <= 1.0 + 1e-9:
            constraint = "m >= 1"
        elif mo >= hi * (1 - 1e-9):
            constraint = "n >= 1" if hi >= S * (1 - 1e-9) else "m <= n"
        inside = m.min() <= mo <= m.max() and n.min() <= no <= n.max()
        rows.append(
            {
                "S": float(S),
                "m": mo,
                "n": no,
                "ratio": mo / no,
                "m_ci": list(np.nanpercentile(bm, [2.5, 97.5])),
                "ratio_ci": list(np.nanpercentile(bm / bn, [2.5, 97.5])),
                "extrapolated": not inside,
                "constraint": constraint,
            }
        )
    return rows
