"""γ and predictions from the per-n intervals, against a brute-force search."""

from __future__ import annotations

import numpy as np
import pytest

from negscale.fit import scaling


def _brute(ns, boxes, objective, grid=200001):
    """Extent of objective·(c, γ) over the lines through every box: γ on a fine
    grid, and for each γ the exact range of c that passes through every box."""
    x = np.log(ns)
    gs = np.linspace(-4, 4, grid)
    c_lo = np.full(grid, -np.inf)
    c_hi = np.full(grid, np.inf)
    for xi, (lo, hi) in zip(x, boxes, strict=True):
        if lo is not None:
            c_lo = np.maximum(c_lo, np.log(lo) - gs * xi)
        if hi is not None:
            c_hi = np.minimum(c_hi, np.log(hi) - gs * xi)
    ok = c_lo <= c_hi
    ends = np.concatenate([objective[0] * c_lo[ok] + objective[1] * gs[ok],
                           objective[0] * c_hi[ok] + objective[1] * gs[ok]])  # fmt: skip
    return ends.min(), ends.max()


def test_gamma_interval_is_the_extent_of_lines_through_every_interval():
    ns = [1e3, 1e4, 1e5]
    boxes = [(8.0, 16.0), (20.0, 60.0), (50.0, 200.0)]
    s = scaling.gamma(ns, boxes, [11.0, 35.0, 100.0], "self-supervised")
    lo, hi = _brute(ns, boxes, np.array([0.0, 1.0]))
    assert s.ci[0] == pytest.approx(lo, abs=1e-3) and s.ci[1] == pytest.approx(hi, abs=1e-3)
    assert s.ci[0] <= s.gamma <= s.ci[1]
    assert s.gamma == pytest.approx(np.polyfit(np.log(ns), np.log([11, 35, 100]), 1)[0])
    assert s.theory == 1.0 and s.basis == "per-n answers" and s.widened == 1.0


def test_a_not_reached_n_is_a_lower_bound_on_gamma():
    ns = [1e3, 1e4]
    s = scaling.gamma(ns, [(8.0, 16.0), (100.0, None)], [11.0, None], "supervised")
    assert s.ci[1] is None and s.ci[0] == pytest.approx(np.log(100 / 16) / np.log(10))
    assert s.gamma is None and s.basis == "per-n bounds"


def test_prediction_is_the_extent_at_the_new_n():
    ns = [1e3, 1e4, 1e5]
    boxes = [(8.0, 16.0), (20.0, 60.0), (50.0, 200.0)]
    p = scaling.predict(ns, boxes, [11.0, 35.0, 100.0], 1e6)
    lo, hi = _brute(ns, boxes, np.array([1.0, np.log(1e6)]))
    assert np.log(p["ci"][0]) == pytest.approx(lo, abs=1e-3)
    assert np.log(p["ci"][1]) == pytest.approx(hi, abs=1e-3)
    assert p["decades_extrapolated"] == pytest.approx(1.0)
    assert p["ci"][0] <= p["m_sat"] <= p["ci"][1]


def test_intervals_no_line_passes_through_are_widened_and_said_so():
    ns = [1e3, 1e4, 1e5]
    boxes = [(10.0, 12.0), (1000.0, 1200.0), (10.0, 12.0)]  # up, then down
    s = scaling.gamma(ns, boxes, [11.0, 1100.0, 11.0], "none")
    assert s.widened > 1.0 and s.ci[0] is not None
    wider = [(lo / s.widened, hi * s.widened) for lo, hi in boxes]
    assert scaling.extent(np.log(ns), wider, np.array([0.0, 1.0]), 1.0001) is not None


def test_one_n_has_no_scaling():
    s = scaling.gamma([1e3], [(8.0, 16.0)], [11.0], "supervised")
    assert s.gamma is None and s.ci == (None, None) and "one value" in s.basis
