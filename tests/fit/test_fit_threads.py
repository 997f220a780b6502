"""The fit's refits on threads: the answers do not depend on how many there are.

Every random number a check uses is drawn before the refits start
(``laws.start_check``), so the report is the same with one thread or many,
and a started check finishes as a whole check does.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from negscale.fit import cells, fit, laws
from negscale.fit import pipeline as pipeline_mod
from negscale.fit import simulate as sim
from negscale.jsonsafe import clean


def _report(st, monkeypatch, cores: int) -> str:
    monkeypatch.setattr(pipeline_mod.os, "cpu_count", lambda: cores)
    rep = fit(st.table, metric=st.metric, bootstrap=150, random_state=3, **st.fit_kwargs)
    return json.dumps(clean(rep.to_dict()), sort_keys=True)


@pytest.mark.parametrize("family", ["several n, γ = 1", "soft knee", "declining top"])
def test_one_thread_or_many_give_the_same_report(family, monkeypatch):
    st = sim.draw(family, 5)
    one = _report(st, monkeypatch, 1)
    assert _report(st, monkeypatch, 6) == one
    assert _report(st, monkeypatch, 2) == one


def test_started_checks_finish_as_a_check_in_turn_does():
    st = sim.draw("sharp knee", 2)
    c = cells.build(
        st.table["m"].to_numpy(float), st.table["n"].to_numpy(float),
        st.table[st.metric].to_numpy(float), None, 1.0,
    )  # fmt: skip
    curve = c.curves[0]
    eps, dof = float(c.sigma), float(np.min(curve.dof))
    form = laws.FORMS["knee"]
    whole = laws.check(form, curve, eps, dof, 200, np.random.default_rng(7))
    rng = np.random.default_rng(7)
    started = laws.start_check(form, curve, eps, dof, 200, rng)
    after = rng.standard_normal()  # the generator has moved past every draw of the check
    finished = laws.finish_check(started)
    assert whole is not None and finished.m_sat == whole.m_sat
    np.testing.assert_array_equal(finished.samples, whole.samples)
    assert (finished.loo_z, finished.check_p) == (whole.loo_z, whole.check_p)
    rng2 = np.random.default_rng(7)
    laws.check(form, curve, eps, dof, 200, rng2)
    assert rng2.standard_normal() == after
