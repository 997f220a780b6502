"""Forms: fitted against scipy's curve_fit, m_sat against closed forms, the registry."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest
from scipy.optimize import curve_fit

from negscale.fit import fit, laws
from negscale.fit import simulate as sim
from negscale.fit.cells import Curve

M = 2.0 ** np.arange(10)


def _shape_fn(form):
    def f(m, E, A, *theta):
        return E - A * form.shape(np.array([theta]), m)[0]

    return f


@pytest.mark.parametrize(
    "name, truth",
    [("power", (0.9, 0.3, 0.7)), ("exp", (0.8, 0.25, 20.0)), ("knee", (0.85, 0.3, 12.0, 2.5))],
)
def test_each_form_recovers_its_parameters_like_curve_fit(name, truth):
    form = laws.FORMS[name]
    y = _shape_fn(form)(M, *truth)
    rng = np.random.default_rng(0)
    noisy = y + 1e-4 * rng.standard_normal(M.size)
    ours = laws.fit_form(form, M, noisy[None], np.ones(M.size))
    ref, _ = curve_fit(_shape_fn(form), M, noisy, p0=truth, maxfev=20000)
    got = [ours.E[0], -ours.beta[0], *ours.theta[0]]
    assert np.allclose(got, ref, rtol=2e-3, atol=1e-5)
    ref_rss = float(np.sum((noisy - _shape_fn(form)(M, *ref)) ** 2))
    assert ours.rss[0] <= ref_rss * 1.01 + 1e-15  # the pattern search stops at 1/64 grid step


def test_m_sat_matches_the_closed_forms():
    eps = 1e-3
    power = laws.Fits(laws.FORMS["power"], np.array([0.9]), np.array([-0.3]),
                      np.array([[0.7]]), np.zeros(1))  # fmt: skip
    assert power.m_sat(eps, 1, 512)[0] == pytest.approx(
        (0.3 * (1 - 2**-0.7) / eps) ** (1 / 0.7), rel=1e-6
    )
    expo = laws.Fits(laws.FORMS["exp"], np.array([0.9]), np.array([-0.2]),
                     np.array([[30.0]]), np.zeros(1))  # fmt: skip
    u = (1 - np.sqrt(1 - 4 * eps / 0.2)) / 2
    assert expo.m_sat(eps, 1, 512)[0] == pytest.approx(-30.0 * np.log(u), rel=1e-6)
    knee = laws.Fits(laws.FORMS["knee"], np.array([0.9]), np.array([-0.2]),
                     np.array([[16.0, 3.0]]), np.zeros(1))  # fmt: skip
    truth = sim.true_m_sat(lambda m: 0.9 - 0.2 * sim.hill(m, 16.0, -3.0), eps)
    assert knee.m_sat(eps, 1, 512)[0] == pytest.approx(truth, rel=1e-6)


def test_a_flat_law_saturates_at_zero_and_a_steep_one_beyond_the_grid():
    # exp's gain peaks at A/4: with A < 4ε no doubling anywhere gains more than ε
    flat = laws.Fits(laws.FORMS["exp"], np.array([0.9]), np.array([-3e-3]),
                     np.array([[10.0]]), np.zeros(1))  # fmt: skip
    assert flat.m_sat(1e-3, 1, 512)[0] == 0.0
    slow = laws.Fits(laws.FORMS["power"], np.array([0.9]), np.array([-10.0]),
                     np.array([[0.02]]), np.zeros(1))  # fmt: skip
    assert slow.m_sat(1e-3, 1, 512)[0] == np.inf


def _curve(centre, se):
    k = np.full(M.size, 3)
    return Curve(4096.0, M, centre, np.full(M.size, se), np.full(M.size, 30.0), k, k,
                 np.full(M.size, se * np.sqrt(3)))  # fmt: skip


def test_check_passes_the_true_form_and_fails_a_wrong_one():
    rng = np.random.default_rng(5)
    y = 0.7 + 0.2 * sim.hill(M, 20.0, 3.0)
    c = _curve(y + 3e-4 * rng.standard_normal(M.size), 3e-4)
    knee = laws.check(laws.FORMS["knee"], c, 1e-3, 30.0, 200, rng)
    power = laws.check(laws.FORMS["power"], c, 1e-3, 30.0, 200, rng)
    assert knee.passed and not power.passed and "lack of fit" in power.why
    lo, hi = knee.ci(0.05)
    truth = sim.true_m_sat(lambda m: 0.7 + 0.2 * sim.hill(m, 20.0, 3.0), 1e-3)
    assert lo <= truth <= hi and hi / lo < 1.5


def test_the_lack_of_fit_test_is_an_f_test():
    from scipy import stats

    assert laws.lack_of_fit_p(12.0, 6, 30.0) == pytest.approx(stats.f.sf(2.0, 6, 30.0))
    assert laws.lack_of_fit_p(12.0, 6, np.inf) == pytest.approx(stats.chi2.sf(12.0, 6))


class Logistic(laws.Form):
    """A toy form defined in a test: adding a form is one class and one decorator."""

    name = "toy-logistic"
    formula = "E − A·(1 − tanh(m/s))"
    params: ClassVar = ("s",)

    def grid(self, m):
        return np.geomspace(m.min() / 10, m.max() * 10, 60)[:, None]

    def grid_steps(self, m):
        return np.array([np.log(100 * m.max() / m.min()) / 59])

    def shape(self, theta, m):
        return 1.0 - np.tanh(np.asarray(m, float) / theta[..., 0:1])


def test_a_form_registered_from_outside_is_checked_by_the_fitter(monkeypatch):
    monkeypatch.setattr(laws, "FORMS", laws.FORMS.copy())
    laws.register(Logistic)
    st = sim.draw("sharp knee", 2)
    rep = fit(st.table, bootstrap=50)
    names = [la["form"] for la in rep.to_dict()["groups"][0]["details"]["laws"]]
    assert names == ["power", "exp", "knee", "toy-logistic"]


def test_a_shape_near_zero_at_every_level_is_dropped_without_a_numpy_warning():
    """β ~ 1e155 for a shape of ~1e-156: its square overflows. The candidate's rss is
    ∞ (never NaN, which argmin would pick), and nothing is printed: a user's fit with
    1000 replicates printed numpy's overflow warning."""
    import warnings

    x = np.array([[1.0, 3.0, 0.0, 2.0]]) * 1e-156
    c = np.array([[0.9, 0.7, 0.95, 0.8]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, _, rss = laws._solve(c, np.ones((1, 4)), np.broadcast_to(x, (1, 1, 4)))
    assert np.isposinf(rss).all()
