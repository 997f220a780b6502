"""The few distribution functions the fit needs, from ``scipy.special`` directly.

``scipy.stats`` computes each of these with the same ``scipy.special``
function (chi2.sf is ``chdtrc``, t.ppf ``stdtrit``, ...), but importing it
costs some 0.4 s of CPU more than ``scipy.special`` (it builds every
distribution's docstring), paid by every ``negscale fit`` and, during a
``sweep --fit``, on a core the runs are training on. Values equal
``scipy.stats``' (tests/fit/test_quantiles.py).
"""

from __future__ import annotations

import numpy as np
from scipy import special


def chi2_median(dof: np.ndarray | float) -> np.ndarray:
    """Median of χ² with ``dof`` degrees of freedom (``stats.chi2.median``)."""
    return 2.0 * special.gammaincinv(np.asarray(dof, float) / 2.0, 0.5)


def chi2_sf(x: float, dof: float) -> float:
    """P(χ²_dof > x) (``stats.chi2.sf``)."""
    return float(special.chdtrc(dof, x))


def f_sf(x: float, dfn: float, dfd: float) -> float:
    """P(F_{dfn, dfd} > x) (``stats.f.sf``)."""
    return float(special.fdtrc(dfn, dfd, x))


def t_ppf(q: float, dof: float) -> float:
    """Student's t quantile (``stats.t.ppf``)."""
    return float(special.stdtrit(dof, q))


def norm_ppf(q: float) -> float:
    """Standard normal quantile (``stats.norm.ppf``)."""
    return float(special.ndtri(q))


def theil_sen_slope(y: np.ndarray, x: np.ndarray) -> float:
    """Theil–Sen slope: the median slope over pairs of distinct x (``stats.theilslopes``'
    first value; written out because only ``scipy.stats`` has it)."""
    dx = np.asarray(x, float)[:, None] - np.asarray(x, float)
    dy = np.asarray(y, float)[:, None] - np.asarray(y, float)
    return float(np.median(dy[dx > 0] / dx[dx > 0]))
