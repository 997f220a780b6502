"""The CLI through Typer's CliRunner: outputs, JSON, one-line errors."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from negscale.cli import app

runner = CliRunner()


def _sets(overrides: list[str]) -> list[str]:
    return [arg for o in overrides for arg in ("--set", o)]


def test_train_json_prints_the_record_only(tmp_path, tiny_overrides) -> None:
    res = runner.invoke(
        app,
        [
            "train",
            "quickstart",
            "-m",
            "4",
            "--seed",
            "2",
            "--results",
            str(tmp_path),
            "--json",
            *_sets(tiny_overrides),
        ],
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["m"] == 4 and doc["seed"] == 2 and doc["status"] == "ok"
    assert (tmp_path / "runs" / f"{doc['run_id']}.parquet").is_file()


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
        (["list", "things"], "expected datasets"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path, args: list[str], needle: str) -> None:
    res = runner.invoke(app, [*args, "--results", str(tmp_path)] if args[0] == "train" else args)
    assert res.exit_code == 2
    assert needle in res.stderr
    assert "Traceback" not in res.output
    assert res.stderr.strip().count("\n") == 0
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("what", ["datasets", "encoders", "recipes", "negatives"])
def test_list(what: str) -> None:
    res = runner.invoke(app, ["list", what, "--json"])
    assert res.exit_code == 0
    rows = json.loads(res.stdout)
    assert rows and all("name" in r and r.get("summary") for r in rows)


def test_diverged_run_is_recorded_and_exits_non_zero(tmp_path, tiny_overrides) -> None:
    sets = _sets([*tiny_overrides, "train.lr=1e30", "train.grad_clip=0"])
    res = runner.invoke(app, ["train", "quickstart", "--results", str(tmp_path), *sets])
    assert res.exit_code == 1
    assert "diverged" in res.stderr and "Traceback" not in res.output
    assert len(list((tmp_path / "runs").glob("*.parquet"))) == 1


def test_chance_levels_come_from_the_evaluated_data() -> None:
    from negscale.cli import chance_levels

    got = chance_levels({"n_eval": 200, "num_classes": 4})
    assert got["recall_at_1"] == 1 / 200 and got["recall_at_10"] == 10 / 200
    assert got["mean_rank"] == 100.5 and got["auc"] == 0.5
    assert got["zeroshot_top1"] == 0.25
    assert "zeroshot_top1" not in chance_levels({"n_eval": 8, "num_classes": None})
