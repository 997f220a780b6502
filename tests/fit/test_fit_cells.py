"""Cells: robust centres, the pooled noise, outlier seeds named and left out."""

from __future__ import annotations

import numpy as np
import pytest

from negscale.fit import cells


def _table(rng, levels=(1, 2, 4, 8, 16, 32), seeds=3, sd=0.01):
    m = np.repeat(np.array(levels, float), seeds)
    v = 0.9 - 0.2 / m + sd * rng.standard_normal(m.size)
    return m, np.full(m.size, 1000.0), v


def test_centres_and_the_typical_sd_match_numpy():
    rng = np.random.default_rng(0)
    m, n, v = _table(rng)
    c = cells.build(m, n, v)
    curve = c.curves[0]
    for lvl, centre in zip(curve.m, curve.centre, strict=True):
        assert centre == pytest.approx(v[m == lvl].mean())
    from scipy import stats

    var = np.array([v[m == lvl].var(ddof=1) for lvl in np.unique(m)])  # 2 dof each
    assert c.sigma == pytest.approx(np.sqrt(np.median(var) / (stats.chi2.median(2) / 2)))
    assert c.sigma_dof == m.size - np.unique(m).size
    assert c.seeded and not c.outliers


def test_a_diverged_seed_is_named_and_left_out_of_its_cell():
    rng = np.random.default_rng(1)
    m, n, v = _table(rng)
    ids = np.array([f"r{i}" for i in range(m.size)])
    v_bad = v.copy()
    i = int(np.nonzero(m == 8)[0][1])
    v_bad[i] = 0.5  # diverged, recorded ok
    c = cells.build(m, n, v_bad, ids)
    assert [o.run_id for o in c.outliers] == [ids[i]]
    assert c.outliers[0].value == 0.5 and c.outliers[0].z > cells.OUTLIER_Z
    keep = np.arange(m.size) != i
    clean = cells.build(m[keep], n[keep], v[keep])
    assert np.allclose(c.curves[0].centre, clean.curves[0].centre)
    assert c.sigma == pytest.approx(clean.sigma)
    assert c.curves[0].k_all[np.nonzero(c.curves[0].m == 8)[0][0]] == 3


def test_a_noisy_small_m_cell_is_not_an_outlier():
    """Noise that grows at small m (every seed of those cells) is noise, not outliers."""
    rng = np.random.default_rng(2)
    m = np.repeat(2.0 ** np.arange(9), 3)
    sd = 0.002 * (1 + 8 * m**-1.0)
    v = 0.9 - 0.1 / m + sd * rng.standard_normal(m.size)
    c = cells.build(m, np.full(m.size, 1e3), v)
    assert not c.outliers
    se = c.curves[0].se
    assert se[0] > 3 * se[-1]  # the variance trend follows the noise down with m


def test_two_seed_outlier_is_the_one_off_the_neighbours_line():
    m = np.repeat(2.0 ** np.arange(6), 2)
    v = 0.9 - 0.1 / m + np.tile([0.001, -0.001], 6)
    v[7] = 0.3  # m = 8, second seed
    c = cells.build(m, np.full(m.size, 1e3), v, np.arange(m.size).astype(str))
    assert [o.run_id for o in c.outliers] == ["7"]


def test_without_seeds_there_is_no_sigma_until_given():
    m = 2.0 ** np.arange(6)
    c = cells.build(m, np.full(6, 1e3), 0.9 - 0.1 / m)
    assert c.sigma is None and not c.seeded
    given = cells.with_sigma(c, 0.01, 3.0, "assumed")
    assert given.sigma == 0.01 and not given.seeded
    assert np.allclose(given.curves[0].se, 0.01)
