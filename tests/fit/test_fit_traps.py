"""The traps that used to go silently wrong: each is now said, or an error."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from negscale.cli import app
from negscale.errors import NegscaleError
from negscale.fit import fit, load_sources
from negscale.fit import simulate as sim

runner = CliRunner()


def _knee(seed=0):
    return sim.draw("sharp knee", seed)


def test_metric_col_sets_the_direction_from_its_own_name(tmp_path):
    st = sim.draw("lower-is-better loss", 1)
    path = tmp_path / "t.csv"
    st.table.rename(columns={"val_loss": "value"}).assign(val_loss=st.table["val_loss"]).to_csv(
        path, index=False
    )
    res = runner.invoke(
        app, ["fit", str(path), "--metric-col", "val_loss", "--bootstrap", "50", "--json"]
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["higher_is_better"] is False
    # --metric names what an anonymous column holds, and sets the direction
    res = runner.invoke(
        app,
        [
            "fit",
            str(path),
            "--metric-col",
            "value",
            "--metric",
            "val_loss",
            "--bootstrap",
            "50",
            "--json",
        ],
    )
    assert json.loads(res.stdout)["higher_is_better"] is False
    res = runner.invoke(
        app,
        [
            "fit",
            str(path),
            "--metric-col",
            "value",
            "--higher-is-better",
            "--bootstrap",
            "0",
            "--json",
        ],
    )
    assert json.loads(res.stdout)["higher_is_better"] is True


def test_m_below_one_points_to_ratio_col_which_gives_the_same_answer(tmp_path):
    st = _knee()
    t = st.table.assign(ratio=st.table["m"] / 4096.0)
    bad = t.assign(m=t["ratio"])
    with pytest.raises(NegscaleError, match="--ratio-col"):
        fit(bad, bootstrap=0)
    path = tmp_path / "r.csv"
    t.drop(columns="m").to_csv(path, index=False)
    via_ratio = fit(load_sources(path, ratio_col="ratio"), bootstrap=60)
    direct = fit(st.table, bootstrap=60)
    assert via_ratio.groups[0].answer.ci == pytest.approx(direct.groups[0].answer.ci)
    wrong = tmp_path / "wrong.csv"
    t.assign(ratio=t["m"]).to_csv(wrong, index=False)  # counts passed as ratios
    with pytest.raises(NegscaleError, match="must hold m/n"):
        load_sources(wrong, ratio_col="ratio")


def test_an_outlier_seed_is_named_and_does_not_move_the_answer():
    st = _knee(4)
    t = st.table.copy()
    level = np.sort(t["m"].unique())[3]
    i = int(np.nonzero((t["m"] == level).to_numpy())[0][0])
    bad = t.copy()
    bad.loc[i, "auc"] = 0.5  # diverged, recorded ok
    rep = fit(bad, bootstrap=100)
    named = [w for w in rep.warnings if t.loc[i, "run_id"] in w]
    assert named and "left out of the cell" in named[0]
    clean = fit(t.drop(index=i), bootstrap=100)
    assert rep.groups[0].answer.ci == clean.groups[0].answer.ci
    assert rep.groups[0].answer.m_sat == clean.groups[0].answer.m_sat
    assert rep.tolerance == pytest.approx(clean.tolerance)


def test_a_decline_is_a_finding_not_a_flat_curve():
    for seed in range(3):
        st = sim.draw("declining top", seed)
        rep = fit(st.table, bootstrap=100)
        g = rep.to_dict()["groups"][0]
        assert g["decline"] is not None and g["decline"]["drop"] > 0
        assert g["answer"]["status"] == "reached"
        assert any("falls past" in w for w in rep.warnings)
        truth = st.truth(g["n"], rep.tolerance)
        lo, hi = g["answer"]["ci"]
        assert (lo or 0) <= truth <= (hi or np.inf)


def test_collapsed_runs_are_counted_per_cell_or_kept_at_chance():
    st = _knee(2)
    t = st.table.assign(status="ok", n_eval=1000)
    low = t.index[t["m"] == t["m"].min()][:2]
    t.loc[low, "status"] = "collapsed"
    dropped = fit(t, bootstrap=0)
    lo = dropped.groups[0].left_out
    assert lo == [{"n": 4096.0, "m": float(t["m"].min()), "left_out": 2, "statuses": ["collapsed"]}]
    assert any("2 seed(s) left out (collapsed)" in w for w in dropped.warnings)
    chance = fit(t, bootstrap=0, collapsed="chance")
    first = chance.groups[0].curve
    assert first.k[0] == 3
    assert first.centre[0] == pytest.approx(
        (0.5 * 2 + t.loc[t.index[(t["m"] == t["m"].min())][2], "auc"]) / 3
    )
    with pytest.raises(NegscaleError, match="drop or chance"):
        fit(t, collapsed="maybe")


def test_train_loss_is_refused_once_with_the_reason():
    st = _knee()
    with pytest.raises(NegscaleError, match="chance level ln"):
        fit(st.table.assign(train_loss=1.0), metric="train_loss")
    res = runner.invoke(app, ["fit", "x.csv", "--metric", "train_loss"])
    assert res.exit_code == 2
