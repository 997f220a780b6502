"""The yardstick: simulated studies and their true m_sat, checked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from negscale.fit import simulate as sim


@pytest.mark.parametrize("a", [0.3, 0.5, 1.0, 2.0])
def test_truth_of_a_power_law_is_its_closed_form(a):
    # f = E − A·m^(−a): the gain per doubling A(1 − 2^(−a))m^(−a) falls past ε at
    # m* = (A(1 − 2^(−a))/ε)^(1/a)
    A, eps = 0.3, 1e-3
    truth = sim.true_m_sat(lambda m: 0.9 - A * m**-a, eps)
    assert truth == pytest.approx((A * (1 - 2**-a) / eps) ** (1 / a), rel=1e-9)


def test_truth_of_an_exponential_is_the_larger_root():
    # gain A(u − u²), u = exp(−m/s): the top-down crossing is the smaller root in u
    A, s, eps = 0.2, 30.0, 1e-3
    u = (1 - np.sqrt(1 - 4 * eps / A)) / 2
    assert sim.true_m_sat(lambda m: 0.9 - A * np.exp(-m / s), eps) == pytest.approx(
        -s * np.log(u), rel=1e-9
    )


def test_truth_of_a_flat_curve_is_zero_and_of_a_log_line_is_infinite():
    assert sim.true_m_sat(lambda m: 0.0 * m + 0.7, 1e-3) == 0.0
    assert sim.true_m_sat(lambda m: 0.01 * np.log2(m), 1e-3) == np.inf


def test_truth_is_the_definition_on_a_brute_force_grid():
    """Two knees: the definition, checked point by point on a fine grid."""
    st = sim.draw("two knees", 3)
    eps = 2e-3
    truth = st.truth(4096.0, eps)
    grid = np.geomspace(truth / 8, truth * 8, 20001)
    gain = st.curve(2 * grid, 4096.0) - st.curve(grid, 4096.0)
    after = grid >= truth * (1 + 1e-6)
    assert (gain[after] <= eps + 1e-12).all()
    assert gain[(grid < truth) & (grid > truth * 0.999)].max() > eps


def test_draws_are_reproducible_and_families_differ():
    a, b = sim.draw("sharp knee", 7), sim.draw("sharp knee", 7)
    assert a.table.equals(b.table)
    assert not sim.draw("sharp knee", 8).table.equals(a.table)
    assert not sim.draw("soft knee", 7).table.equals(a.table)


def test_every_family_draws_a_fittable_table():
    for name in sim.FAMILIES:
        st = sim.draw(name, 0)
        t = st.table
        assert {"m", "n", "seed", st.metric, "run_id"} <= set(t.columns), name
        assert t.groupby("n")["m"].nunique().min() >= 5, name
        assert np.isfinite(t[st.metric]).all(), name


def test_truth_at_a_tested_level_puts_it_on_the_level():
    for seed in range(5):
        st = sim.draw("truth at a tested level", seed)
        truth = st.truth(4096.0, st.fit_kwargs["tolerance"])
        assert np.isclose(np.log2(truth), np.round(np.log2(truth)), atol=1e-6)


def test_scaling_families_have_the_stated_exponent():
    for family, gamma in (("several n, γ = 0.5", 0.5), ("several n, γ = 1", 1.0)):
        st = sim.draw(family, 1)
        ns = sorted(st.table["n"].unique())
        eps = st.fit_kwargs["tolerance"]
        truths = [st.truth(n, eps) for n in ns]
        slope = np.polyfit(np.log(ns), np.log(truths), 1)[0]
        assert slope == pytest.approx(gamma, abs=1e-6)
