"""The report: JSON contract, rendering, plots, the bundled examples."""

from __future__ import annotations

import json
from importlib import resources

import numpy as np
import pytest
from rich.console import Console

from negscale.fit import fit, fit_groups, load_sources, plot, render, render_text

from . import laws

CONTRACT = {
    "metric": str,
    "higher_is_better": bool,
    "setting": str,
    "tolerance": float,
    "form": str,
    "params": dict,
    "params_ci": dict,
    "groups": list,
    "scaling": (dict, type(None)),
    "candidates": list,
    "warnings": list,
}
GROUP = {
    "n": int,
    "points": int,
    "m_sat": float,
    "m_sat_ci": list,
    "ratio": float,
    "ratio_ci": list,
}


@pytest.fixture(scope="module")
def report():
    df = laws.study(laws.self_supervised(E=0.05, A=0.2, B=5.0), ns=(1e4, 4e4, 1.6e5), rng=9)
    return fit(df, tolerance=2e-3, bootstrap=60)


def test_json_round_trip_has_every_contract_key(report):
    text = json.dumps(report.to_dict(), allow_nan=False)
    d = json.loads(text)
    for k, t in CONTRACT.items():
        assert isinstance(d[k], t), k
    assert set(d["params"]) == set(d["params_ci"])
    for v in d["params_ci"].values():
        assert len(v) == 2 and v[0] <= v[1]
    assert len(d["groups"]) == 3
    for g in d["groups"]:
        for k, t in GROUP.items():
            assert isinstance(g[k], t), k
        assert g["m_sat_ci"][0] <= g["m_sat"] <= g["m_sat_ci"][1]
        assert g["ratio"] == pytest.approx(g["m_sat"] / g["n"])
    s = d["scaling"]
    assert set(s) >= {"gamma", "gamma_ci", "theory"} and s["theory"] == 1.0
    assert {c["form"] for c in d["candidates"]} == {
        "free",
        "theory-supervised",
        "theory-self-supervised",
        "exp",
        "hill",
    }
    for c in d["candidates"]:
        assert {"form", "aic", "loo_error"} <= set(c)
    assert d["form"] in {c["form"] for c in d["candidates"] if c["chosen"]}
    assert "smallest m" in d["m_sat_definition"]


def test_single_n_has_no_scaling_and_no_budget():
    df = laws.study(laws.self_supervised(), ns=(1e4,), rng=3)
    r = fit(df, tolerance=4e-3, bootstrap=30)
    d = json.loads(json.dumps(r.to_dict(), allow_nan=False))
    assert d["scaling"] is None and d["budget"] == []
    assert "B" not in d["params"]  # the n term is dropped with one n
    assert len(d["groups"]) == 1


def test_bootstrap_off_gives_null_intervals():
    df = laws.study(laws.self_supervised(), ns=(1e4, 4e4), rng=3)
    d = json.loads(json.dumps(fit(df, tolerance=4e-3, bootstrap=0).to_dict(), allow_nan=False))
    assert d["groups"][0]["m_sat_ci"] == [None, None]
    assert any("bootstrap off" in w for w in d["warnings"])


def test_render_states_the_answer_and_its_units(report):
    text = render_text(report)
    assert "m_sat" in text and "tolerance ε = 0.002" in text and "auc units" in text
    assert "γ =" in text and "theory" in text
    assert "model choice" in text
    con = Console(record=True, width=100)
    render(report, con)
    assert "saturation point per n" in con.export_text()


def test_plot_is_written(tmp_path, report):
    out = plot(report, tmp_path / "fit.png")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


def test_bundled_paper_shaped_example_fits_per_metric(tmp_path):
    path = resources.files("negscale") / "examples" / "paper_clip.csv"
    src = load_sources([str(path)], metric_col="value", group_col="metric")
    reports = fit_groups(src, "metric", metric="value", bootstrap=40)
    assert [v for v, _ in reports] == ["coco_r1", "flickr_r1", "imagenet_zeroshot_top1"]
    for _, r in reports:
        assert r.scale == "percent" and r.setting == "self-supervised"
        assert any("no seeds" in w for w in r.warnings)  # the table has none
        assert [g.n for g in r.groups] == [6e6, 10e6, 14e6]
        assert all(np.isfinite(g.m_sat) for g in r.groups)
    plot(reports[-1][1], tmp_path / "paper.png")
    assert (tmp_path / "paper.png").stat().st_size > 20_000


def test_bundled_synthetic_example_recovers_its_documented_law():
    path = resources.files("negscale") / "examples" / "synthetic_sweep.csv"
    src = load_sources([str(path)], metric_col="auc")
    r = fit(src, tolerance=1e-3, bootstrap=100)
    # its header: m_sat = n/8 under ε = 0.001, gamma = 1 (one draw: close, not
    # necessarily inside a 95% interval)
    assert r.scaling["gamma"] == pytest.approx(1.0, abs=0.1)
    for g in r.groups:
        assert g.m_sat == pytest.approx(g.n / 8, rel=0.15)


def test_panel_two_counts_the_points_at_or_below_the_floor(tmp_path):
    from negscale.fit.plots import at_or_below_floor

    # a flat tail with noise: some cell means fall below the fitted floor E
    df = laws.study(
        lambda m, n: 0.1 + 0.3 * np.exp(-m / 4.0),
        ms=2.0 ** np.arange(0, 10),
        ns=(1e4,),
        seeds=2,
        sigma=0.05,
        rng=1,
    )
    r = fit(df, tolerance=2e-3, bootstrap=0)
    g = r.plot_data.groups[0]
    p = r.plot_data.prep
    by_hand = sum(
        p.y[p.m == m].mean() - g.chosen.fit.params[0] <= 0 for m in np.unique(p.m)
    )  # the definition, cell by cell
    assert at_or_below_floor(r) == by_hand and by_hand > 0
    plot(r, tmp_path / "f.png")


def test_header_reason_agrees_with_the_model_table():
    """A lower held-out error on a form that is not eligible is named, never hidden
    behind "lowest held-out error"."""
    from negscale.fit.forms import make_form
    from negscale.fit.optimize import FitResult
    from negscale.fit.select import Candidate, choose

    def cand(fid, res, aicc, loo):
        form = make_form(fid, False)
        fr = FitResult(form, np.ones(form.k), 0.0, np.full(20, res), True)
        return Candidate(form, fr, aicc=aicc, bic=aicc, loo_error=loo, runs_p=0.5)

    good = cand("free", 0.01, 0.0, 0.10)
    far = cand("theory-supervised", 0.05, 50.0, 0.05)  # 50 AICc behind, 5x the RMS
    pick, why = choose([good, far], "supervised", 0.01, 3.0)
    assert pick is good
    assert "among the eligible forms (10.0%)" in why and "theory-supervised 5.0%" in why
    pick, why = choose([good], "supervised", 0.01, 3.0)
    assert why.startswith("lowest held-out error (10.0%)")
