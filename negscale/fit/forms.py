"""Candidate forms of the error curve y(m, n), and the saturation math on them.

Everything here is vectorised over a leading "replicate" axis so the bootstrap
can evaluate a thousand parameter vectors at once: parameters are arrays of
shape (R, k), data arrays broadcast as (R, N) or (1, N).

Internally m and n are divided by reference values (geometric means of the
tested range) so that exponents and amplitudes are well scaled; the
``to_original``/``from_original`` helpers convert parameters to and from the
user's units (A·m^(−a) with m in the user's units, s in the user's units).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy.special import expit

LN2 = float(np.log(2.0))
FORM_IDS = ("free", "theory-supervised", "theory-self-supervised", "exp", "hill")
HILL_SLOPE_BOUNDS = (0.3, 12.0)  # the Hill curve's slope h in log m


@dataclass(frozen=True)
class Form:
    """One candidate law ``y = E + m-term + n-term`` (the n-term optional)."""

    id: str
    m_kind: str  # "power": A·m^(−a); "exp": A·exp(−m/s); "hill": A/(1 + (m/m0)^h)
    a: float | None  # fixed m exponent (power); None = free parameter
    has_n: bool
    b: float | None  # fixed n exponent; None = free parameter

    @property
    def names(self) -> tuple[str, ...]:
        names = ["E", "A"]
        if self.m_kind == "power" and self.a is None:
            names.append("a")
        if self.m_kind == "exp":
            names.append("s")
        if self.m_kind == "hill":
            names += ["m0", "h"]
        if self.has_n:
            names.append("B")
            if self.b is None:
                names.append("b")
        return tuple(names)

    @property
    def k(self) -> int:
        return len(self.names)

    @property
    def nonlinear(self) -> tuple[str, ...]:
        """Parameters that enter nonlinearly (searched on a grid for starts)."""
        return tuple(p for p in self.names if p in ("a", "s", "m0", "h", "b"))

    @property
    def min_m_levels(self) -> int:
        """Distinct m values needed to identify the m term (E, A and its shape)."""
        return {"hill": 4, "exp": 3}.get(self.m_kind, 3 if self.a is None else 2)

    @property
    def min_n_levels(self) -> int:
        return (3 if self.b is None else 2) if self.has_n else 1

    def idx(self, name: str) -> int:
        return self.names.index(name)

    def drop_n(self) -> Form:
        return replace(self, has_n=False)

    @property
    def formula(self) -> str:
        if self.m_kind == "exp":
            mt = "A·exp(−m/s)"
        elif self.m_kind == "hill":
            mt = "A/(1 + (m/m0)^h)"
        elif self.a is None:
            mt = "A·m^(−a)"
        elif self.a == 1.0:
            mt = "A/m"
        else:
            mt = "A/√m"
        if not self.has_n:
            return f"E + {mt}"
        nt = "B·n^(−b)" if self.b is None else "B/√n"
        return f"E + {mt} + {nt}"

    # ------------------------------------------------------------------ parts
    def _get(self, P: np.ndarray, name: str) -> np.ndarray:
        return P[:, self.idx(name), None]

    def m_exponent(self, P: np.ndarray) -> np.ndarray:
        """The m exponent a as (R, 1) (power forms only)."""
        if self.a is not None:
            return np.full((P.shape[0], 1), self.a)
        return self._get(P, "a")

    def n_exponent(self, P: np.ndarray) -> np.ndarray:
        if self.b is not None:
            return np.full((P.shape[0], 1), self.b)
        return self._get(P, "b")

    def m_term(self, P: np.ndarray, m: np.ndarray) -> np.ndarray:
        """The m-dependent part of y, shape (R, N)."""
        P = np.atleast_2d(P)
        A = self._get(P, "A")
        if self.m_kind == "exp":
            return A * np.exp(-m / self._get(P, "s"))
        if self.m_kind == "hill":
            return A * expit(-self._hill_log(P, m))
        return A * m ** (-self.m_exponent(P))

    def _hill_log(self, P: np.ndarray, m: np.ndarray) -> np.ndarray:
        """h·ln(m/m0): the Hill term is A·expit(−this), written without overflow."""
        return self._get(P, "h") * np.log(m / self._get(P, "m0"))

    def n_term(self, P: np.ndarray, n: np.ndarray) -> np.ndarray:
        P = np.atleast_2d(P)
        if not self.has_n:
            return np.zeros((P.shape[0], 1))
        return self._get(P, "B") * n ** (-self.n_exponent(P))

    def predict(self, P: np.ndarray, m: np.ndarray, n: np.ndarray) -> np.ndarray:
        """y-hat, shape (R, N) for P of shape (R, k)."""
        P = np.atleast_2d(P)
        return self._get(P, "E") + self.m_term(P, m) + self.n_term(P, n)

    def jac(self, P: np.ndarray, m: np.ndarray, n: np.ndarray) -> np.ndarray:
        """d y-hat / d P, shape (R, N, k)."""
        P = np.atleast_2d(P)
        R = P.shape[0]
        N = np.broadcast_shapes(np.shape(m), np.shape(n))[-1]
        J = np.empty((R, N, self.k))
        J[:, :, 0] = 1.0
        A = self._get(P, "A")
        if self.m_kind == "exp":
            s = self._get(P, "s")
            e = np.exp(-m / s)
            J[:, :, 1] = e
            J[:, :, self.idx("s")] = A * e * m / s**2
        elif self.m_kind == "hill":
            lu = self._hill_log(P, m)
            t = expit(-lu)  # 1/(1 + u), u = (m/m0)^h
            tu = t * (1.0 - t)  # u/(1 + u)²
            J[:, :, 1] = t
            J[:, :, self.idx("m0")] = A * tu * self._get(P, "h") / self._get(P, "m0")
            J[:, :, self.idx("h")] = -A * tu * np.log(m / self._get(P, "m0"))
        else:
            mt = m ** (-self.m_exponent(P))
            J[:, :, 1] = mt
            if self.a is None:
                J[:, :, self.idx("a")] = -A * mt * np.log(m)
        if self.has_n:
            nt = n ** (-self.n_exponent(P))
            J[:, :, self.idx("B")] = nt
            if self.b is None:
                J[:, :, self.idx("b")] = -self._get(P, "B") * nt * np.log(n)
        return J

    # -------------------------------------------------------------- saturation
    def gain(self, P: np.ndarray, m: np.ndarray) -> np.ndarray:
        """Gain per doubling f(m) − f(2m) in error units (= metric units), (R, N)."""
        return self.m_term(P, m) - self.m_term(P, 2.0 * m)

    def m_sat(self, P: np.ndarray, eps: float) -> np.ndarray:
        """Closed-form saturation point (scaled m units), shape (R,).

        power: the gain A(1−2^(−a))m^(−a) falls monotonically, so
        m_sat = [A(1−2^(−a))/ε]^(1/a).
        exp: the gain A·u(1−u), u = exp(−m/s), rises then falls; the top-down
        solution is the larger root, u = (1 − √(1 − 4ε/A))/2, m_sat = −s·ln u;
        when the peak gain A/4 never exceeds ε the whole curve is flat: 0.
        hill: no closed form; the top-down grid solver
        (:func:`negscale.fit.saturation.m_sat_grid_rows`) in x = m/m0, where the
        gain depends on A and h only; 0 when the gain never exceeds ε.
        """
        P = np.atleast_2d(P)
        A = P[:, 1]
        if self.m_kind == "hill":
            return self._hill_m_sat(P, eps)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            if self.m_kind == "exp":
                s = P[:, self.idx("s")]
                x = 4.0 * eps / A
                # the small root of u² − u + ε/A = 0, written stably
                u = 2.0 * (eps / A) / (1.0 + np.sqrt(np.clip(1.0 - x, 0.0, None)))
                out = np.where(x >= 1.0, 0.0, -s * np.log(u))
            else:
                a = self.m_exponent(P)[:, 0]
                out = (A * (1.0 - 2.0 ** (-a)) / eps) ** (1.0 / a)
        return np.where(A > 0, out, 0.0)

    def _hill_m_sat(self, P: np.ndarray, eps: float) -> np.ndarray:
        from negscale.fit.saturation import m_sat_grid_rows

        A, m0, h = P[:, 1], P[:, self.idx("m0")], P[:, self.idx("h")]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            # past the knee the gain is ≈ A(1 − 2^(−h))·x^(−h): the grid reaches beyond that root
            tail = (np.maximum(A, 1e-300) * (1.0 - 2.0 ** (-h)) / eps) ** (1.0 / h)
            hi = np.log(np.clip(4.0 * tail, 10.0, 1e300))

            def gain(lx: np.ndarray) -> np.ndarray:
                hc = h[:, None]
                return A[:, None] * (expit(-hc * lx) - expit(-hc * (lx + LN2)))

            x = m_sat_grid_rows(gain, eps, np.full(A.shape, np.log(1e-3)), hi)
        out = np.where(np.isinf(x), np.inf, np.where(x > 0, x * m0, 0.0))
        return np.where((A > 0) & np.isfinite(h), out, np.where(np.isnan(A), np.nan, 0.0))

    # ------------------------------------------------------------------ units
    def to_original(self, P: np.ndarray, m_ref: float, n_ref: float) -> np.ndarray:
        """Parameters in the user's units (m, n not rescaled)."""
        Q = np.array(np.atleast_2d(P), dtype=float, copy=True)
        if self.m_kind == "exp":
            Q[:, self.idx("s")] *= m_ref
        elif self.m_kind == "hill":
            Q[:, self.idx("m0")] *= m_ref
        else:
            Q[:, 1] *= m_ref ** self.m_exponent(Q)[:, 0]
        if self.has_n:
            Q[:, self.idx("B")] *= n_ref ** self.n_exponent(Q)[:, 0]
        return Q


def make_form(form_id: str, has_n: bool) -> Form:
    """The candidate with id ``form_id``; ``has_n=False`` drops its n term."""
    table = {
        "free": Form("free", "power", None, True, None),
        "theory-supervised": Form("theory-supervised", "power", 1.0, True, 0.5),
        "theory-self-supervised": Form("theory-self-supervised", "power", 0.5, True, 0.5),
        "exp": Form("exp", "exp", None, True, None),
        "hill": Form("hill", "hill", None, True, None),
    }
    f = table[form_id]
    return f if has_n else f.drop_n()


def budget_bounds(
    S: float, m_min: float = 1.0, max_ratio: float | None = None
) -> tuple[float, float]:
    """The allowed range of m on the budget line m·n = S (user's units).

    m ≥ ``m_min`` (at least one negative) and n ≥ 1 (m ≤ S); with ``max_ratio``
    also m ≤ max_ratio·n, i.e. m ≤ √(max_ratio·S) (a shared pool drawn from the
    n training items: m ≤ n). An empty range (lo > hi) means no feasible split.
    """
    hi = float(S) if max_ratio is None else min(float(S), float(np.sqrt(max_ratio * S)))
    return float(m_min), hi


def budget_optimum(
    form: Form,
    P: np.ndarray,
    S: float,
    m_ref: float,
    n_ref: float,
    *,
    m_min: float = 1.0,
    max_ratio: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Budget-optimal (m*, n*) in the user's units for a budget S = m·n, each (R,).

    Minimises the fitted y along m·n = S subject to the constraints of
    :func:`budget_bounds` (m ≥ ``m_min``, n ≥ 1, and m ≤ ``max_ratio``·n when
    given). Rows whose parameters are NaN (failed replicates), and every row
    when the constraints leave no feasible m, give NaN.

    power m-term: along the budget line y is convex in log m, so the
    constrained optimum is the unconstrained one, G = (aA/(bB))^(1/(a+b)),
    m* = G·S^(b/(a+b)), clipped to the allowed range; n* = S/m*.
    exp and hill m-terms: y can have two local minima (m at its lower bound,
    where the m term is still ≈ A, and an interior one past the knee), so it
    is minimised on a log-m grid over the allowed range (64 points a decade),
    then refined by golden-section search inside the cells either side of the
    best grid point (:func:`_line_minimum`, vectorised over replicates).
    """
    P = np.atleast_2d(np.asarray(P, float))
    R = P.shape[0]
    lo_m, hi_m = budget_bounds(S, m_min, max_ratio)
    nan = np.full(R, np.nan)
    if not form.has_n or not (np.isfinite(lo_m) and np.isfinite(hi_m)) or lo_m > hi_m:
        return nan, nan.copy()
    Q = form.to_original(P, m_ref, n_ref)
    bad = np.isnan(Q).any(axis=1)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        if form.m_kind == "power":
            A, B = Q[:, 1], Q[:, form.idx("B")]
            a, b = form.m_exponent(Q)[:, 0], form.n_exponent(Q)[:, 0]
            # A = 0 → G = 0 (m does not matter: all to n); B = 0 → G = ∞ (all to m)
            G = (a * A / (b * B)) ** (1.0 / (a + b))
            m = np.clip(G * S ** (b / (a + b)), lo_m, hi_m)
        else:

            def y(mm: np.ndarray) -> np.ndarray:  # y along the budget line, less E
                return form.m_term(Q, mm) + form.n_term(Q, S / mm)

            m = np.clip(_line_minimum(y, lo_m, hi_m, R), lo_m, hi_m)
        m = np.where(bad, np.nan, m)
        n = S / m
    return m, n


def _line_minimum(y, lo_m: float, hi_m: float, R: int) -> np.ndarray:
    """argmin over m in [lo_m, hi_m] of y(m) (R, K) → (R,): best point of a log grid
    (64 a decade), refined by golden-section search on the cells either side."""
    llo, lhi = np.log(lo_m), np.log(hi_m)
    K = max(3, int(np.ceil((lhi - llo) / np.log(10.0) * 64)) + 1)
    lg = np.linspace(llo, lhi, K)
    Y = np.broadcast_to(y(np.exp(lg)[None, :]), (R, K))
    j = np.argmin(np.where(np.isnan(Y), np.inf, Y), axis=1)
    a, b = lg[np.maximum(j - 1, 0)], lg[np.minimum(j + 1, K - 1)]
    g = (np.sqrt(5.0) - 1.0) / 2.0
    c, d = b - g * (b - a), a + g * (b - a)

    def f(x: np.ndarray) -> np.ndarray:
        return y(np.exp(x)[:, None])[:, 0]

    fc, fd = f(c), f(d)
    for _ in range(80):
        left = fc <= fd  # the minimum lies in [a, d]
        b = np.where(left, d, b)
        a = np.where(left, a, c)
        c_new = np.where(left, b - g * (b - a), d)
        d_new = np.where(left, c, a + g * (b - a))
        fc, fd = np.where(left, f(c_new), fd), np.where(left, fc, f(d_new))
        c, d = c_new, d_new
    m_fine, m_grid = np.exp(0.5 * (a + b)), np.exp(lg[j])
    keep = f(np.log(m_fine)) <= f(np.log(m_grid))
    return np.where(keep, m_fine, m_grid)
