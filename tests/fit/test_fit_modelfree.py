"""The model-free m_sat against hand values and a peer library (sklearn's isotonic fit)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.isotonic import IsotonicRegression

from negscale.fit.modelfree import bracket, crossing, monotone


def test_crossing_matches_a_hand_computation():
    # error means at 1, 2, 4, 8, 16: gains per doubling 0.3, 0.1, 0.02, 0.01
    levels = np.array([1.0, 2.0, 4.0, 8.0, 16.0])
    y = np.array([1.0, 0.7, 0.6, 0.58, 0.57])
    # ε = 0.2: g falls linearly in log2 m from 0.3 at m = 1 to 0.1 at m = 2,
    # so it crosses 0.2 half way: m = 2^0.5
    assert crossing(levels, y, 0.2) == pytest.approx(2**0.5, rel=1e-12)
    assert crossing(levels, y, 0.5) == 1.0  # flat from the smallest level
    assert crossing(levels, y, 0.005) == float("inf")  # last doubling gains 0.01 > ε
    assert np.isnan(crossing(np.array([1.0, 1.5]), np.array([1.0, 0.9]), 0.1))


def test_crossing_uses_the_log_interpolated_curve_between_levels():
    # paper-like levels (1, 10, 40, 70, 100): the doubling 35 → 70 starts between levels
    levels = np.array([1.0, 10.0, 40.0, 70.0, 100.0])
    metric = np.array([1.2, 28.4, 35.0, 35.6, 35.8])
    y = 100 - metric

    def interp(m):
        return np.interp(np.log(m), np.log(levels), y)

    grid = np.geomspace(1.0, 50.0, 200_001)
    gain = interp(grid) - interp(2 * grid)
    ok = np.flip(np.logical_and.accumulate(np.flip(gain <= 1.0)))
    brute = grid[np.nonzero(ok)[0][0]]  # the definition on a fine grid
    assert crossing(levels, y, 1.0) == pytest.approx(brute, rel=1e-4)
    assert bracket(levels, crossing(levels, y, 1.0)) == [10.0, 40.0]


def test_monotone_matches_sklearn_isotonic():
    rng = np.random.default_rng(0)
    for _ in range(20):
        y = np.sort(rng.random(9))[::-1] + 0.1 * rng.standard_normal(9)
        w = rng.integers(1, 4, 9).astype(float)
        ref = IsotonicRegression(increasing=False).fit_transform(np.arange(9), y, sample_weight=w)
        np.testing.assert_allclose(monotone(y, w), ref, rtol=1e-12, atol=1e-12)


def test_bracket_ends():
    lv = np.array([1.0, 4.0, 16.0])
    assert bracket(lv, 5.0) == [4.0, 16.0]
    assert bracket(lv, 0.5) == [None, 1.0]
    assert bracket(lv, float("inf")) == [16.0, None]
    assert bracket(lv, float("nan")) == [None, None]
