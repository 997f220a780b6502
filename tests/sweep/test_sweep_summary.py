"""The study summary drawn and listed: plot lines against hand values, --plot, results table."""

from __future__ import annotations

import json
import statistics

import pytest

from negscale.cli import app
from negscale.sweep.plot import study_lines

from .helpers import records_on_disk, runner, set_args


def _cell(n, m, values):
    sd = statistics.stdev(values) if len(values) > 1 else None
    return {"n": n, "m": m, "auc": {"mean": statistics.mean(values) if values else None,
                                    "sd": sd}}  # fmt: skip


def test_study_lines_are_means_with_sd_bands_per_n() -> None:
    summary = {"cells": [_cell(200, 4, [0.8, 0.9]), _cell(100, 1, [0.5]), _cell(100, 2, []),
                         _cell(100, 4, [0.6, 0.7, 0.8]), _cell(200, 1, [0.7, 0.75])]}  # fmt: skip
    lines = study_lines(summary, "auc")
    assert list(lines) == [100, 200]
    assert lines[100]["m"] == [1, 4]  # m = 2 has no ok run
    assert lines[100]["mean"] == pytest.approx([0.5, 0.7])
    assert lines[100]["lo"] == pytest.approx([0.5, 0.6]) and lines[100]["hi"] == pytest.approx(
        [0.5, 0.8]
    )  # one seed: no band; three: sd 0.1
    sd = statistics.stdev([0.7, 0.75])
    assert lines[200]["lo"][0] == pytest.approx(0.725 - sd)


def test_sweep_plot_draws_the_study_and_bad_paths_fail_first(tmp_path, fast) -> None:
    args = ["sweep", "quickstart", "-m", "1,4", "--seeds", "0,1", "--results", str(tmp_path)]
    bad = runner.invoke(app, [*args, "--plot", str(tmp_path / "nope" / "s.png"), *set_args(fast)])
    assert bad.exit_code == 2 and "does not exist" in bad.stderr
    assert not (tmp_path / "runs").exists()
    bad = runner.invoke(app, [*args, "--plot", str(tmp_path / "s.txt"), *set_args(fast)])
    assert bad.exit_code == 2 and ".png" in bad.stderr
    png = tmp_path / "study.png"
    res = runner.invoke(app, [*args, "--plot", str(png), *set_args(fast)])
    assert res.exit_code == 0, res.output
    assert f"plot: {png}" in res.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the results view lists the same runs the files hold, filterable
    doc = json.loads(runner.invoke(app, ["results", str(tmp_path), "--json"]).stdout)
    disk = records_on_disk(tmp_path)
    assert sorted(r["run_id"] for r in doc) == sorted(disk)
    assert all(r["auc"] == pytest.approx(disk[r["run_id"]]["auc"]) for r in doc)
    design = doc[0]["design"]
    assert {r["design"] for r in doc} == {design}
    none = json.loads(runner.invoke(app, ["results", str(tmp_path), "--json",
                                          "--status", "collapsed"]).stdout)  # fmt: skip
    assert none == []
    some = runner.invoke(app, ["results", str(tmp_path), "--design", design[:6], "--csv"])
    assert some.stdout.count("\n") == 1 + len(disk) and some.stdout.startswith("run_id,")
    table = runner.invoke(app, ["results", str(tmp_path)])
    assert table.exit_code == 0 and all(rid in table.stdout for rid in disk)
    assert max(map(len, table.stdout.splitlines())) <= 80


def test_chance_is_a_line_near_the_data_and_a_legend_entry_far_from_it() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from negscale.sweep.plot import _chance_line

    far = {2048: {"m": [1, 8], "mean": [0.90, 0.96], "lo": [0.89, 0.95], "hi": [0.91, 0.97]}}
    near = {2048: {"m": [1, 8], "mean": [0.52, 0.60], "lo": [0.50, 0.58], "hi": [0.54, 0.62]}}
    for lines, drawn in ((far, False), (near, True)):
        fig, ax = plt.subplots()
        _chance_line(ax, 0.5, lines)
        flat = [ln for ln in ax.lines if list(ln.get_ydata()) == [0.5, 0.5]]
        assert bool(flat) is drawn
        labels = [ln.get_label() for ln in ax.lines]
        assert any(lb.startswith("chance") for lb in labels)
        plt.close(fig)
