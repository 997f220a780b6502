"""A negatives.* setting the chosen source never reads is named in a warning, not ignored."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from negscale.cli import app
from negscale.config import bundled_recipes, ignored_negative_fields, load_recipe

runner = CliRunner()


@pytest.mark.parametrize("name", sorted(bundled_recipes()))
def test_no_bundled_recipe_sets_a_field_its_source_ignores(name: str) -> None:
    assert ignored_negative_fields(load_recipe(name)) == []


def test_fields_away_from_default_that_the_source_does_not_read_are_listed() -> None:
    # batch reads only tile; gamma and pool_batch belong to pool, momentum to queue
    r = load_recipe(
        "quickstart", ["negatives.gamma=0.5", "negatives.pool_batch=7", "negatives.tile=64"]
    )
    assert ignored_negative_fields(r) == ["negatives.pool_batch = 7", "negatives.gamma = 0.5"]
    pool = load_recipe("self-supervised", ["negatives.gamma=0.5", "negatives.momentum=0.9"])
    assert ignored_negative_fields(pool) == ["negatives.momentum = 0.9"]


def test_sweep_and_train_warn_once_per_ignored_setting(tmp_path) -> None:
    args = ["sweep", "quickstart", "--dry-run", "--set", "negatives.gamma=0.5", "-m", "1,3"]
    res = runner.invoke(app, [*args, "--results", str(tmp_path)])
    assert res.exit_code == 0
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("warning:")]
    assert lines == [
        "warning: negatives.gamma = 0.5 is not read by source 'subsample' (it reads: tile); "
        "the run ignores it"
    ]
    clean = runner.invoke(app, ["sweep", "quickstart", "--dry-run", "--results", str(tmp_path)])
    assert clean.exit_code == 0 and "warning:" not in clean.stderr


def test_train_warns_before_training(tmp_path, tiny_overrides) -> None:
    sets = [a for s in [*tiny_overrides, "negatives.momentum=0.5"] for a in ("--set", s)]
    res = runner.invoke(app, ["train", "quickstart", *sets, "--results", str(tmp_path)])
    assert res.exit_code == 0, res.output
    first = res.stderr.splitlines()[0]
    assert first.startswith("warning: negatives.momentum = 0.5 is not read by source 'batch'")
