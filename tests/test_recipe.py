"""Recipe loading, overrides and one-line validation errors naming the field."""

from __future__ import annotations

import pytest
from v1_recipes import QUICKSTART_V1, write

from negscale.config import TrainConfig, bundled_recipes, load_recipe, parse_override
from negscale.errors import NegscaleError


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


def test_batch_and_subsample_meet_at_b_minus_1_whichever_way_m_is_given() -> None:
    by_axis = load_recipe("quickstart", m=3)
    by_set = load_recipe("quickstart", ["negatives.m=3"])
    assert by_set.negatives.source == "subsample" and by_set.run_id() == by_axis.run_id()
    top = load_recipe("quickstart", ["negatives.source='subsample'", "negatives.m=319"])
    assert (top.negatives.source, top.negatives.m, top.m) == ("batch", None, 319)
    assert (
        top.run_id()
        == load_recipe("quickstart").run_id()
        == load_recipe("quickstart", m=319).run_id()
    )


@pytest.mark.parametrize(
    "override,field",
    [
        (["train.nope=1"], "train.nope"),
        (["nope.x=1"], "nope"),
        (["train.steps='many'"], "train.steps"),
        (["train.batch_size=1"], "train.batch_size"),
        (["model.tau=0"], "model.tau"),
        (["model.tau=-1"], "model.tau"),
        (["model.tau=0.0099"], "model.tau"),  # the model clamps 1/tau at 100
        (["negatives.m=0", "negatives.source='subsample'"], "negatives.m"),
        (["negatives.source='subsample'", "negatives.m=400"], "negatives.m"),
        (["negatives.source='pool'", "negatives.m=50000"], "negatives.m"),
        (["negatives.source='pool'"], "negatives.m"),
        (["negatives.source='magic'"], "negatives.source"),
        (["train.batch_size=50000"], "train.batch_size"),
        (["negatives.m=400"], "negatives.m"),  # the batch holds B-1 = 319 others
        (["negatives.momentum=1.0"], "negatives.momentum"),  # a queue's option
        (
            ["negatives.source='queue'", "negatives.m=5", "negatives.queue.momentum=1.0"],
            "negatives.queue.momentum",
        ),
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
    assert load_recipe("quickstart", n=4096).run_id() != a.run_id()
    # where it runs does not change what it computes
    assert load_recipe("quickstart", ["train.device='cpu'"]).run_id() == a.run_id()
    assert load_recipe("quickstart", ["sweep.seeds=[5]"]).run_id() == a.run_id()


def _v1_hash(recipe) -> str:
    """The version-1 run_id algorithm, written out: sha256 of the resolved recipe minus
    name, description, sweep, train.device and train.checkpoint_every."""
    import hashlib
    import json

    data = recipe.resolved()
    for key in ("sweep", "name", "description"):
        data.pop(key)
    data["train"].pop("device")
    data["train"].pop("checkpoint_every")
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def test_run_id_v1_is_kept_for_existing_recipes(tmp_path) -> None:
    # negscale 0.1.0's README shows this recipe's run as 16764cf64e2419ce
    path = write(tmp_path, QUICKSTART_V1, "quickstart_v1")
    r = load_recipe(path)
    assert r.run_id() == "16764cf64e2419ce"
    assert load_recipe(path, m=8).run_id() == "2853f5654adc32ee"
    # and the v1 algorithm written out agrees wherever the schema still is version 1
    from negscale.config.run_id import V1_DEFAULTS, flatten

    if set(flatten(r.resolved())) == set(V1_DEFAULTS) | {"negatives.m"}:
        assert _v1_hash(r) == r.run_id()


def test_new_fields_move_run_id_only_when_used() -> None:
    from negscale.config.run_id import run_id

    base = {"data.n": 4096, "negatives.m": 255}
    defaults = {"data.new_knob": 0}
    same = run_id({**base, "data.new_knob": 0}, defaults)
    assert same == run_id(base, defaults)  # a new field at its default: id unchanged
    assert run_id({**base, "data.new_knob": 3}, defaults) != same  # used: id moves


def test_subsample_of_all_other_items_is_batch() -> None:
    batch = load_recipe("quickstart")
    full = load_recipe("quickstart", m=batch.train.batch_size - 1)
    assert full.negatives.source == "batch"
    assert full.run_id() == batch.run_id()


def test_design_groups_runs_that_differ_only_in_m_n_seed() -> None:
    from negscale.results import record_design

    base = load_recipe("quickstart")
    assert load_recipe("quickstart", m=8, n=1024, seed=1).design_id() == base.design_id()
    assert load_recipe("quickstart", ["train.lr=0.001"]).design_id() != base.design_id()
    assert load_recipe("quickstart", ["negatives.loss_form='infonce'"]).design_id() != (
        base.design_id()
    )
    # a record without a design column gets the same id from its recipe JSON
    assert record_design(base.model_dump_json()) == base.design_id()


def test_with_epochs_the_steps_follow_n_within_one_design() -> None:
    """quickstart's 40 epochs: 128 steps at n = 1024, 2048 at 16384, yet one study design."""
    small, large = load_recipe("quickstart", n=1024), load_recipe("quickstart", n=16384)
    assert (small.train.steps, large.train.steps) == (128, 2048)
    assert small.design_id() == large.design_id() and small.run_id() != large.run_id()
    longer = load_recipe("quickstart", ["train.epochs=80"], n=1024)
    assert longer.design_id() != small.design_id()  # twice the epochs: another design
    fixed = [load_recipe("quickstart", ["train.steps=128"], n=n) for n in (1024, 16384)]
    assert fixed[0].design_id() == fixed[1].design_id() != small.design_id()
    other = load_recipe("quickstart", ["train.steps=256"], n=1024)  # a steps budget is the design
    assert other.design_id() != fixed[0].design_id()


def test_worker_count_is_not_part_of_run_id() -> None:
    base = load_recipe("quickstart")
    assert load_recipe("quickstart", ["data.workers=3"]).run_id() == base.run_id()


def test_epochs_set_the_steps_per_n() -> None:
    """train.epochs: steps = round(epochs * n / B) (B = 320 in quickstart), at every n."""
    import json

    from negscale.config import validate
    from negscale.sweep import GridSpec, make_plan

    for n, steps in ((1024, 96), (4096, 384), (16384, 1536), (1000, 94)):
        r = load_recipe("quickstart", ["train.epochs=30"], n=n)
        assert r.train.steps == steps
        again = validate(json.loads(r.model_dump_json()))  # a resolved recipe re-validates
        assert again.train.steps == steps and again.run_id() == r.run_id()
    plan = make_plan("quickstart", ["train.epochs=30"], GridSpec(samples="1024,4096"))
    assert {(p.data.n, p.train.steps) for p in plan.recipes} == {(1024, 96), (4096, 384)}
    assert TrainConfig().epochs is None  # off by default: steps as given, no run_id moves


def test_bundled_studies_budget_40_epochs_and_an_explicit_steps_replaces_it() -> None:
    """quickstart: 40 epochs at B = 320, so 128 steps at its n = 1024 (40 * 1024 / 320)."""
    from negscale.sweep import GridSpec, make_plan

    r = load_recipe("quickstart")
    assert (r.data.n, r.train.epochs, r.train.steps, r.train.select) == (1024, 40, 128, "best")
    fixed = load_recipe("quickstart", ["train.steps=300"], n=1024)  # the old fixed budget
    assert (fixed.train.epochs, fixed.train.steps) == (None, 300)
    both = load_recipe("quickstart", ["train.steps=300", "train.epochs=10"], n=1024)
    assert (both.train.epochs, both.train.steps) == (10, 32)  # epochs asked for: they decide
    plan = make_plan("quickstart", ["train.steps=7"], GridSpec(samples="1024,4096"))
    assert {(p.data.n, p.train.steps, p.train.epochs) for p in plan.recipes} == {
        (1024, 7, None),
        (4096, 7, None),
    }
