"""Issue 8: the answer on curves whose true m_sat(ε) is known by construction —
a Hill (knee) curve, a power law that never saturates in range, the balance
point of a joint law, and the paper-shaped table (steep to 40 %, flat after)."""

from __future__ import annotations

import json
from importlib import resources

import numpy as np
import pytest

from negscale.fit import fit, fit_groups, load_sources, render_text

from . import laws


def hill(E=0.1, A=0.4, m0=64.0, h=3.0) -> laws.Law:
    return lambda m, n: E + A / (1.0 + (m / m0) ** h)


def hill_truth(eps: float, A=0.4, m0=64.0, h=3.0) -> float:
    """m_sat(ε) of the Hill curve by brute force on a fine grid (the definition)."""
    grid = np.geomspace(1e-3, 1e7, 200_001)
    gain = A / (1 + (grid / m0) ** h) - A / (1 + (2 * grid / m0) ** h)
    return laws.brute_force_m_sat(grid, gain, eps)


def trusted_value(g) -> float:
    return g.m_sat if g.trusted == "parametric" else g.m_sat_model_free


def test_hill_curve_with_seeds_is_placed_within_one_level_of_the_truth():
    eps = 5e-3
    truth = hill_truth(eps)  # ≈ 240, inside 1..1024
    df = laws.study(hill(), ms=2.0 ** np.arange(0, 11), ns=(1e4,), seeds=3, sigma=0.01, rng=3)
    r = fit(df, tolerance=eps, bootstrap=100, random_state=0)
    g = r.groups[0]
    for v in (trusted_value(g), g.m_sat_model_free):
        assert abs(np.log2(v / truth)) <= 1.0, (v, truth, g.trusted)
        assert v <= g.m_max
    lo, hi = g.bracket
    assert lo is not None and hi is not None and lo / 2 <= truth <= hi * 2
    assert g.model_free_status == "reached"


def test_hill_curve_at_five_levels_without_seeds_is_a_bracket_inside_the_data():
    eps = 5e-3
    truth = hill_truth(eps)
    ms = [4.0, 16.0, 64.0, 256.0, 1024.0]
    df = laws.study(hill(), ms=ms, ns=(1e4,), seeds=1, sigma=0.003, rng=5)
    r = fit(df, tolerance=eps, bootstrap=100, random_state=0)
    g = r.groups[0]
    assert g.trusted == "model-free"  # 5 levels, no seeds: the data give a bracket
    lo, hi = g.bracket
    assert lo is not None and hi is not None  # inside the tested range
    assert ms.index(hi) - ms.index(lo) == 1  # two neighbouring levels
    assert lo / 4 <= truth <= hi * 4  # within one tested level (×4 here)
    text = render_text(r, width=140)
    assert f"{lo:g}–{hi:g}" in text


def test_a_power_law_that_still_rises_at_the_largest_m_is_not_reached():
    df = laws.study(
        lambda m, n: 0.05 + 0.4 * m**-0.3,
        ms=2.0 ** np.arange(0, 9),
        ns=(1e4,),
        seeds=3,
        sigma=0.01,
        rng=2,
    )
    eps = 2e-3  # the gain of the last doubling is ≈ 0.02: far above ε
    r = fit(df, tolerance=eps, bootstrap=60)
    g = r.groups[0]
    assert np.isinf(g.m_sat_model_free) and g.model_free_status.startswith("not reached")
    assert g.bracket == [g.m_max, None]  # a lower bound, "≥ m_max"
    assert g.m_sat > g.m_max and any("only a lower bound" in w for w in r.warnings)
    text = render_text(r, width=140)
    assert "not reached" in text and f"≥ {g.m_max:g}" in text
    d = json.loads(json.dumps(r.to_dict(), allow_nan=False))["groups"][0]
    assert d["m_sat_model_free"] is None and d["bracket"] == [g.m_max, None]


def test_balance_point_exponent_is_recovered():
    # y = E + A·m^(−a) + B·n^(−b): m term = n term at m_bal = (A·n^b/B)^(1/a), so
    # m_bal ∝ n^(b/a) = n^(0.7/0.4). Three n: a free n exponent needs three values.
    a, b = 0.4, 0.7
    df = laws.study(laws.free(E=0.05, A=0.3, a=a, B=20.0, b=b), sigma=0.02, rng=11)
    r = fit(df, tolerance=4e-3, bootstrap=150, random_state=1)
    bal = r.balance
    assert bal["theory"] == 1.0 and bal["form"] == "free"
    assert bal["exponent_ci"][0] <= b / a <= bal["exponent_ci"][1], bal
    assert bal["exponent"] == pytest.approx(b / a, rel=0.25)
    assert bal["supported"] and not any("misfits" in w for w in r.warnings)
    d = json.loads(json.dumps(r.to_dict(), allow_nan=False))
    assert set(d["balance"]) >= {"exponent", "exponent_ci", "theory", "supported"}
    for g in d["groups"]:
        assert {"m_sat_model_free", "m_sat_model_free_ci", "bracket"} <= set(g)


def test_balance_exponent_is_flagged_when_the_joint_additive_law_misfits():
    # y = 0.02 + 2/√n + K·√(n/m): the m effect grows with n (an interaction), which
    # no additive law E + A·m^-a + B·n^-b can follow; each n alone is a clean curve.
    K = 0.0012
    df = laws.study(
        lambda m, n: 0.02 + 2 / np.sqrt(n) + K * np.sqrt(n / m),
        ms=2.0 ** np.arange(2, 13),
        ns=(4096, 16384, 65536),
        seeds=3,
        sigma=0.02,
        rng=5,
    )
    r = fit(df, tolerance=1e-3, bootstrap=40, random_state=1)
    bal = r.balance
    assert not bal["supported"] and bal["joint_rms"] > 2 * bal["per_n_rms"]
    assert any("joint additive law misfits" in w for w in r.warnings)
    assert "not supported" in render_text(r, width=160)


def test_gamma_under_one_common_form_and_withheld_when_extrapolated():
    law = laws.self_supervised(E=0.05, A=0.4, B=5.0)
    df = laws.study(law, ms=2.0 ** np.arange(0, 8), rng=3)  # m_sat ≈ 13700 ≫ 128
    r = fit(df, tolerance=1e-3, bootstrap=40)
    s = r.scaling
    assert s["form"] is not None and s["withheld"] and "extrapolated" in s["withheld"]
    assert "γ withheld" in render_text(r, width=140)


def _paper(tol: float | None):
    path = resources.files("negscale") / "examples" / "paper_clip.csv"
    src = load_sources([str(path)], metric_col="value", group_col="metric")
    return fit_groups(src, "metric", metric="value", bootstrap=60, tolerance=tol)


def _last_doubling_gain(r, n: float) -> float:
    """metric(m_max) − metric(m_max/2), the latter interpolated in log m by hand."""
    p = r.plot_data.prep
    sel = p.n == n
    m, v = p.m[sel], p.value[sel]
    order = np.argsort(m)
    m, v = m[order], v[order]
    half = m[-1] / 2
    j = np.searchsorted(m, half) - 1
    w = np.log(half / m[j]) / np.log(m[j + 1] / m[j])
    return float(v[-1] - (v[j] + w * (v[j + 1] - v[j])))


@pytest.mark.parametrize("tol", [1.0, None])
def test_paper_shaped_table_never_places_m_sat_past_the_data(tol):
    for _, r in _paper(tol):
        for g in r.groups:
            v = trusted_value(g)
            lo, hi = g.bracket
            if hi is None:  # beyond the data: shown as a lower bound only
                assert lo == g.m_max and (np.isinf(v) or v >= g.m_max)
            else:
                assert hi <= g.m_max and v <= g.m_max
            if tol == 1.0:  # the command: the knee is at 40 % (one level either way)
                if _last_doubling_gain(r, g.n) > tol:  # by hand: the data still rise > ε
                    assert np.isinf(g.m_sat_model_free) and hi is None
                else:
                    assert hi is not None and hi <= 0.7 * g.n * (1 + 1e-9), (g.n, g.bracket)


def test_model_free_gamma_follows_a_knee_that_moves_with_n():
    # Hill curves with m0 = n/160: m_sat(ε) = m0·x*(A, h, ε), so m_sat ∝ n (γ = 1)
    def law(m, n):
        return 0.1 + 0.4 / (1.0 + (m / (n / 160.0)) ** 3.0)

    df = laws.study(law, ms=2.0 ** np.arange(0, 15), seeds=3, sigma=0.01, rng=7)
    eps = 5e-3
    r = fit(df, tolerance=eps, bootstrap=60, random_state=0)
    s = r.scaling
    for g in r.groups:  # each n by brute force: within one tested level
        truth = hill_truth(eps, m0=g.n / 160.0)
        assert abs(np.log2(g.m_sat_model_free / truth)) <= 1.0, (g.n, g.m_sat_model_free, truth)
    assert s["gamma_model_free"] == pytest.approx(1.0, abs=0.2)
    assert s["gamma_model_free_ci"][0] <= 1.0 <= s["gamma_model_free_ci"][1]
    assert s["gamma_ci"][0] <= 1.0 <= s["gamma_ci"][1] and not s["withheld"]
