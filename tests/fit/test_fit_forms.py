"""Forms and their saturation math against independent references."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from negscale.fit.forms import FORM_IDS, budget_optimum, make_form
from negscale.fit.saturation import m_sat_grid

from .laws import brute_force_m_sat, power_m_sat


@pytest.mark.parametrize(
    "A,a,eps", [(0.3, 0.5, 1e-3), (2.0, 1.0, 5e-3), (0.05, 0.2, 1e-4), (7.0, 2.5, 1e-2)]
)
def test_power_m_sat_closed_form_matches_brute_force(A, a, eps):
    form = make_form("free", has_n=False)  # E, A, a
    P = np.array([[0.1, A, a]])
    closed = float(form.m_sat(P, eps)[0])
    brute = power_m_sat(A, a, eps)
    assert closed == pytest.approx(brute, rel=2e-4)
    # and the docs/fitting.md formula written out by hand
    assert closed == pytest.approx((A * (1 - 2 ** (-a)) / eps) ** (1 / a), rel=1e-12)


@pytest.mark.parametrize("form_id,a", [("theory-supervised", 1.0), ("theory-self-supervised", 0.5)])
def test_theory_forms_use_their_fixed_exponent(form_id, a):
    form = make_form(form_id, has_n=True)  # E, A, B
    P = np.array([[0.1, 0.8, 3.0]])
    assert float(form.m_sat(P, 2e-3)[0]) == pytest.approx(power_m_sat(0.8, a, 2e-3), rel=2e-4)


@pytest.mark.parametrize(
    "A,s,eps", [(0.3, 40.0, 1e-3), (0.3, 40.0, 0.07), (1.0, 0.5, 1e-4), (0.2, 5.0, 0.06)]
)
def test_exp_m_sat_closed_form_matches_brute_force_top_down(A, s, eps):
    form = make_form("exp", has_n=False)  # E, A, s
    P = np.array([[0.0, A, s]])
    grid = np.geomspace(1e-8, 1e8, 400_001)
    gain = A * np.exp(-grid / s) - A * np.exp(-2 * grid / s)
    brute = brute_force_m_sat(grid, gain, eps)
    closed = float(form.m_sat(P, eps)[0])
    if eps >= A / 4:  # the gain never exceeds ε: flat everywhere
        assert closed == 0.0
        assert brute == grid[0]
    else:
        assert closed == pytest.approx(brute, rel=1e-4)
        # not the rising branch at tiny m, where the gain is also below ε
        assert closed > s * np.log(2)


def test_grid_solver_agrees_with_closed_forms():
    power = make_form("free", has_n=False)
    P = np.array([[0.0, 0.4, 0.6]])
    g = m_sat_grid(lambda m: power.gain(P, m)[0], 1e-3, 1e-6, 1e12)
    assert g == pytest.approx(float(power.m_sat(P, 1e-3)[0]), rel=1e-6)
    ex = make_form("exp", has_n=False)
    Q = np.array([[0.0, 0.3, 40.0]])
    g = m_sat_grid(lambda m: ex.gain(Q, m)[0], 1e-3, 1e-6, 1e12)
    assert g == pytest.approx(float(ex.m_sat(Q, 1e-3)[0]), rel=1e-6)
    # beyond the grid: inf; never above ε: the grid's bottom
    assert m_sat_grid(lambda m: power.gain(P, m)[0], 1e-3, 1e-6, 10.0) == float("inf")
    assert m_sat_grid(lambda m: 0 * m, 1e-3, 1e-6, 10.0) == 1e-6


@pytest.mark.parametrize("form_id", FORM_IDS)
@pytest.mark.parametrize("has_n", [True, False])
def test_jacobian_matches_finite_differences(form_id, has_n):
    form = make_form(form_id, has_n)
    rng = np.random.default_rng(1)
    m = np.geomspace(0.05, 20, 9)
    n = np.tile([0.5, 1.0, 2.0], 3)
    base = {"E": 0.05, "A": 0.3, "a": 0.6, "s": 2.0, "m0": 1.5, "h": 2.5, "B": 0.2, "b": 0.4}
    P = np.array([[base[k] * (1 + 0.1 * rng.random()) for k in form.names]])
    J = form.jac(P, m[None], n[None])[0]
    for i in range(form.k):
        h = 1e-6 * max(abs(P[0, i]), 1e-3)
        Pp, Pm = P.copy(), P.copy()
        Pp[0, i] += h
        Pm[0, i] -= h
        fd = (form.predict(Pp, m[None], n[None]) - form.predict(Pm, m[None], n[None]))[0] / (2 * h)
        np.testing.assert_allclose(J[:, i], fd, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("form_id", FORM_IDS)
def test_original_units_give_the_same_curve(form_id):
    form = make_form(form_id, True)
    m_ref, n_ref = 300.0, 5e4
    P = np.array([[0.05, 0.3, 0.6, 0.2, 0.4][: form.k]])
    if form_id == "exp":
        P = np.array([[0.05, 0.3, 2.0, 0.2, 0.4]])
    if form_id == "hill":
        P = np.array([[0.05, 0.3, 2.0, 1.7, 0.2, 0.4]])
    m = np.geomspace(1, 1e4, 7)
    n = np.full(7, 2e4)
    scaled = form.predict(P, m / m_ref, n / n_ref)[0]
    Q = form.to_original(P, m_ref, n_ref)[0]
    p = dict(zip(form.names, Q, strict=True))
    b = p.get("b", form.b)
    direct = p["E"] + _m_term(form_id, p, form.a, m) + p["B"] * n ** (-b)
    np.testing.assert_allclose(scaled, direct, rtol=1e-12)


def _m_term(form_id: str, p: dict, a_fixed, m):
    """The m term in the user's units, written out by hand."""
    if form_id == "exp":
        return p["A"] * np.exp(-m / p["s"])
    if form_id == "hill":
        return p["A"] / (1.0 + (m / p["m0"]) ** p["h"])
    return p["A"] * m ** (-p.get("a", a_fixed))


@pytest.mark.parametrize(
    "A,m0,h,eps", [(30.0, 2e5, 2.0, 1.0), (0.3, 40.0, 1.2, 1e-3), (0.2, 5.0, 6.0, 0.01)]
)
def test_hill_m_sat_matches_brute_force_top_down(A, m0, h, eps):
    form = make_form("hill", has_n=False)  # E, A, m0, h
    P = np.array([[0.0, A, m0, h]])
    grid = np.geomspace(m0 * 1e-6, m0 * 1e8, 400_001)
    term = A / (1 + (grid / m0) ** h)
    gain = term - A / (1 + (2 * grid / m0) ** h)
    brute = brute_force_m_sat(grid, gain, eps)
    assert float(form.m_sat(P, eps)[0]) == pytest.approx(brute, rel=1e-4)
    # the peak gain never reaches ε: flat everywhere, m_sat = 0
    assert float(form.m_sat(np.array([[0.0, eps, m0, h]]), eps)[0]) == 0.0


def _brute_budget(f, S):
    """Minimise the n- and m-dependent error along m·n = S by a 1-D search in log m."""
    res = minimize_scalar(
        lambda lm: f(np.exp(lm), S / np.exp(lm)),
        bounds=(-30, 60),
        method="bounded",
        options={"xatol": 1e-10},
    )
    return np.exp(res.x)


@pytest.mark.parametrize("form_id", FORM_IDS)
def test_budget_optimum_matches_brute_force(form_id):
    form = make_form(form_id, True)
    vals = {"E": 0.05, "A": 0.3, "a": 0.7, "s": 50.0, "m0": 50.0, "h": 1.5, "B": 4.0, "b": 0.45}
    P = np.array([[vals[k] for k in form.names]])
    p = dict(zip(form.names, P[0], strict=True))
    b = p.get("b", form.b)

    def y(m, n):
        return _m_term(form_id, p, form.a, m) + p["B"] * n ** (-b)

    for S in (1e6, 1e8, 1e10):
        m_star, n_star = budget_optimum(form, P, S, 1.0, 1.0)
        ref = _brute_budget(y, S)
        assert float(m_star[0]) == pytest.approx(ref, rel=2e-3)
        assert float(m_star[0] * n_star[0]) == pytest.approx(S, rel=1e-9)


def test_budget_ratio_theory_scalings():
    # self-supervised theory: m*/n* = (A/B)² at every budget
    ss = make_form("theory-self-supervised", True)
    P = np.array([[0.05, 0.3, 4.0]])
    for S in (1e4, 1e8):
        m_, n_ = budget_optimum(ss, P, S, 1.0, 1.0)
        assert float(m_[0] / n_[0]) == pytest.approx((0.3 / 4.0) ** 2, rel=1e-9)
    # supervised theory: m*/n* ∝ S^(−1/3)
    sup = make_form("theory-supervised", True)
    r = [float(np.divide(*budget_optimum(sup, P, S, 1.0, 1.0))[0]) for S in (1e6, 1e9)]
    assert r[1] / r[0] == pytest.approx(1e3 ** (-1 / 3), rel=1e-9)
