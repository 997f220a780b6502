"""Laws as smoothers: forms of one n group's curve, fitted, checked, bootstrapped.

A form says score(m) = E + β·shape(m; θ) with β ≤ 0 (the metric rises toward
a plateau E as m grows; scores are higher-is-better). A form is one class
with a name, a formula, its shape and a grid of its shape parameters θ,
registered with :func:`register`; adding a form touches only its class.

Fitting is weighted least squares on the cell centres (weights 1/se²) by
variable projection: for every θ on the grid, E and β are solved in closed
form, the best θ is kept, and a finer grid around it refines it. It is
exhaustive (no local optima, no starting values) and vectorised over
bootstrap replicates, which is why it is written here rather than taken from
``scipy.optimize`` (a thousand small nonlinear fits a group).

A law is *checked* before it may narrow an answer: its lack of fit against
the cells' own noise (an F test of the weighted residuals), and its
leave-one-level-out predictions of the levels next to its m_sat. Its
interval is a parametric bootstrap: the fitted curve plus noise of each
cell's standard error (scaled by a χ² draw for the uncertainty of the noise
itself, and by any lack of fit), refitted with the same form.

Why one module of about 440 lines: the forms, their variable-projection fit
and the checks that decide whether a form may narrow the answer are one piece.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from scipy.special import expit

from negscale.fit.cells import Curve
from negscale.fit.quantiles import chi2_sf, f_sf, t_ppf
from negscale.registry import Registry

FORMS: Registry[Form] = Registry("fit form", "fit form")  # name -> the form's one instance
CHECK_P = 0.05  # a law whose lack-of-fit p-value is below this is not used
STARTS = 6  # best grid points refined, so a second basin is not missed
REFINE_ROUNDS = 24  # pattern-search rounds after the grid (at most)
MIN_SCALE = 1.0 / 64.0  # ... stopping once every step is this fraction of a grid step
LOO_REPS = 48  # replicates behind each leave-one-level-out prediction's variance
SAT_GRID_STEP = 1.0 / 16.0  # doublings between points where a law's gain is evaluated


def register(cls: type[Form]) -> type[Form]:
    """Class decorator: make a form available to the fitter by its name."""
    FORMS.add(cls.name, cls())
    return cls


class Form:
    """score(m) = E + β·shape(m; θ), β ≤ 0; subclasses give the shape and θ's grid."""

    name: ClassVar[str]
    formula: ClassVar[str]
    params: ClassVar[tuple[str, ...]]

    def grid(self, m: np.ndarray) -> np.ndarray:
        """Candidate θ values (G, p) for levels ``m``."""
        raise NotImplementedError

    def shape(self, theta: np.ndarray, m: np.ndarray) -> np.ndarray:
        """shape(m; θ) for θ of shape (G, p) and m of shape (L,) or (G, L): (G, L)."""
        raise NotImplementedError

    def refine(self, theta: np.ndarray, m: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """A local grid (5 points an axis) of ±``scale`` (R,) grid steps around each
        row of θ (R, p) → (R, K, p); θ itself is the centre point."""
        steps = self.grid_steps(m)
        offsets = np.stack(np.meshgrid(*[np.linspace(-1, 1, 5)] * len(steps)), -1)
        offsets = offsets.reshape(-1, len(steps)) * steps
        return theta[:, None, :] * np.exp(offsets[None, :, :] * scale[:, None, None])

    def edge(self, p: int) -> np.ndarray:
        """Which of :meth:`refine`'s K points lie on the local grid's border."""
        idx = np.stack(np.meshgrid(*[np.arange(5)] * p), -1).reshape(-1, p)
        return ((idx == 0) | (idx == 4)).any(axis=1)

    def grid_steps(self, m: np.ndarray) -> np.ndarray:
        """The log step of each θ axis of :meth:`grid` (for :meth:`refine`)."""
        raise NotImplementedError

    @property
    def k(self) -> int:
        """Parameters: E, β and θ."""
        return 2 + len(self.params)


def _log_axis(lo: float, hi: float, count: int) -> np.ndarray:
    return np.exp(np.linspace(np.log(lo), np.log(hi), count))


@register
class Power(Form):
    name = "power"
    formula = "E − A·m^(−a)"
    params = ("a",)
    _count = 160
    _range = (0.02, 4.0)

    def grid(self, m: np.ndarray) -> np.ndarray:
        return _log_axis(*self._range, self._count)[:, None]

    def grid_steps(self, m: np.ndarray) -> np.ndarray:
        return np.array([np.log(self._range[1] / self._range[0]) / (self._count - 1)])

    def shape(self, theta: np.ndarray, m: np.ndarray) -> np.ndarray:
        return np.asarray(m, float) ** -theta[..., 0:1]


@register
class Exp(Form):
    name = "exp"
    formula = "E − A·exp(−m/s)"
    params = ("s",)
    _count = 160

    def _range(self, m: np.ndarray) -> tuple[float, float]:
        return float(m.min()) / 20.0, float(m.max()) * 20.0

    def grid(self, m: np.ndarray) -> np.ndarray:
        return _log_axis(*self._range(m), self._count)[:, None]

    def grid_steps(self, m: np.ndarray) -> np.ndarray:
        lo, hi = self._range(m)
        return np.array([np.log(hi / lo) / (self._count - 1)])

    def shape(self, theta: np.ndarray, m: np.ndarray) -> np.ndarray:
        return np.exp(-np.asarray(m, float) / theta[..., 0:1])


@register
class Knee(Form):
    name = "knee"
    formula = "E − A/(1 + (m/m0)^h)"
    params = ("m0", "h")
    _counts = (128, 40)
    _h = (0.25, 12.0)

    def _m0(self, m: np.ndarray) -> tuple[float, float]:
        return float(m.min()) / 30.0, float(m.max()) * 30.0

    def grid(self, m: np.ndarray) -> np.ndarray:
        m0 = _log_axis(*self._m0(m), self._counts[0])
        h = _log_axis(*self._h, self._counts[1])
        return np.stack(np.meshgrid(m0, h, indexing="ij"), -1).reshape(-1, 2)

    def grid_steps(self, m: np.ndarray) -> np.ndarray:
        lo, hi = self._m0(m)
        return np.array(
            [
                np.log(hi / lo) / (self._counts[0] - 1),
                np.log(self._h[1] / self._h[0]) / (self._counts[1] - 1),
            ]
        )

    def shape(self, theta: np.ndarray, m: np.ndarray) -> np.ndarray:
        lm = np.log(np.asarray(m, float))
        return expit(-theta[..., 1:2] * (lm - np.log(theta[..., 0:1])))


# ------------------------------------------------------------------ fitting
@dataclass
class Fits:
    """One form fitted to R data vectors: parameters and weighted residual sums."""

    form: Form
    E: np.ndarray  # (R,)
    beta: np.ndarray  # (R,) ≤ 0
    theta: np.ndarray  # (R, p)
    rss: np.ndarray  # (R,) Σ w·residual²

    def predict(self, m: np.ndarray) -> np.ndarray:
        """(R, L) scores at m."""
        return self.E[:, None] + self.beta[:, None] * self.form.shape(self.theta, m)

    def m_sat(self, eps: float, m_lo: float, m_hi: float) -> np.ndarray:
        """(R,) the last m whose doubling gains more than ε; 0 when none does,
        ∞ when the gain still exceeds ε 30 doublings past ``m_hi``."""
        t = np.arange(np.log2(m_lo) - 12.0, np.log2(m_hi) + 30.0, SAT_GRID_STEP)
        m = 2.0**t
        gain = -self.beta[:, None] * (
            self.form.shape(self.theta, m) - self.form.shape(self.theta, 2 * m)
        )
        over = gain > eps
        any_over = over.any(axis=1)
        last = over.shape[1] - 1 - np.argmax(over[:, ::-1], axis=1)
        top = last >= t.size - 1
        lo = t[np.minimum(last, t.size - 2)]
        hi = lo + SAT_GRID_STEP
        for _ in range(30):  # bisection inside the grid step: gain(lo) > ε ≥ gain(hi)
            mid = 0.5 * (lo + hi)
            mm = 2.0 ** mid[:, None]
            g = (
                -self.beta
                * (self.form.shape(self.theta, mm) - self.form.shape(self.theta, 2 * mm))[:, 0]
            )
            lo, hi = np.where(g > eps, mid, lo), np.where(g > eps, hi, mid)
        return np.where(~any_over, 0.0, np.where(top, np.inf, 2.0**hi))


def _solve(c: np.ndarray, w: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, ...]:
    """Weighted LS of c (R, L) on [1, X] for every shape row: X (G, L) or (R, G, L),
    weights w (L,) or (R, L).

    Returns E, β, rss of shape (R, G), with β ≤ 0 enforced (β > 0 → the
    constant fit)."""
    R = c.shape[0]
    if X.ndim == 2 and np.ndim(w) == 1:  # one design for every row: matrix products
        cw = c * w
        Sw = np.full((R, 1), w.sum())
        Sx, Sxx = (X @ w)[None, :], ((X**2) @ w)[None, :]
        Sy, Sxy, Syy = cw.sum(-1)[:, None], cw @ X.T, (c * cw).sum(-1)[:, None]
    else:
        Xb = np.broadcast_to(X if X.ndim == 3 else X[None], (R, *X.shape[-2:]))
        W = np.broadcast_to(np.atleast_2d(w), c.shape)
        Sw = W.sum(-1)[:, None]
        Sx = np.einsum("rl,rgl->rg", W, Xb)
        Sxx = np.einsum("rl,rgl->rg", W, Xb**2)
        Sy = (c * W).sum(-1)[:, None]
        Sxy = np.einsum("rl,rgl->rg", c * W, Xb)
        Syy = (c**2 * W).sum(-1)[:, None]
    det = Sw * Sxx - Sx**2
    ok = det > 1e-12 * Sw * np.maximum(Sxx, 1e-300)
    with np.errstate(divide="ignore", invalid="ignore"):
        beta = np.where(ok, (Sw * Sxy - Sx * Sy) / det, 0.0)
    beta = np.minimum(beta, 0.0)
    E = (Sy - beta * Sx) / Sw
    # a shape that is ~1e-156 at every level needs |β| ~1e155, whose square overflows:
    # its rss reads ∞ (the candidate is dropped) without numpy's warning in the output
    with np.errstate(over="ignore", invalid="ignore"):
        rss = Syy - 2 * E * Sy - 2 * beta * Sxy + E**2 * Sw + 2 * E * beta * Sx + beta**2 * Sxx
    rss = np.where(ok, np.maximum(rss, 0.0), np.inf)
    return E, beta, rss


def fit_form(
    form: Form,
    m: np.ndarray,
    c: np.ndarray,
    w: np.ndarray,
    start: np.ndarray | None = None,
    search_grid: bool = True,
    grid_stride: int = 1,
) -> Fits:
    """Fit ``form`` to each row of c (R, L) at levels m with weights w (L,) or (R, L).

    The best STARTS points of the grid are refined by a pattern search. With
    ``start`` (θ of shape (p,) or (R, p) near which each row's optimum lies,
    as for replicates of a fit), that θ and the best grid point are refined
    instead, or that θ alone when ``search_grid`` is False; ``grid_stride``
    thins the grid for such a guarded start.
    """
    c = np.atleast_2d(c)
    R = c.shape[0]
    if start is not None and not search_grid:
        S, theta = 1, np.broadcast_to(start, (R, np.shape(start)[-1])).copy()
    else:
        grid = form.grid(m)[::grid_stride]
        _, _, rss = _solve(c, w, form.shape(grid, m))
        if start is None:
            S = min(STARTS, grid.shape[0])
            best = np.argpartition(rss, S - 1, axis=1)[:, :S]
            theta = grid[best].reshape(R * S, -1)
        else:
            S = 2
            first = np.broadcast_to(start, (R, grid.shape[1]))
            theta = np.stack([first, grid[np.argmin(rss, axis=1)]], 1).reshape(R * S, -1)
    cs = np.repeat(c, S, axis=0)
    ws = np.repeat(np.broadcast_to(np.atleast_2d(w), c.shape), S, axis=0)
    rows = np.arange(R * S)
    scale = np.ones(R * S)
    edge = form.edge(theta.shape[1])
    for _ in range(REFINE_ROUNDS):  # pattern search: move while the best is on the border,
        local = form.refine(theta, m, scale)  # else halve the step
        E, beta, rss = _solve(cs, ws, form.shape(local, m))
        j = np.argmin(rss, axis=1)
        theta = local[rows, j]
        scale = np.where(edge[j], scale, 0.5 * scale)
        if scale.max() < MIN_SCALE:
            break
    E, beta, rss = E[rows, j].reshape(R, S), beta[rows, j].reshape(R, S), rss[rows, j]
    k = np.argmin(rss.reshape(R, S), axis=1)
    pick = np.arange(R) * S + k
    return Fits(form, E[np.arange(R), k], beta[np.arange(R), k], theta[pick], rss[pick])


# ------------------------------------------------------------------ checking
@dataclass
class LawAnswer:
    """One checked form on one n group."""

    form: str
    formula: str
    m_sat: float
    samples: np.ndarray  # m_sat of the parametric replicates (for any interval level)
    rss: float
    dof: int
    check_p: float  # lack-of-fit p-value
    loo_z: float  # largest |standardised| leave-one-level-out error near m_sat
    passed: bool
    why: str  # why it failed, or "" when it passed
    params: dict[str, float]
    aicc: float

    def ci(self, alpha: float) -> tuple[float, float]:
        """Percentile interval of the replicates at level 1 − α (∞ kept as ∞)."""
        if self.samples.size == 0:
            return float("nan"), float("nan")
        big = np.where(np.isinf(self.samples), 1e300, self.samples)  # ∞ sorts last, no NaN
        lo, hi = np.nanpercentile(big, [100 * alpha / 2, 100 * (1 - alpha / 2)])
        return tuple(float(np.inf) if v >= 1e299 else float(v) for v in (lo, hi))


def lack_of_fit_p(rss: float, dof_fit: int, dof_noise: float) -> float:
    """P-value of the weighted residuals against the cells' own noise (F test)."""
    if dof_fit <= 0:
        return float("nan")
    if not np.isfinite(dof_noise) or dof_noise > 1e4:
        return chi2_sf(rss, dof_fit)
    return f_sf(rss / dof_fit, dof_fit, dof_noise)


def loo_z(
    form: Form, curve: Curve, w: np.ndarray, near: np.ndarray, rng: np.random.Generator
) -> float:
    """Largest |c_j − prediction without level j| over the levels ``near``, in
    sds of that difference: se_j² plus the prediction's own variance (from
    LOO_REPS parametric replicates of the fit without level j), so a flexible
    form is not failed for being unsure where a left-out knee lies."""
    return _loo_z(form, curve, w, near, _loo_draws(near, len(curve), rng))


def _loo_draws(near: np.ndarray, levels: int, rng: np.random.Generator) -> list[np.ndarray]:
    return [rng.standard_normal((LOO_REPS, levels)) for _ in near]


def _loo_z(
    form: Form, curve: Curve, w: np.ndarray, near: np.ndarray, draws: list[np.ndarray]
) -> float:
    """:func:`loo_z` from its standard-normal draws, one (LOO_REPS, L) block a level."""
    z = 0.0
    for j, draw in zip(near, draws, strict=True):  # one weight vector per left-out level
        wj = w.copy()
        wj[j] = 0.0
        f = fit_form(form, curve.m, curve.centre[None], wj)
        base = f.predict(curve.m)[0]
        noise = draw * curve.se
        reps = fit_form(form, curve.m, base + noise, wj, start=f.theta[0], grid_stride=3)
        var = curve.se[j] ** 2 + reps.predict(curve.m[j : j + 1])[:, 0].var()
        z = max(z, abs(curve.centre[j] - base[j]) / np.sqrt(var))
    return float(z)


@dataclass
class Checking:
    """A form fitted to one n group, with every random number its check will use.

    :func:`start_check` takes them from the generator in the order a check
    always has, so :func:`finish_check` (the refits: nearly all the time) can
    run in any order or at once, on threads, with the same answers.
    """

    form: Form
    curve: Curve
    eps: float
    noise_dof: float
    w: np.ndarray
    fit: Fits
    point: float
    near: np.ndarray
    loo_draws: list[np.ndarray]
    boot_draws: tuple[np.ndarray | float, np.ndarray] | None  # (κ, normals); None: no bootstrap


def start_check(
    form: Form, curve: Curve, eps: float, noise_dof: float, reps: int, rng: np.random.Generator
) -> Checking | None:
    """The point fit and the check's draws; None when the form cannot be fitted."""
    if len(curve) - form.k < 1:
        return None
    w = 1.0 / curve.se**2
    fit = fit_form(form, curve.m, curve.centre[None], w)
    point = float(fit.m_sat(eps, float(curve.m[0]), float(curve.m[-1]))[0])
    near = _levels_near(curve.m, point)
    loo = _loo_draws(near, len(curve), rng)
    boot = None
    if reps > 0:
        dof = max(float(noise_dof), 1.0)
        kappa = np.sqrt(dof / rng.chisquare(dof, size=reps))[:, None] if dof < 1e4 else 1.0
        boot = (kappa, rng.standard_normal((reps, curve.m.size)))
    return Checking(form, curve, eps, noise_dof, w, fit, point, near, loo, boot)


def finish_check(c: Checking) -> LawAnswer:
    """Check and bootstrap the form: lack of fit, leave-one-level-out, replicates' m_sat."""
    form, curve, fit = c.form, c.curve, c.fit
    L = len(curve)
    dof_fit = L - form.k
    p = lack_of_fit_p(float(fit.rss[0]), dof_fit, c.noise_dof)
    z = _loo_z(form, curve, c.w, c.near, c.loo_draws)
    z_max = t_ppf(1 - 0.05 / (2 * max(c.near.size, 1)), max(c.noise_dof, 1.0))
    why = ""
    if not p >= CHECK_P:
        why = f"lack of fit (p = {p:.2g})"
    elif z > z_max:
        why = f"leave-one-level-out error {z:.1f} se next to its m_sat"
    samples = _bootstrap(form, fit, curve, c.w, c.eps, dof_fit, c.boot_draws)
    rss = float(fit.rss[0])
    aicc = L * np.log(max(rss, 1e-300) / L) + 2 * form.k
    if L - form.k - 1 > 0:
        aicc += 2 * form.k * (form.k + 1) / (L - form.k - 1)
    params = {"E": float(fit.E[0]), "A": float(-fit.beta[0])}
    params.update({name: float(v) for name, v in zip(form.params, fit.theta[0], strict=True)})
    return LawAnswer(form.name, form.formula, c.point, samples, rss, dof_fit, p, z, not why, why,
                     params, float(aicc))  # fmt: skip


def check(
    form: Form,
    curve: Curve,
    eps: float,
    noise_dof: float,
    reps: int,
    rng: np.random.Generator,
) -> LawAnswer | None:
    """Fit, check and bootstrap one form on one n group; None when it cannot be fitted."""
    started = start_check(form, curve, eps, noise_dof, reps, rng)
    return None if started is None else finish_check(started)


def _levels_near(m: np.ndarray, point: float) -> np.ndarray:
    """The interior levels within one doubling either side of the law's m_sat
    (where a wrong shape would move the crossing)."""
    if not np.isfinite(point) or point <= 0:
        return np.empty(0, int)
    idx = np.arange(1, m.size - 1)
    return idx[np.abs(np.log2(m[idx] / point)) <= 1.5]


def _bootstrap(
    form: Form,
    fit: Fits,
    curve: Curve,
    w: np.ndarray,
    eps: float,
    dof_fit: int,
    draws: tuple[np.ndarray | float, np.ndarray] | None,
) -> np.ndarray:
    """m_sat over parametric replicates of the fitted curve (R,), from the draws
    (κ, the replicates' Student-t scale, and their standard normals)."""
    if draws is None:
        return np.empty(0)
    kappa, normals = draws
    base = fit.predict(curve.m)[0]
    inflate = max(1.0, float(np.sqrt(fit.rss[0] / dof_fit)))
    noise = normals * curve.se * inflate * kappa
    refit = fit_form(form, curve.m, base + noise, w, start=fit.theta[0], grid_stride=3)
    return refit.m_sat(eps, float(curve.m[0]), float(curve.m[-1]))


def residual_sigma(curves: list[Curve]) -> tuple[float, float, str] | None:
    """Noise sd without seeds: the residuals of one form fitted to every n group.

    The form is the one with the smallest pooled residual variance
    √(ΣRSS / Σdof) over the groups (one choice for all groups, so the pick
    does not chase each group's noise). None when no form leaves a degree
    of freedom."""
    best: tuple[float, float, str] | None = None
    for form in FORMS.values():
        rss, dof = 0.0, 0
        for c in curves:
            d = len(c) - form.k
            if d < 1:
                continue
            f = fit_form(form, c.m, c.centre[None], np.ones(len(c)))
            rss, dof = rss + float(f.rss[0]), dof + d
        if dof and (best is None or rss / dof < best[0] ** 2):
            best = (float(np.sqrt(rss / dof)), float(dof), form.name)
    return best
