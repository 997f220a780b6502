"""Each simulated family, a few draws: the headline interval holds the truth.

The full measurement (40 draws a family, per-family coverage, widths) is
benchmarks/bench_fit_coverage.py; these draws keep every family honest in CI.
"""

from __future__ import annotations

import numpy as np
import pytest

from negscale.fit import fit
from negscale.fit import simulate as sim

DRAWS = 4


def _score(st, rep):
    out = []
    for g in rep.groups:
        truth = st.truth(g.n, rep.tolerance)
        lo, hi = g.answer.ci
        lo_v, hi_v = lo or 0.0, np.inf if hi is None else hi
        if lo_v <= truth <= hi_v:
            out.append(0.0)
        else:
            out.append(np.log2(lo_v / truth) if truth < lo_v else np.log2(truth / hi_v))
    return out


@pytest.mark.parametrize("family", list(sim.FAMILIES))
def test_headline_intervals_hold_the_truth(family):
    misses, gammas = [], []
    for seed in range(DRAWS):
        st = sim.draw(family, seed)
        rep = fit(st.table, metric=st.metric, bootstrap=120, random_state=seed, **st.fit_kwargs)
        misses += _score(st, rep)
        if st.gamma is not None:
            lo, hi = rep.scaling.ci
            gammas.append((lo is None or lo <= st.gamma) and (hi is None or st.gamma <= hi))
    misses = np.array(misses)
    assert np.mean(misses == 0) >= 0.75, misses
    assert (misses <= 1.0).all(), misses  # never off by more than a doubling
    assert all(gammas)
