"""Known-law recovery: exponents, m_sat and gamma inside their bootstrap CIs,
the model choice picks the generating form, and CIs cover the truth across
repeated draws. Truths come from the generating law's closed forms."""

from __future__ import annotations

import numpy as np
import pytest

from negscale.fit import fit

from . import laws


def _inside(value: float, ci: list[float]) -> bool:
    return ci[0] <= value <= ci[1]


CASES = {
    # name: (law, parameters, tolerance ε, generating form, true m_sat under ε)
    "supervised": (
        laws.supervised(E=0.05, A=0.5, B=5.0),
        {"E": 0.05, "A": 0.5, "B": 5.0},
        1e-3,
        "theory-supervised",
        0.5 * (1 - 2**-1.0) / 1e-3,
    ),
    "self-supervised": (
        laws.self_supervised(E=0.05, A=0.2, B=5.0),
        {"E": 0.05, "A": 0.2, "B": 5.0},
        2e-3,
        "theory-self-supervised",
        (0.2 * (1 - 2**-0.5) / 2e-3) ** 2,
    ),
    "free": (
        laws.free(E=0.05, A=0.3, a=0.4, B=20.0, b=0.7),
        {"E": 0.05, "A": 0.3, "a": 0.4, "B": 20.0, "b": 0.7},
        4e-3,
        "free",
        (0.3 * (1 - 2**-0.4) / 4e-3) ** (1 / 0.4),
    ),
    "exp": (
        laws.exp(E=0.05, A=0.3, s=40.0, B=5.0, b=0.5),
        {"E": 0.05, "A": 0.3, "s": 40.0, "B": 5.0, "b": 0.5},
        2e-3,
        "exp",
        # top-down root of A·u(1 − u) = ε, u = exp(−m/s)
        -40.0 * np.log((1 - np.sqrt(1 - 4 * 2e-3 / 0.3)) / 2),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_known_law_is_recovered_and_chosen(name):
    law, truth, eps, form, m_sat = CASES[name]
    setting = "supervised" if name == "supervised" else "self-supervised"
    df = laws.study(law, sigma=0.02, rng=11, setting=setting)
    r = fit(df, tolerance=eps, bootstrap=200, random_state=1)
    assert r.form == form, r.form_reason
    for k, v in truth.items():
        if k in ("a", "b", "s"):  # exponents (and the exp scale): inside their CIs
            assert _inside(v, r.params_ci[k]), (k, v, r.params_ci[k])
        else:  # floors and amplitudes: inside the CI or within 10%
            close = abs(r.params[k] - v) <= 0.1 * v + 2e-3
            assert close or _inside(v, r.params_ci[k]), (k, v, r.params[k], r.params_ci[k])
    assert _inside(m_sat, r.m_sat_form_ci), (m_sat, r.m_sat_form_ci)
    # every n group, fitted on its own, finds the same (additive law) m_sat
    for g in r.groups:
        assert g.m_sat == pytest.approx(m_sat, rel=0.25)
        assert g.ratio == pytest.approx(g.m_sat / g.n, rel=1e-9)
    assert r.scaling is not None and _inside(0.0, r.scaling["gamma_ci"])
    assert r.scaling["theory"] == (0.5 if setting == "supervised" else 1.0)


@pytest.mark.parametrize("gamma_true,setting", [(0.5, "supervised"), (1.0, "self-supervised")])
def test_gamma_is_recovered_when_m_sat_scales_with_n(gamma_true, setting):
    eps = 5e-4
    ns = (1e4, 4e4, 1.6e5)
    if gamma_true == 1.0:
        # y = E + B/√n + K·√(n/m): per n a power law A(n)·m^(−½), A(n) = K√n,
        # so m_sat(n) = n·[K(1 − 2^(−½))/ε]²
        K = 0.0776 * eps / (1 - 2**-0.5)

        def law(m, n):
            return 0.05 + 5 / np.sqrt(n) + K * np.sqrt(n / m)

        def m_sat(n):
            return n * (K * (1 - 2**-0.5) / eps) ** 2
    else:
        # y = E + B/√n + K·√n/m: A(n) = K√n, a = 1, so m_sat(n) = K√n/(2ε)
        K = 2e-3 * eps / 1e-3

        def law(m, n):
            return 0.05 + 5 / np.sqrt(n) + K * np.sqrt(n) / m

        def m_sat(n):
            return K * np.sqrt(n) / (2 * eps)

    df = laws.study(law, ns=ns, sigma=0.02, rng=4, setting=setting)
    r = fit(df, tolerance=eps, bootstrap=200, random_state=2)
    s = r.scaling
    assert _inside(gamma_true, s["gamma_ci"]), s
    assert s["gamma"] == pytest.approx(gamma_true, abs=0.15)
    assert s["theory"] == gamma_true
    for g in r.groups:
        assert _inside(m_sat(g.n), g.m_sat_ci), (g.n, m_sat(g.n), g.m_sat_ci)
        assert _inside(m_sat(g.n) / g.n, g.ratio_ci)


def test_sharp_knee_is_not_reported_as_a_never_saturating_power_law():
    # error saturates in linear m (a knee); a power law in the error would put
    # m_sat far beyond the data
    law = laws.exp(E=0.1, A=0.4, s=60.0, B=4.0, b=0.5)
    df = laws.study(law, sigma=0.015, rng=8)
    r = fit(df, tolerance=2e-3, bootstrap=100)
    assert r.form == "exp", r.form_reason
    for g in r.groups:
        assert g.form == "exp", g.form_reason
        assert g.beyond_m_max < 0.05
        assert g.m_sat < g.m_max
    power = next(c for c in r.candidates if c["form"] == "free")
    chosen = next(c for c in r.candidates if c["chosen"])
    assert chosen["loo_error"] < power["loo_error"]


def test_bootstrap_intervals_cover_the_truth_across_draws():
    """Coverage with a fixed seed: 95% intervals should cover the truth in the
    large majority of 20 independent studies (binomial: ≥ 15 of 20)."""
    a_true, eps = 0.5, 2e-3
    law = laws.free(E=0.05, A=0.25, a=a_true, B=8.0, b=0.6)
    m_sat = (0.25 * (1 - 2**-a_true) / eps) ** (1 / a_true)
    ms = 2.0 ** np.arange(0, 12, 1.5)  # 8 levels
    hits = {"a": 0, "b": 0, "m_sat": 0}
    draws = 20
    for d in range(draws):
        df = laws.study(law, ms=ms, seeds=3, sigma=0.03, rng=1000 + d)
        r = fit(df, tolerance=eps, bootstrap=120, random_state=d, forms=["free"])
        hits["a"] += _inside(a_true, r.params_ci["a"])
        hits["b"] += _inside(0.6, r.params_ci["b"])
        hits["m_sat"] += _inside(m_sat, r.m_sat_form_ci)
    assert min(hits.values()) >= 15, hits


def test_m_sat_beyond_the_data_is_flagged():
    law = laws.self_supervised(E=0.05, A=0.4, B=5.0)
    df = laws.study(law, ms=2.0 ** np.arange(0, 8), rng=3)
    eps = 1e-3
    r = fit(df, tolerance=eps, bootstrap=100)
    truth = (0.4 * (1 - 2**-0.5) / eps) ** 2  # ≈ 13700, data stop at 128
    assert r.m_sat_form == pytest.approx(truth, rel=0.3)
    assert all(g.beyond_m_max > 0.9 for g in r.groups)
    assert any("beyond the largest m tested" in w for w in r.warnings)
