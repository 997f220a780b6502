"""The CLI through Typer's CliRunner: outputs, JSON, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from negscale.cli import app
from negscale.results import load, record_files, record_path

runner = CliRunner()


def _sets(overrides: list[str]) -> list[str]:
    return [arg for o in overrides for arg in ("--set", o)]


def run_json(*args: str) -> tuple[dict, object]:
    """Invoke the CLI with --json; the parsed document and the result (exit code 0 asserted)."""
    res = runner.invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout), res


def test_train_json_prints_the_record_only(tmp_path, tiny_overrides) -> None:
    args = ["train", "quickstart", "-m", "4", "--seed", "2", "--results", str(tmp_path)]
    doc, _ = run_json(*args, *_sets(tiny_overrides))
    assert doc["m"] == 4 and doc["seed"] == 2 and doc["status"] == "ok"
    assert load(tmp_path).iloc[0]["auc"] == pytest.approx(doc["auc"])  # the record on disk


def test_train_table(tmp_path, tiny_overrides) -> None:
    res = runner.invoke(
        app, ["train", "quickstart", "--results", str(tmp_path), *_sets(tiny_overrides)]
    )
    assert res.exit_code == 0, res.output
    assert "recall_at_1" in res.stdout and "auc" in res.stdout


@pytest.mark.parametrize(
    "args,needle",
    [
        (["train", "nope"], "no such file or bundled recipe"),
        (["train", "quickstart", "--set", "train.batch_size=1"], "train.batch_size"),
        (["train", "quickstart", "--set", "bogus"], "expected key.path=value"),
        (["train", "quickstart", "-m", "0"], "negatives.m"),
        (["train", "quickstart", "--device", "tpu"], "--device"),
        (["train", "quickstart", "--set", "model.tau=0.005"], "model.tau"),
        (["train", "quickstart", "--seed", "abc"], "'--seed'"),
        (["train", "quickstart", "--bogus"], "No such option: --bogus"),
        (["list", "things"], "expected datasets"),
        (["trian"], "No such command 'trian'"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path, args: list[str], needle: str) -> None:
    res = runner.invoke(app, [*args, "--results", str(tmp_path)] if args[0] == "train" else args)
    assert res.exit_code == 2
    assert res.stderr.startswith("error: ") and needle in res.stderr
    assert "Traceback" not in res.output
    assert res.stderr.strip().count("\n") == 0
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("what", ["datasets", "encoders", "recipes", "negatives"])
def test_list(what: str) -> None:
    from negscale.config import bundled_recipes
    from negscale.data import DATASETS
    from negscale.encoders import ENCODERS
    from negscale.negatives import SOURCES

    rows, _ = run_json("list", what)
    names = {"datasets": DATASETS, "encoders": ENCODERS, "negatives": SOURCES,
             "recipes": bundled_recipes()}[what]  # fmt: skip
    assert [r["name"] for r in rows] == (sorted(names) if what == "recipes" else list(names))
    assert all(r["summary"] for r in rows)
    if what == "recipes":  # each summary is the file's first comment line
        first = bundled_recipes()["quickstart"].read_text().splitlines()[0]
        assert {r["name"]: r["summary"] for r in rows}["quickstart"] == first.lstrip("# ")


def test_diverged_run_is_recorded_and_exits_non_zero(tmp_path, tiny_overrides) -> None:
    sets = _sets([*tiny_overrides, "train.lr=1e30", "train.grad_clip=0"])
    res = runner.invoke(app, ["train", "quickstart", "--results", str(tmp_path), *sets])
    assert res.exit_code == 1
    assert "diverged" in res.stderr and "Traceback" not in res.output
    assert len(record_files(tmp_path)) == 1


def test_a_collapsed_run_is_recorded_and_exits_non_zero(tmp_path, tiny_overrides) -> None:
    sets = _sets([*tiny_overrides, "train.lr=1e-9"])
    res = runner.invoke(app, ["train", "quickstart", "--results", str(tmp_path), *sets])
    assert res.exit_code == 1, res.output
    assert "error: run collapsed (collapsed: held-out AUC" in " ".join(res.stderr.split())
    assert list(load(tmp_path)["status"]) == ["collapsed"]


def test_results_that_is_a_file_fails_before_training(tmp_path) -> None:
    target = tmp_path / "results.txt"
    target.write_text("not a folder")
    for folder in (target, target / "sub"):
        res = runner.invoke(app, ["train", "quickstart", "--results", str(folder)])
        assert res.exit_code == 2 and res.stderr.count("\n") == 1
        assert f"--results: {target} is a file, not a folder" in res.stderr
        assert "negscale train" not in res.stderr  # nothing started
    res = runner.invoke(app, ["sweep", "quickstart", "--results", str(target)])
    assert res.exit_code == 2 and "is a file, not a folder" in res.stderr


def test_a_recorded_run_is_shown_not_retrained_and_force_retrains(tmp_path, tiny_overrides) -> None:
    args = ["train", "quickstart", "--results", str(tmp_path), *_sets(tiny_overrides)]
    first, _ = run_json(*args)
    path = record_path(tmp_path, first["run_id"])
    stamp = path.stat().st_mtime_ns
    again, res = run_json(*args)
    assert "already recorded" in res.stderr and "--force" in res.stderr
    assert again == first and path.stat().st_mtime_ns == stamp
    table = runner.invoke(app, args)
    assert table.exit_code == 0 and first["run_id"] in table.stdout
    forced, res = run_json(*args, "--force")
    assert "already recorded" not in res.stderr and "resuming" not in res.stderr
    assert forced["created_at"] >= first["created_at"] and path.stat().st_mtime_ns != stamp
    assert forced["auc"] == first["auc"]  # retrained from step 0: the same run again


def test_ctrl_c_says_how_to_resume(tmp_path, tiny_overrides, monkeypatch) -> None:
    import negscale.train

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(negscale.train, "run", interrupted)
    res = runner.invoke(app, ["train", "quickstart", "--results", str(tmp_path)])
    assert res.exit_code == 130 and "re-run the same command" in res.stderr
    monkeypatch.setattr("negscale.sweep.execute", interrupted, raising=False)
    res = runner.invoke(app, ["sweep", "quickstart", "--results", str(tmp_path)])
    assert res.exit_code == 130 and "re-run the same command" in res.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_the_recipes_device_is_honoured(tmp_path) -> None:
    res = runner.invoke(
        app, ["train", "quickstart", "--results", str(tmp_path), "--set", "train.device='cuda'"]
    )
    assert res.exit_code == 2 and "CUDA is not available" in res.stderr
    assert not (tmp_path / "runs").exists()


def _python(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "80"}
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_python_dash_m_negscale_runs_the_cli() -> None:
    res = _python("-m", "negscale", "list", "negatives", "--json")
    assert res.returncode == 0, res.stderr
    assert {r["name"] for r in json.loads(res.stdout)} >= {"batch", "subsample", "pool"}


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_recipe_errors_come_before_torch_is_imported(command: str) -> None:
    code = (
        "import sys\n"
        "from negscale.cli import app\n"
        "try:\n"
        f"    app(['{command}', 'quickstart', '--set', 'train.steps=0'])\n"
        "except SystemExit as e:\n"
        "    print(e.code, 'torch' in sys.modules, 'pandas' in sys.modules)\n"
    )
    res = _python("-c", code)
    assert res.stdout.split() == ["2", "False", "False"], res.stderr
    assert res.stderr.startswith("error: ") and "train.steps" in res.stderr


def test_tables_fit_80_columns_when_piped(tmp_path, tiny_overrides) -> None:
    args = ["train", "quickstart", "--results", str(tmp_path), *_sets(tiny_overrides)]
    doc, _ = run_json(*args)
    res = _python("-m", "negscale", *args)  # already recorded: the table only
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines and max(map(len, lines)) <= 80
    auc = next(line for line in lines if line.startswith("│ auc "))
    assert f"{doc['auc']:.4f}" in auc  # each cell on one line, beside its metric


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_set_shows_what_it_takes_in_help(command: str) -> None:
    out = runner.invoke(app, [command, "--help"], env={"COLUMNS": "100"}).output
    assert "KEY=VALUE" in out and "list[str]" not in out
