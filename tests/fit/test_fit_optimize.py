"""The objective and the optimisers, against scipy and known truths."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import least_squares

from negscale.fit.forms import make_form
from negscale.fit.objective import Data, huber_delta, huber_rows, information, runs_test_p
from negscale.fit.optimize import batch_lm, bounds, fit_form, row_bounds


def _design(seeds=3):
    m = np.repeat(2.0 ** np.arange(12), 3 * seeds) / 45.0
    n = np.tile(np.repeat([0.5, 1.0, 2.0], seeds), 12)
    return m, n


def test_huber_rows_is_the_sum_of_huber():
    r = np.array([0.001, -0.02, 0.5, -3.0])
    d = 0.05
    ref = sum(0.5 * x * x if abs(x) <= d else d * (abs(x) - d / 2) for x in r)
    assert huber_rows(r, d) == pytest.approx(ref)


def test_information_criteria_formulas():
    r = np.random.default_rng(0).normal(0, 0.1, 40)
    aicc, bic = information(r, 4)
    base = 40 * np.log(np.sum(r**2) / 40)
    assert aicc == pytest.approx(base + 8 + 2 * 4 * 5 / (40 - 5))
    assert bic == pytest.approx(base + 4 * np.log(40))
    assert information(r[:5], 4)[0] == np.inf


def test_huber_delta_estimates_the_seed_noise():
    rng = np.random.default_rng(3)
    cells = np.repeat(np.arange(200), 4)
    logy = rng.normal(0, 1, 200).repeat(4) + rng.normal(0, 0.03, 800)
    assert huber_delta(logy, cells) == pytest.approx(0.03, rel=0.1)
    assert huber_delta(logy[::4], cells[::4]) is None  # one run per cell: unknown


def test_runs_test_sees_a_pattern():
    assert runs_test_p(np.array([1.0] * 8 + [-1.0] * 8)) < 0.01
    alt = np.array([1.0, -1.0] * 8)
    assert runs_test_p(alt) < 0.01  # too many runs is a pattern too
    rng = np.random.default_rng(0)
    assert runs_test_p(np.sign(rng.normal(size=40))) > 0.01


@pytest.mark.parametrize(
    "form_id,truth",
    [
        ("free", [0.05, 0.3, 0.45, 0.2, 0.7]),
        ("theory-supervised", [0.05, 0.3, 0.2]),
        ("theory-self-supervised", [0.05, 0.3, 0.2]),
        ("exp", [0.05, 0.3, 2.0, 0.2, 0.7]),
    ],
)
def test_fit_form_recovers_noise_free_parameters(form_id, truth):
    form = make_form(form_id, True)
    m, n = _design(1)
    y = form.predict(np.array([truth]), m[None], n[None])[0]
    fit = fit_form(form, Data(m, n, y), delta=0.01)
    np.testing.assert_allclose(fit.params, truth, rtol=1e-4, atol=1e-7)
    assert fit.converged
    assert fit.cost < 1e-12


def test_batch_solver_matches_scipy_trf_on_resampled_data():
    form = make_form("free", True)
    m, n = _design()
    rng = np.random.default_rng(5)
    y = form.predict(np.array([[0.05, 0.3, 0.5, 0.2, 0.6]]), m[None], n[None])[0]
    y = y * np.exp(rng.normal(0, 0.03, y.size))
    data = Data(m, n, y)
    point = fit_form(form, data, 0.03)
    idx = rng.integers(0, y.size, size=(6, y.size))
    lb, ub = row_bounds(form, m[idx], y[idx], False, 0.03)
    P, cost, conv = batch_lm(
        form, m[idx], n[idx], np.log(y[idx]), np.tile(point.params, (6, 1)), lb, ub, 0.03
    )
    assert conv.all()
    for r in range(6):
        d = Data(m[idx[r]], n[idx[r]], y[idx[r]])
        lo, hi = bounds(form, d, False, 0.03)

        def res(p, d=d):
            return np.log(form.predict(p[None], d.m[None], d.n[None])[0]) - d.logy

        ref = least_squares(
            res,
            point.params,
            bounds=(lo, hi),
            method="trf",
            loss="huber",
            f_scale=0.03,
            xtol=1e-14,
            ftol=1e-14,
            gtol=1e-14,
        )
        ref_cost = huber_rows(res(ref.x), 0.03)
        assert cost[r] <= ref_cost * (1 + 1e-6)
        np.testing.assert_allclose(P[r], ref.x, rtol=2e-3, atol=1e-6)


def test_huber_resists_an_outlier():
    form = make_form("theory-self-supervised", True)
    m, n = _design()
    truth = np.array([0.05, 0.3, 0.2])
    y = form.predict(truth[None], m[None], n[None])[0] * np.exp(
        np.random.default_rng(2).normal(0, 0.01, m.size)
    )
    y_bad = y.copy()
    y_bad[np.argmax(m)] *= 3.0  # one run far off
    clean = fit_form(form, Data(m, n, y), 0.01)
    dirty = fit_form(form, Data(m, n, y_bad), 0.01)
    np.testing.assert_allclose(dirty.params, clean.params, rtol=0.05)


def test_estimate_on_a_bound_is_flagged():
    form = make_form("free", False)
    m = np.repeat(2.0 ** np.arange(10), 2) / 20
    y = 0.05 + 0.3 * m ** (-4.0)  # exponent beyond the allowed [0.05, 3]
    fit = fit_form(form, Data(m, np.ones_like(m), y), 0.01)
    assert "a=upper" in fit.on_bound
