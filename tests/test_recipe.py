"""Recipe loading, overrides and one-line validation errors naming the field."""

from __future__ import annotations

import pytest

from negscale.errors import NegscaleError
from negscale.recipe import bundled_recipes, load_recipe, parse_override


def test_bundled_quickstart_loads_from_any_directory(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    r = load_recipe("quickstart")
    assert r.name == "quickstart"
    assert "quickstart" in bundled_recipes()
    assert r.m == r.train.batch_size - 1  # batch source: m = B - 1


def test_overrides_are_typed_and_validated() -> None:
    r = load_recipe("quickstart", ["train.steps=7", "model.tau=0.5", "model.learn_tau=true"])
    assert (r.train.steps, r.model.tau, r.model.learn_tau) == (7, 0.5, True)
    assert parse_override("sweep.seeds=[0, 1]") == (["sweep", "seeds"], [0, 1])
    assert parse_override("data.name=synthetic") == (["data", "name"], "synthetic")


def test_design_axes_override_the_recipe() -> None:
    r = load_recipe("quickstart", m=8, n=1024, seed=3)
    assert (r.m, r.data.n, r.train.seed) == (8, 1024, 3)
    assert r.negatives.source == "subsample"  # fewer than B-1 in-batch negatives


@pytest.mark.parametrize(
    "override,field",
    [
        (["train.nope=1"], "train.nope"),
        (["nope.x=1"], "nope"),
        (["train.steps='many'"], "train.steps"),
        (["train.batch_size=1"], "train.batch_size"),
        (["model.tau=0"], "model.tau"),
        (["model.tau=-1"], "model.tau"),
        (["negatives.m=0", "negatives.source='subsample'"], "negatives.m"),
        (["negatives.source='subsample'", "negatives.m=400"], "negatives.m"),
        (["negatives.source='pool'", "negatives.m=5000"], "negatives.m"),
        (["negatives.source='pool'"], "negatives.m"),
        (["negatives.source='magic'"], "negatives.source"),
        (["train.batch_size=8192"], "train.batch_size"),
        (["negatives.m=3"], "negatives.m"),  # batch source cannot give m != B-1
        (["negatives.momentum=1.0"], "negatives.momentum"),
    ],
)
def test_invalid_values_name_their_field(override: list[str], field: str) -> None:
    with pytest.raises(NegscaleError) as info:
        load_recipe("quickstart", override)
    message = str(info.value)
    assert message.startswith(f"{field}:"), message
    assert "\n" not in message


def test_missing_recipe_and_bad_toml(tmp_path) -> None:
    with pytest.raises(NegscaleError, match="no such file or bundled recipe"):
        load_recipe("does-not-exist")
    bad = tmp_path / "bad.toml"
    bad.write_text("[data\n")
    with pytest.raises(NegscaleError, match="invalid TOML"):
        load_recipe(str(bad))


def test_run_id_is_stable_and_tracks_what_changes_results() -> None:
    a, b = load_recipe("quickstart"), load_recipe("quickstart")
    assert a.run_id() == b.run_id()
    assert load_recipe("quickstart", seed=1).run_id() != a.run_id()
    assert load_recipe("quickstart", m=4).run_id() != a.run_id()
    assert load_recipe("quickstart", n=1024).run_id() != a.run_id()
    # where it runs does not change what it computes
    assert load_recipe("quickstart", ["train.device='cpu'"]).run_id() == a.run_id()
    assert load_recipe("quickstart", ["sweep.seeds=[5]"]).run_id() == a.run_id()
