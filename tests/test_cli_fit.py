"""`negscale fit` through the CLI: JSON contract, grouped tables, plots, clean errors."""

from __future__ import annotations

import json
from importlib import resources

import pandas as pd
from typer.testing import CliRunner

from negscale.cli import app

runner = CliRunner()
EXAMPLES = resources.files("negscale") / "examples"
CONTRACT = {
    "metric",
    "higher_is_better",
    "setting",
    "tolerance",
    "groups",
    "scaling",
    "predictions",
    "warnings",
}
GROUP_KEYS = {"n", "points", "answer", "decline", "ratio", "ratio_ci", "bracket", "details"}


def test_fit_json_follows_the_contract_and_writes_the_plot(tmp_path) -> None:
    table = EXAMPLES / "synthetic_sweep.csv"
    plot = tmp_path / "fit.png"
    res = runner.invoke(
        app,
        [
            "fit",
            str(table),
            "--bootstrap",
            "50",
            "--tolerance",
            "0.001",
            "--plot",
            str(plot),
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert set(doc) >= CONTRACT
    assert all(set(g) >= GROUP_KEYS for g in doc["groups"])
    ns = sorted(pd.read_csv(table, comment="#")["n"].unique())
    assert [g["n"] for g in doc["groups"]] == ns
    for g in doc["groups"]:  # ratio is m_sat / n, and each CI brackets its estimate
        a = g["answer"]
        assert abs(g["ratio"] - a["m_sat"] / g["n"]) < 1e-9
        assert a["ci"][0] <= a["m_sat"] <= a["ci"][1]
    assert doc["scaling"]["theory"] == 1.0
    assert plot.is_file() and plot.stat().st_size > 10_000


def test_fit_groups_of_a_published_table(tmp_path) -> None:
    res = runner.invoke(
        app,
        [
            "fit",
            str(EXAMPLES / "paper_clip.csv"),
            "--metric-col",
            "value",
            "--group-col",
            "metric",
            "--bootstrap",
            "30",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    docs = json.loads(res.stdout)
    table = pd.read_csv(EXAMPLES / "paper_clip.csv", comment="#")
    assert sorted(d["group"]["value"] for d in docs) == sorted(table["metric"].unique())
    assert {d["group"]["column"] for d in docs} == {"metric"}


def test_fit_report_is_readable_text() -> None:
    res = runner.invoke(app, ["fit", str(EXAMPLES / "synthetic_sweep.csv"), "--bootstrap", "20"])
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith("negscale fit · auc") and "m_sat ≈" in res.stdout


def test_fit_bad_input_is_one_line_exit_2(tmp_path) -> None:
    bad = tmp_path / "t.csv"
    pd.DataFrame({"m": [1, 2], "value": [0.5, 0.6]}).to_csv(bad, index=False)
    for args in (
        ["fit", str(tmp_path / "missing.csv")],
        ["fit", str(bad), "--metric-col", "nope"],
        ["fit", str(bad), "--metric-col", "value", "--setting", "supervised"],
    ):
        res = runner.invoke(app, args)
        assert res.exit_code == 2, (args, res.output)
        assert res.stderr.startswith("error:") and "Traceback" not in res.output
