"""`negscale fit` through the CLI: direction flags, --plot checked first, refused
metrics, rows dropped with a count, failed runs and foreign designs named."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from negscale.cli import app

from . import laws

runner = CliRunner()
LAW = laws.self_supervised(E=0.05, A=0.2, B=5.0)


def _table(tmp_path: Path, **cols) -> Path:
    df = laws.study(LAW, ms=2.0 ** np.arange(0, 8), ns=(1e4,), rng=1)
    df = df.drop(columns="setting").assign(**cols)
    path = tmp_path / "t.csv"
    df.to_csv(path, index=False)
    return path


def _json(args: list[str]) -> dict:
    res = runner.invoke(app, ["fit", *args, "--bootstrap", "0", "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_metric_sets_the_direction_of_a_metric_col(tmp_path):
    df = laws.study(LAW, ms=2.0 ** np.arange(0, 8), ns=(1e4,), rng=1)
    df["value"] = 1.0 - df["auc"]  # a loss-like error column under a neutral name
    df.to_csv(tmp_path / "t.csv", index=False)
    path = str(tmp_path / "t.csv")
    d = _json([path, "--metric", "val_loss", "--metric-col", "value"])
    assert d["higher_is_better"] is False and d["metric"] == "val_loss"
    d = _json([path, "--metric-col", "value", "--lower-is-better"])
    assert d["higher_is_better"] is False
    df["excess_auc"] = df["value"]  # the gap to an oracle: lower is better
    df.to_csv(tmp_path / "t.csv", index=False)
    assert _json([path, "--metric", "excess_auc"])["higher_is_better"] is False


def test_plot_is_checked_before_fitting_and_gets_an_extension(tmp_path):
    path = str(_table(tmp_path))
    res = runner.invoke(
        app, ["fit", path, "--bootstrap", "0", "--plot", str(tmp_path / "no" / "f")]
    )
    assert res.exit_code == 2 and res.stdout == ""
    assert "--plot" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no library warning in the user's output
        res = runner.invoke(app, ["fit", path, "--bootstrap", "0", "--plot", str(tmp_path / "fig")])
    assert res.exit_code == 0, res.output
    real = tmp_path / "fig.png"
    assert real.read_bytes()[:4] == b"\x89PNG" and f"plot: {real}" in res.stderr


def test_train_loss_is_refused_with_the_reason(tmp_path):
    path = str(_table(tmp_path, train_loss=1.0))
    res = runner.invoke(app, ["fit", path, "--metric", "train_loss"])
    assert res.exit_code == 2 and "ln(m+1)" in res.stderr and "val_loss" in res.stderr


def test_non_numeric_m_and_nan_metric_rows_are_counted(tmp_path):
    df = pd.read_csv(_table(tmp_path))
    df["m"] = df["m"].astype(object)
    df.loc[0, "m"] = "lots"
    df.loc[[1, 2], "auc"] = np.nan
    df.to_csv(tmp_path / "t.csv", index=False)
    d = _json([str(tmp_path / "t.csv")])
    text = " ".join(d["warnings"])
    assert "1 run(s) with missing/non-numeric m" in text
    assert "2 run(s) with missing/non-numeric auc" in text


def _runs_dir(root: Path, df: pd.DataFrame) -> Path:
    (root / "runs").mkdir(parents=True)
    for i, rec in enumerate(df.to_dict("records")):
        pd.DataFrame([{"run_id": f"r{i:04d}", **rec}]).to_parquet(
            root / "runs" / f"r{i:04d}.parquet"
        )
    return root


def test_one_design_is_fitted_and_failed_runs_are_named(tmp_path):
    main = laws.study(LAW, ms=2.0 ** np.arange(0, 8), ns=(1e4,), rng=1).assign(
        design="d-main", status="ok"
    )
    other = main.groupby("m").head(1).assign(design="d-lr")  # another learning rate
    main.loc[main.index[:2], "status"] = "collapsed"
    d = _runs_dir(tmp_path / "study", pd.concat([main, other], ignore_index=True))
    rep = _json([str(d)])
    text = " ".join(rep["warnings"])
    assert "fitted design d-main" in text and "d-lr (8 run(s))" in text
    assert "2 run(s) with status=collapsed" in text and "r0000, r0001" in text
    assert rep["runs"] == len(main) - 2
    per = _json([str(d), "--group-col", "design"])
    assert [(r["group"]["value"], r["runs"]) for r in per] == [("d-lr", 8), ("d-main", 22)]
