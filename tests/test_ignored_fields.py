"""A source's own options live in its section; a setting the source never reads is
refused (another source's options) or named in a warning (a shared field)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from negscale.cli import app
from negscale.config import bundled_recipes, ignored_negative_fields, load_recipe, validate
from negscale.errors import NegscaleError

runner = CliRunner()


@pytest.mark.parametrize("name", sorted(bundled_recipes()))
def test_no_bundled_recipe_sets_a_field_its_source_ignores(name: str) -> None:
    assert ignored_negative_fields(load_recipe(name)) == []


def test_shared_fields_away_from_default_that_the_source_does_not_read_are_listed() -> None:
    # batch reads only tile; chunk is read by independent and pool
    r = load_recipe("quickstart", ["negatives.chunk=7", "negatives.tile=64"])
    assert ignored_negative_fields(r) == ["negatives.chunk = 7"]
    pool = load_recipe("self-supervised", ["negatives.chunk=7"])
    assert ignored_negative_fields(pool) == []


@pytest.mark.parametrize(
    "setting,owner,option",
    [
        ("negatives.gamma=0.5", "pool", "gamma"),
        ("negatives.pool_batch=7", "pool", "minibatch"),
        ("negatives.momentum=0.5", "queue", "momentum"),
        ("negatives.class_aware=false", "independent", "class_aware"),
    ],
)
def test_another_sources_option_in_its_old_flat_spelling_is_refused(
    setting: str, owner: str, option: str
) -> None:
    want = (
        rf"^negatives\.\w+: an option of source '{owner}' \(\[negatives\.{owner}\] {option}\),"
        r" but negatives\.source is 'batch'$"
    )
    with pytest.raises(NegscaleError, match=want):
        load_recipe("quickstart", [setting])


def test_another_sources_section_is_refused() -> None:
    with pytest.raises(NegscaleError, match=r"^negatives\.queue: options of source 'queue', but"):
        load_recipe("self-supervised", ["negatives.queue.momentum=0.5"])


def test_an_option_given_twice_in_a_file_is_refused() -> None:
    raw = {"negatives": {"source": "pool", "m": 4, "gamma": 0.5, "pool": {"gamma": 0.6}}}
    with pytest.raises(NegscaleError, match="the same option twice"):
        validate(raw)


def test_a_flat_override_replaces_the_option_in_the_files_section() -> None:
    r = load_recipe("self-supervised", ["negatives.gamma=0.5"])  # the file: [negatives.pool]
    assert r.negatives.options.gamma == 0.5
    later = load_recipe("self-supervised", ["negatives.gamma=0.5", "negatives.pool.gamma=0.6"])
    assert later.negatives.options.gamma == 0.6  # overrides apply in order, as everywhere


def test_options_is_not_a_recipe_key() -> None:
    with pytest.raises(NegscaleError, match=r"^negatives\.options: unknown key"):
        load_recipe("self-supervised", ["negatives.options.gamma=0.5"])


def test_an_unknown_option_is_named_in_its_section() -> None:
    with pytest.raises(NegscaleError, match=r"^negatives\.pool\.bogus: unknown key"):
        load_recipe("self-supervised", ["negatives.pool.bogus=1"])
    with pytest.raises(NegscaleError, match=r"^negatives\.pool\.gamma: Input should be less"):
        load_recipe("self-supervised", ["negatives.pool.gamma=2.0"])


def test_the_flat_spelling_and_the_section_are_the_same_run() -> None:
    flat = load_recipe("self-supervised", ["negatives.gamma=0.5", "negatives.pool_batch=64"])
    nested = load_recipe(
        "self-supervised", ["negatives.pool.gamma=0.5", "negatives.pool.minibatch=64"]
    )
    assert flat.negatives.options == nested.negatives.options
    assert flat.run_id() == nested.run_id() and flat.design_id() == nested.design_id()
    assert flat.run_id() != load_recipe("self-supervised").run_id()


def test_a_resolved_recipe_writes_the_section_under_the_source_and_reads_back() -> None:
    r = load_recipe("self-supervised", ["negatives.pool.gamma=0.5"])
    dumped = json.loads(r.model_dump_json())["negatives"]
    assert dumped["pool"] == {"minibatch": None, "exact_max": 0, "gamma": 0.5}
    assert "options" not in dumped and "gamma" not in dumped
    again = validate(json.loads(r.model_dump_json()))
    assert again == r and again.run_id() == r.run_id()


def test_sweep_and_train_warn_once_per_ignored_setting(tmp_path) -> None:
    args = ["sweep", "quickstart", "--dry-run", "--set", "negatives.chunk=64", "-m", "1,3"]
    res = runner.invoke(app, [*args, "--results", str(tmp_path)])
    assert res.exit_code == 0
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("warning:")]
    assert lines == [
        "warning: negatives.chunk = 64 is not read by source 'subsample' (it reads: tile); "
        "the run ignores it"
    ]
    clean = runner.invoke(app, ["sweep", "quickstart", "--dry-run", "--results", str(tmp_path)])
    assert clean.exit_code == 0 and "warning:" not in clean.stderr


def test_train_warns_before_training(tmp_path, tiny_overrides) -> None:
    sets = [a for s in [*tiny_overrides, "negatives.chunk=64"] for a in ("--set", s)]
    res = runner.invoke(app, ["train", "quickstart", *sets, "--results", str(tmp_path)])
    assert res.exit_code == 0, res.output
    first = res.stderr.splitlines()[0]
    assert first.startswith("warning: negatives.chunk = 64 is not read by source 'batch'")


def test_another_sources_option_is_a_one_line_error_on_the_command_line(tmp_path) -> None:
    res = runner.invoke(
        app, ["train", "quickstart", "--set", "negatives.gamma=0.5", "--results", str(tmp_path)]
    )
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert res.stderr.strip().startswith("error: negatives.gamma: an option of source 'pool'")
    assert not any(tmp_path.iterdir())


def _flat_dumps() -> list[dict]:
    path = Path(__file__).parent / "data" / "flat_negatives_dumps.json"
    return json.loads(path.read_text())["cases"]


@pytest.mark.parametrize("case", _flat_dumps(), ids=lambda c: c["run_id"])
def test_recipes_dumped_before_the_sections_keep_their_run_id_and_design(case: dict) -> None:
    """Records and checkpoints hold recipes dumped by the previous release (every source's
    options flat, at their defaults); they validate to the same run id and design."""
    from negscale.results import record_design

    old = case["recipe"]
    assert "gamma" in old["negatives"] and "class_aware" in old["negatives"]  # all flat
    again = validate(old)
    assert again.run_id() == case["run_id"]
    assert record_design(json.dumps(old)) == case["design"] == again.design_id()
    assert record_design(again.model_dump_json()) == case["design"]
