"""Execution: resume, repair, diverged / collapsed / crashing runs, and --fit."""

from __future__ import annotations

import json
import os
import statistics
import subprocess

import pytest

from negscale.cli import app
from negscale.config import load_recipe
from negscale.sweep import (
    GridSpec,
    execute,
    lock_path,
    make_plan,
)

from .helpers import (
    expected_ids,
    leftovers,
    records_on_disk,
    runner,
    set_args,
)


def test_json_summary_and_resume_trains_each_run_once(tmp_path, fast) -> None:
    args = ["sweep", "quickstart", "-m", "1,4", "-n", "128,256", "--seeds", "0,1"]
    args += ["--results", str(tmp_path), "--json", "--device", "cpu", *set_args(fast)]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    rows = records_on_disk(tmp_path)
    assert set(rows) == expected_ids(fast, [1, 4], [128, 256], [0, 1])
    assert sorted(doc["sweep"]["trained"]) == sorted(rows)
    assert doc["planned"] == doc["recorded"] == 8 and len(doc["runs"]) == 8
    assert {"study", "metrics", "cells", "runs", "wall_s", "shard"} <= set(doc)
    assert doc["metrics"] == ["auc", "recall_at_1"]
    assert [(c["n"], c["m"]) for c in doc["cells"]] == [(128, 1), (128, 4), (256, 1), (256, 4)]
    for cell in doc["cells"]:
        vals = [r["auc"] for r in rows.values() if (r["n"], r["m"]) == (cell["n"], cell["m"])]
        assert cell["ok"] == cell["planned"] == 2
        assert cell["auc"]["mean"] == pytest.approx(statistics.mean(vals))
        assert cell["auc"]["sd"] == pytest.approx(statistics.stdev(vals))
        assert cell["ratio"] == pytest.approx(cell["m"] / cell["n"])
    mtimes = {f.name: f.stat().st_mtime_ns for f in (tmp_path / "runs").iterdir()}

    again = runner.invoke(app, args)
    assert again.exit_code == 0
    assert json.loads(again.stdout)["sweep"]["trained"] == []
    assert {f.name: f.stat().st_mtime_ns for f in (tmp_path / "runs").iterdir()} == mtimes

    # one more seed: only the new runs train
    more = runner.invoke(app, [*args, "--seeds", "0,1,2"])
    assert more.exit_code == 0
    new = set(records_on_disk(tmp_path)) - set(rows)
    assert new == expected_ids(fast, [1, 4], [128, 256], [2])
    assert set(json.loads(more.stdout)["sweep"]["trained"]) == new


def test_corrupt_records_stray_files_and_stale_locks_are_repaired(tmp_path, fast):
    args = ["sweep", "quickstart", "-m", "1,2,3", "--results", str(tmp_path), "--json"]
    args += set_args(fast)
    assert runner.invoke(app, args).exit_code == 0
    a, b, c = sorted(records_on_disk(tmp_path))
    runs = tmp_path / "runs"
    (runs / f"{a}.parquet").write_bytes(b"PAR1 truncated")  # corrupt record
    (runs / f"{b}.parquet").unlink()  # killed run: stray temp files and a dead owner's lock
    (runs / f".{b}.x1y2.tmp").write_bytes(b"half a parquet")
    (tmp_path / "checkpoints" / f"{b}.tmp").write_bytes(b"half a checkpoint")
    dead = subprocess.Popen(["true"])
    dead.wait()
    lock_path(tmp_path, b).write_text(json.dumps({"pid": dead.pid, "host": os.uname().nodename}))

    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "corrupt run record" in res.stderr and a in res.stderr
    assert sorted(json.loads(res.stdout)["sweep"]["trained"]) == sorted([a, b])
    assert set(records_on_disk(tmp_path)) == {a, b, c}
    assert leftovers(tmp_path) == []


def test_a_diverged_run_is_recorded_and_the_sweep_goes_on(tmp_path, fast) -> None:
    plan = make_plan("quickstart", fast, GridSpec(negatives="2,4"))
    bad = load_recipe("quickstart", [*fast, "train.lr=1e30", "train.grad_clip=0"], m=3)
    plan.recipes.insert(0, bad)  # the first run diverges, the others must still run
    stats = execute(plan, tmp_path)
    rows = records_on_disk(tmp_path)
    assert set(rows) == set(plan.run_ids)
    assert rows[bad.run_id()]["status"] == "diverged" and stats.diverged == [bad.run_id()]
    assert [rows[r]["status"] for r in plan.run_ids[1:]] == ["ok", "ok"]

    # through the CLI: every run diverges, all are recorded, the sweep still succeeds
    res = runner.invoke(
        app,
        [
            "sweep",
            "quickstart",
            "-m",
            "2,4",
            "--results",
            str(tmp_path / "cli"),
            "--json",
            *set_args([*fast, "train.lr=1e30", "train.grad_clip=0"]),
        ],
    )
    assert res.exit_code == 0, res.output
    assert res.stderr.count("  diverged (loss became") == 2
    rows = records_on_disk(tmp_path / "cli")
    assert len(rows) == 2 and {r["status"] for r in rows.values()} == {"diverged"}
    doc = json.loads(res.stdout)
    assert [c["diverged"] for c in doc["cells"]] == [1, 1]
    assert all(c["auc"]["mean"] is None for c in doc["cells"])


def test_a_collapsed_run_is_reported_counted_and_the_table_shows_chance(tmp_path, fast) -> None:
    args = ["sweep", "quickstart", "-m", "2,4", "--results", str(tmp_path)]
    res = runner.invoke(app, [*args, *set_args([*fast, "train.lr=1e-9"])])
    assert res.exit_code == 0, res.output
    assert res.stderr.count("  collapsed (collapsed: held-out AUC") == 2
    rows = records_on_disk(tmp_path)
    assert {r["status"] for r in rows.values()} == {"collapsed"}
    lines = res.stdout.splitlines()
    chance = ["chance", "0.500", f"{1 / 128:.3f}"]  # under auc and recall_at_1
    assert any(line.split() == chance for line in lines), res.stdout
    header = next(line for line in lines if line.split()[:1] == ["n"]).split()
    assert header == ["n", "m", "m/n", "ok", "auc", "recall_at_1", "coll"]  # a column of its own
    assert max(map(len, lines)) <= 80

    # running it again: nothing to train, and it says so
    res = runner.invoke(app, [*args, "--json", *set_args([*fast, "train.lr=1e-9"])])
    assert "2 of 2 runs already recorded: skipped" in res.stderr
    doc = json.loads(res.stdout)
    assert [c["collapsed"] for c in doc["cells"]] == [1, 1] and doc["sweep"]["trained"] == []
    assert doc["chance"] == {"auc": 0.5, "recall_at_1": 1 / 128}


def test_a_crashing_run_is_reported_the_others_finish_and_it_stays_pending(
    tmp_path, fast, monkeypatch
) -> None:
    """The three runs form one stack; it fails, and trains them again one at a time."""
    import negscale.train

    real_init = negscale.train.Trainer.__init__
    crash = load_recipe("quickstart", fast, m=2).run_id()

    def flaky(self, recipe, *args, **kwargs):
        if recipe.run_id() == crash:
            raise RuntimeError("out of memory")
        real_init(self, recipe, *args, **kwargs)

    monkeypatch.setattr(negscale.train.Trainer, "__init__", flaky)
    args = ["sweep", "quickstart", "-m", "1,2,4", "--results", str(tmp_path), *set_args(fast)]
    res = runner.invoke(app, args)
    assert res.exit_code == 1 and "out of memory" in res.stderr and "re-run" in res.stderr
    assert "a stack of 3 runs failed" in res.stderr
    assert set(records_on_disk(tmp_path)) == expected_ids(fast, [1, 4], [256], [0])
    assert leftovers(tmp_path) == []
    monkeypatch.setattr(negscale.train.Trainer, "__init__", real_init)
    assert runner.invoke(app, args).exit_code == 0  # the re-run trains the missing one
    assert set(records_on_disk(tmp_path)) == expected_ids(fast, [1, 2, 4], [256], [0])


def test_fit_flag_adds_a_fit_or_a_warning(tmp_path, fast) -> None:
    args = ["sweep", "quickstart", "--results", str(tmp_path), "--fit", *set_args(fast)]
    res = runner.invoke(app, [*args, "-m", "1,2", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    # two values of m are too few to fit: a warning, and the sweep still succeeded
    assert doc["fit"] is None and "3 distinct values of m" in doc["fit_warning"]
    assert "warning:" in res.stderr

    res = runner.invoke(app, [*args, "-m", "1,2,4,8", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["fit_warning"] is None and doc["fit"]["metric"] == "auc"
    assert doc["fit"]["setting"] == "self-supervised" and doc["fit"]["runs"] == 4
    assert [g["n"] for g in doc["fit"]["groups"]] == [256]
    text = runner.invoke(app, [*args, "-m", "1,2,4,8"])  # all recorded: fit and render only
    assert text.exit_code == 0 and "negscale fit" in text.stdout and "m_sat" in text.stdout
