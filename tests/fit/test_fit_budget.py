"""The budget-optimal split of S = m·n: constrained (m ≥ 1, n ≥ 1, m ≤ n under a
shared pool), checked against a brute-force grid; extrapolated rows flagged."""

from __future__ import annotations

from importlib import resources

import numpy as np
import pytest

from negscale.fit import fit, load_sources, render_text
from negscale.fit.forms import budget_optimum, make_form
from negscale.fit.scaling import budget_optima, default_budgets

from . import laws

M_REF, N_REF = 30.0, 4e4  # non-trivial internal scaling


def _scaled(form_id: str, p: dict) -> np.ndarray:
    """Parameters given in the user's units → the fitter's scaled units (by hand)."""
    form = make_form(form_id, True)
    q = {"E": 0.05, **p}
    if form_id == "exp":
        q["s"] = p["s"] / M_REF
    else:
        q["A"] = p["A"] * M_REF ** (-p.get("a", form.a))
    q["B"] = p["B"] * N_REF ** (-p.get("b", form.b))
    return np.array([[q[k] for k in form.names]])


def _law(form_id: str, p: dict):
    """The m- and n-dependent error in the user's units, written out directly."""
    form = make_form(form_id, True)
    a, b = p.get("a", form.a), p.get("b", form.b)
    if form_id == "exp":
        return lambda m, n: p["A"] * np.exp(-m / p["s"]) + p["B"] * n ** (-b)
    return lambda m, n: p["A"] * m ** (-a) + p["B"] * n ** (-b)


def _brute(f, S: float, max_ratio: float | None) -> tuple[float, float]:
    """(m, y) minimising f on m·n = S over a dense log grid of the allowed m."""
    hi = S if max_ratio is None else min(S, np.sqrt(max_ratio * S))
    grid = np.geomspace(1.0, hi, 400_001)
    y = f(grid, S / grid)
    i = int(np.argmin(y))
    return float(grid[i]), float(y[i])


CASES = [
    # (form, user-unit parameters, budgets, max_ratio, where the optimum lies)
    ("free", {"A": 0.3, "a": 0.7, "B": 4.0, "b": 0.45}, (1e6, 1e10), None, "interior"),
    ("free", {"A": 1e-6, "a": 0.7, "B": 40.0, "b": 0.45}, (1e4, 1e8), None, "m >= 1"),
    ("theory-self-supervised", {"A": 40.0, "B": 0.3}, (1e4, 1e8), 1.0, "m <= n"),
    ("theory-supervised", {"A": 2.0, "B": 1.0}, (1e6, 1e9), 1.0, "interior"),
    ("exp", {"A": 0.3, "s": 50.0, "B": 4.0, "b": 0.45}, (1e6, 1e8, 1e10), None, "interior"),
    # the paper_clip imagenet shape: a huge n term makes m = 1 beat the knee at small S
    ("exp", {"A": 47.2, "s": 5.81e5, "B": 1.95e4, "b": 0.415}, (3.6e11, 2.9e12), 1.0, "m >= 1"),
    ("exp", {"A": 47.2, "s": 5.81e5, "B": 1.95e4, "b": 0.415}, (2.4e13, 1.9e14), 1.0, "interior"),
    # an exp term that never matters inside the pool cap: m = n
    ("exp", {"A": 5.0, "s": 1e6, "B": 1e-3, "b": 0.5}, (1e6, 1e8), 1.0, "m <= n"),
]


@pytest.mark.parametrize(("form_id", "p", "budgets", "max_ratio", "where"), CASES)
def test_constrained_optimum_matches_brute_force_grid(form_id, p, budgets, max_ratio, where):
    form = make_form(form_id, True)
    f = _law(form_id, p)
    P = _scaled(form_id, p)
    for S in budgets:
        m, n = budget_optimum(form, P, S, M_REF, N_REF, max_ratio=max_ratio)
        m, n = float(m[0]), float(n[0])
        m_ref, y_ref = _brute(f, S, max_ratio)
        assert m >= 1.0 and n >= 1.0 and m * n == pytest.approx(S, rel=1e-9)
        if max_ratio is not None:
            assert m <= n * max_ratio * (1 + 1e-9)
        # no worse than the best grid point, and at the same place
        assert f(m, n) <= y_ref + 1e-12 * abs(y_ref)
        assert m == pytest.approx(m_ref, rel=2e-4)
        if where == "m >= 1":
            assert m == 1.0
        elif where == "m <= n":
            assert m == pytest.approx(np.sqrt(S * max_ratio), rel=1e-9)
        else:
            assert 1.0 < m < np.sqrt(S * (max_ratio or S))


def test_replicates_go_through_the_same_constrained_solver():
    form = make_form("exp", True)
    rows = [
        {"A": 47.2, "s": 5.81e5, "B": 1.95e4, "b": 0.415},  # m = 1 at small S
        {"A": 0.3, "s": 50.0, "B": 4.0, "b": 0.45},
    ]
    P = np.vstack([_scaled("exp", p) for p in rows] + [np.full((1, form.k), np.nan)])
    budgets = [3.6e11, 1e13]
    ms, ns = budget_optima(form, P, budgets, M_REF, N_REF, max_ratio=1.0)
    for i in range(2):
        for j, S in enumerate(budgets):
            m1, n1 = budget_optimum(form, P[i : i + 1], S, M_REF, N_REF, max_ratio=1.0)
            assert ms[i, j] == m1[0] and ns[i, j] == n1[0]
    assert ms[0, 0] == 1.0  # the constraint holds per replicate, not just for the point
    assert np.isnan(ms[2]).all() and np.isnan(ns[2]).all()  # a failed replicate stays NaN


def test_default_budgets_stay_inside_the_tested_products():
    m = np.array([60e3, 6e6, 140e3, 14e6])
    n = np.array([6e6, 6e6, 14e6, 14e6])
    b = default_budgets(m, n)
    prod = m * n
    assert len(b) == 4 and b == sorted(b)
    assert prod.min() <= b[0] and b[-1] <= prod.max()


def _paper_imagenet():
    path = resources.files("negscale") / "examples" / "paper_clip.csv"
    src = load_sources([str(path)], metric_col="value", group_col="metric")
    return src[src["metric"] == "imagenet_zeroshot_top1"]


def test_paper_clip_budget_has_no_m_below_one_and_flags_the_extrapolation():
    r = fit(_paper_imagenet(), metric="value", forms=["exp"], bootstrap=40)
    assert r.form == "exp" and r.budget
    for row in r.budget:
        assert row["m"] >= 1.0 and row["n"] >= 1.0
        assert row["m"] <= row["n"] * (1 + 1e-9)  # shared pool (self-supervised)
        assert row["m_ci"][0] >= 1.0 and row["n_ci"][0] >= 1.0
        assert row["ratio_ci"][0] >= 1.0 / row["S"] * (1 - 1e-9)
        assert row["ratio_ci"][1] <= 1.0 + 1e-9
    # the budgets span the tested m·n, and every row says whether it extrapolates
    prod = r.plot_data.prep.m * r.plot_data.prep.n
    assert prod.min() <= r.budget[0]["S"] and r.budget[-1]["S"] <= prod.max()
    assert all(isinstance(row["extrapolated"], bool) for row in r.to_dict()["budget"])
    assert any(row["extrapolated"] for row in r.budget)
    assert sum("budget table" in w for w in r.warnings) == 1


def test_a_budget_far_outside_the_data_is_flagged():
    df = laws.study(laws.self_supervised(E=0.05, A=0.2, B=5.0), ns=(1e4, 4e4, 1.6e5), rng=3)
    inside = float(np.sqrt(2.0**5 * 4e4 * 2.0**6 * 4e4))  # near the middle of the data
    r = fit(df, forms=["theory-self-supervised"], budgets=[inside, 1e20], bootstrap=0)
    near, far = r.budget
    # m*/n* = (A/B)² = 1.6e-3 at every budget: inside the tested grid at the first
    assert near["ratio"] == pytest.approx((0.2 / 5.0) ** 2, rel=0.3)
    assert near["extrapolated"] is False and near["constraint"] is None
    assert far["extrapolated"] is True and far["m"] >= 1.0
    warn = [w for w in r.warnings if "budget table" in w]
    assert len(warn) == 1 and "1.00e+20" in warn[0]
    d = r.to_dict()
    assert [b["extrapolated"] for b in d["budget"]] == [False, True]
    text = render_text(r, width=80)
    assert "extrapolated" in text and "m ≥ 1" in text
