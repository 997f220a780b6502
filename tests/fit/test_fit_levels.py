"""The tested levels' reading: point, bracket, bounds, declines, by hand."""

from __future__ import annotations

import numpy as np
import pytest

from negscale.fit import levels
from negscale.fit.cells import Curve


def curve(m, centre, se=1e-6, dof=1e6) -> Curve:
    m, centre = np.asarray(m, float), np.asarray(centre, float)
    k = np.full(m.size, 3)
    return Curve(
        1000.0, m, centre, np.full(m.size, se), np.full(m.size, dof), k, k, np.full(m.size, se)
    )


HAND = curve(2.0 ** np.arange(7), [0.0, 0.4, 0.6, 0.7, 0.72, 0.73, 0.735])


def test_point_is_the_linear_crossing_of_the_gain():
    # gains per doubling at 1, 2, 4, 8, 16, 32: .4 .2 .1 .02 .01 .005; ε = .05 crosses
    # between 4 (.1) and 8 (.02): t = 2 + (.1 − .05)/(.1 − .02) = 2.625
    status, point = levels.crossing(HAND, 0.05)
    assert status == levels.REACHED
    assert point == pytest.approx(2**2.625)


def test_noise_free_bounds_are_the_two_levels_around_the_crossing():
    r = levels.read(HAND, 0.05)
    assert (r.lo, r.hi) == (4.0, 8.0)
    assert r.lo <= r.m_sat <= r.hi


def test_noise_widens_the_bounds_and_keeps_the_truth():
    noisy = curve(HAND.m, HAND.centre, se=0.02, dof=20)
    r = levels.read(noisy, 0.05)
    assert r.lo is None or r.lo < 4.0
    assert r.hi is None or r.hi >= 8.0


def test_statuses_not_reached_and_saturated():
    rising = curve(2.0 ** np.arange(6), 0.1 * np.arange(6))
    r = levels.read(rising, 0.05)
    assert r.status == levels.NOT_REACHED and r.m_sat is None and r.hi is None
    assert r.lo == 16.0  # the last doubling shown to gain more than ε
    flat = curve(2.0 ** np.arange(6), np.full(6, 0.5))
    r = levels.read(flat, 0.05)
    assert r.status == levels.SATURATED and r.lo is None and r.hi == 1.0


def test_an_uneven_gap_is_read_as_wide_as_it_is():
    # 1, 2, 3, 50, 1000: the crossing lies somewhere in the 17x gap 3 .. 50
    c = curve([1, 2, 3, 50, 1000], [0.0, 0.2, 0.3, 0.6, 0.61])
    r = levels.read(c, 0.02)
    assert r.lo == 3.0 and r.hi == 50.0


def test_a_decline_is_found_and_read_on_the_rise():
    m = 2.0 ** np.arange(9)
    c = curve(m, [0.5, 0.7, 0.8, 0.84, 0.85, 0.85, 0.83, 0.80, 0.77], se=0.003, dof=30)
    d = levels.find_decline(c)
    assert d is not None and d.from_m in (16.0, 32.0) and d.to_m == 256.0
    assert d.drop == pytest.approx(c.centre[m == d.from_m][0] - 0.77)
    r = levels.read(c, 0.02)
    assert r.status == levels.REACHED and r.decline == d
    assert r.m_sat < d.from_m
    flat = curve(m, 0.8 + 0.001 * np.sin(np.arange(9)), se=0.003, dof=30)
    assert levels.find_decline(flat) is None


def test_gain_breakpoints_describe_the_interpolated_gain_exactly():
    c = curve([1, 3, 8, 20, 50], [0.1, 0.5, 0.7, 0.75, 0.76])
    knots, g = levels.gains_at_levels(c)
    t = np.linspace(0, np.log2(25), 400)
    direct = np.interp(t + 1, c.t, c.centre) - np.interp(t, c.t, c.centre)
    assert np.allclose(np.interp(t, knots, g), direct)
