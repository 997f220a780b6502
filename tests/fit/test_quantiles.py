"""negscale.fit.quantiles against scipy.stats, the library it stands in for."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from negscale.fit import quantiles as q

DOFS = [0.5, 1.0, 2.0, 3.0, 7.5, 20.0, 199.0, 5e4]


@pytest.mark.parametrize("dof", DOFS)
def test_chi2_and_t_and_f_equal_scipy_stats(dof: float) -> None:
    assert q.chi2_median(dof) == stats.chi2.median(dof)
    for x in (1e-3, 0.4, 1.0, 3.3, 40.0):
        assert q.chi2_sf(x, dof) == stats.chi2.sf(x, dof)
        assert q.f_sf(x, dof, 11.0) == stats.f.sf(x, dof, 11.0)
    for p in (0.5, 0.8, 0.975, 0.99875):
        assert q.t_ppf(p, dof) == stats.t.ppf(p, dof)
    d = np.array([1.0, 2.0, dof])  # the cells' array form
    np.testing.assert_array_equal(q.chi2_median(d), stats.chi2.median(d))


def test_normal_quantile_equals_scipy_stats() -> None:
    for p in (0.5, 0.9, 0.975, 0.999, 1e-6):
        assert q.norm_ppf(p) == stats.norm.ppf(p)


def test_theil_sen_slope_equals_scipy_stats() -> None:
    rng = np.random.default_rng(3)
    for size in (3, 4, 9, 20):
        x = rng.integers(0, 6, size).astype(float)  # ties in x: pairs with dx = 0 left out
        x[:2] = [0.0, 5.0]
        y = 0.3 * x + rng.standard_normal(size)
        assert q.theil_sen_slope(y, x) == stats.theilslopes(y, x)[0]


def test_the_fit_does_not_import_scipy_stats() -> None:
    code = "import sys, negscale.fit.pipeline; print('scipy.stats' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
