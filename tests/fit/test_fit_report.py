"""The report: the JSON contract, the answer first, nothing cut at 80 columns, plots."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import resources

import numpy as np
import pytest
from rich.console import Console

from negscale.fit import fit, fit_groups, load_sources, plot, render, render_text
from negscale.fit import simulate as sim

EXAMPLES = resources.files("negscale") / "examples"
TOP = {"metric", "higher_is_better", "scale", "setting", "tolerance", "tolerance_source",
       "groups", "scaling", "predictions", "warnings", "balance", "budget", "outliers"}  # fmt: skip
GROUP = {"n", "points", "levels", "answer", "decline", "ratio", "ratio_ci", "bracket", "details"}
ANSWER = {"m_sat", "ci", "status", "basis"}
STATUSES = {"reached", "not reached", "saturated at the smallest m"}
BASES = {"tested levels", "law checked on dense levels", "extrapolated"}


@pytest.fixture(scope="module")
def report():
    return fit(sim.draw("several n, γ = 1", 0).table, bootstrap=100)


def test_json_follows_the_fit_contract(report):
    d = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert set(d) >= TOP
    for g in d["groups"]:
        assert set(g) >= GROUP and set(g["answer"]) == ANSWER
        a = g["answer"]
        assert a["status"] in STATUSES and a["basis"] in BASES
        lo, hi = a["ci"]
        if a["m_sat"] is not None:
            assert (lo or 0) <= a["m_sat"] <= (hi if hi is not None else np.inf)
            assert g["ratio"] == pytest.approx(a["m_sat"] / g["n"])
        assert {"levels", "laws", "tested_levels"} <= set(g["details"])
    s = d["scaling"]
    assert set(s) >= {"gamma", "gamma_ci", "basis", "theory"} and s["theory"] == 1.0
    (p,) = d["predictions"]
    assert set(p) == {"n", "m_sat", "ci", "decades_extrapolated"}
    assert p["n"] == 10 * max(g["n"] for g in d["groups"])
    assert p["decades_extrapolated"] == pytest.approx(1.0)


def test_one_n_has_no_scaling_and_no_prediction():
    r = fit(sim.draw("sharp knee", 1).table, bootstrap=30)
    d = r.to_dict()
    assert d["scaling"] is None and d["predictions"] == [] and d["budget"] == []
    assert len(d["groups"]) == 1


def test_the_answer_leads_the_text(report):
    lines = render_text(report).splitlines()
    assert lines[0].startswith("negscale fit · auc (higher is better, fraction)")
    k = len(report.groups)
    assert all(line.startswith("n = ") for line in lines[1 : 1 + k])
    assert lines[1 + k].startswith("n scaling:") and "theory 1" in lines[1 + k]
    assert lines[2 + k].startswith("at n = ") and "extrapolated 1.0 decades" in lines[2 + k]
    assert "warnings" not in "\n".join(lines[: 3 + k])


def test_verbose_adds_the_detail(report):
    text = render_text(report, verbose=True)
    assert "tested levels say" in text and "gain/doubling" in text and "knee" in text
    assert "balance point" in text
    con = Console(record=True, width=80)
    render(report, con, verbose=True)
    assert con.export_text().strip() == render_text(report, 80, verbose=True).strip()


@pytest.mark.parametrize(
    "args",
    [
        ["negscale/examples/paper_clip.csv", "--metric-col", "value", "--group-col", "metric"],
        ["negscale/examples/synthetic_sweep.csv", "--tolerance", "0.001", "-v"],
    ],
)
def test_piped_at_80_columns_nothing_is_cut(args):
    env = dict(os.environ, COLUMNS="80")
    root = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
    res = subprocess.run(
        [sys.executable, "-m", "negscale", "fit", *args, "--bootstrap", "40"],
        capture_output=True, text=True, env=env, cwd=root, check=True,
    )  # fmt: skip
    lines = res.stdout.splitlines()
    assert lines and max(len(line) for line in lines) <= 80
    assert "…" not in res.stdout
    # the answer within the first 6 lines of each report
    heads = [i for i, line in enumerate(lines) if line.startswith("negscale fit")]
    for i in heads:
        assert sum(line.startswith("n = ") for line in lines[i : i + 6]) == 3


def test_bundled_paper_shaped_example_fits_per_metric(tmp_path):
    src = load_sources([str(EXAMPLES / "paper_clip.csv")], metric_col="value", group_col="metric")
    reports = fit_groups(src, "metric", metric="value", bootstrap=40, tolerance=1.0)
    assert [v for v, _ in reports] == ["coco_r1", "flickr_r1", "imagenet_zeroshot_top1"]
    for _, r in reports:
        assert r.scale == "percent" and r.setting == "self-supervised"
        assert any("no seeds" in w for w in r.warnings)  # the table has none
        assert [g.n for g in r.groups] == [6e6, 10e6, 14e6]
        assert all(g.answer.basis == "tested levels" for g in r.groups)  # no law without seeds
    plot(reports[-1][1], tmp_path / "paper.png")
    assert (tmp_path / "paper.png").stat().st_size > 20_000


def test_bundled_synthetic_example_holds_its_documented_law():
    src = load_sources([str(EXAMPLES / "synthetic_sweep.csv")], metric_col="auc")
    r = fit(src, tolerance=1e-3, bootstrap=200)
    # its header: m_sat = n/8 under ε = 0.001, so γ = 1
    for g in r.groups:
        lo, hi = g.answer.ci
        assert (lo or 0) <= g.n / 8 <= (hi or np.inf)
    lo, hi = r.scaling.ci
    assert lo <= 1.0 <= hi


def test_plot_is_written(tmp_path, report):
    data = plot(report, tmp_path / "fit.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


def test_an_interval_of_m_opens_at_one_negative_not_zero() -> None:
    from negscale.fit.render import span

    assert span(None, 8.0) == "[1, 8]"  # m counts negatives: its floor is 1
    assert span(2.0, None) == "[2, ∞)"
    assert span(4.5, 27.5) == "[4.5, 27.5]"
