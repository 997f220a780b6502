"""Plans: the grid resolved and validated up front, the paper's ratio design, shards, dry runs."""

from __future__ import annotations

import json
import math

import pytest

from negscale.cli import app
from negscale.config import bundled_recipes, load_recipe
from negscale.errors import NegscaleError
from negscale.sweep import (
    GridSpec,
    make_plan,
)

from .helpers import (
    expected_ids,
    records_on_disk,
    runner,
    set_args,
)


def test_ratio_plan_matches_the_papers_design(tiny) -> None:
    plan = make_plan("quickstart", tiny, GridSpec(ratios="0.01,0.1", samples="0.5,1", seeds="0,3"))
    # independently: n = 256, 512; m = round(ratio * n)
    want = [(256, 3), (256, 26), (512, 5), (512, 51)]
    got = [(r.data.n, r.m, r.train.seed) for r in plan.recipes]
    assert got == [(n, m, s) for n, m in want for s in (0, 3)]  # ordered by (n, m, seed)
    ids = {
        load_recipe("quickstart", tiny, m=m, n=n, seed=s).run_id() for n, m in want for s in (0, 3)
    }
    assert set(plan.run_ids) == ids


def test_grid_defaults_come_from_the_recipe_sweep_section(tmp_path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(
        'name = "mine"\n[train]\nbatch_size = 32\n'
        "[sweep]\nnegatives = [1, 8]\nsamples = [256, 512]\nseeds = [4]\n"
    )
    plan = make_plan(str(path))
    assert [(r.data.n, r.m, r.train.seed) for r in plan.recipes] == [
        (256, 1, 4),
        (256, 8, 4),
        (512, 1, 4),
        (512, 8, 4),
    ]
    # the command line wins over the recipe, axis by axis
    plan = make_plan(str(path), grid=GridSpec(negatives="2", seeds="0,1"))
    assert sorted((r.data.n, r.m, r.train.seed) for r in plan.recipes) == [
        (n, 2, s) for n in (256, 512) for s in (0, 1)
    ]


def test_invalid_points_fail_before_anything_runs(tmp_path, tiny) -> None:
    with pytest.raises(NegscaleError, match=r"1 of 3 planned runs are invalid.*m=64, n=512"):
        make_plan("quickstart", tiny, GridSpec(negatives="1,8,64"))
    with pytest.raises(NegscaleError, match="not both"):
        make_plan("quickstart", tiny, GridSpec(negatives="1", ratios="0.1"))
    res = runner.invoke(
        app,
        [
            "sweep",
            "quickstart",
            "-m",
            "4,64",
            "--results",
            str(tmp_path / "r"),
            *set_args(tiny),
        ],
    )
    assert res.exit_code == 2
    assert res.stderr.startswith("error: sweep: 1 of 2") and res.stderr.count("\n") == 1
    assert not (tmp_path / "r").exists()  # nothing ran, nothing written


def test_pool_m_beyond_n_is_invalid(tiny) -> None:
    sets = [*tiny, "negatives.source=pool"]
    plan = make_plan("quickstart", sets, GridSpec(negatives="4,256", samples="256,512"))
    assert [(r.data.n, r.m) for r in plan.recipes] == [(256, 4), (256, 256), (512, 4), (512, 256)]
    with pytest.raises(NegscaleError, match=r"1 of 4 planned.*m=512, n=256.*pool holds at most"):
        make_plan("quickstart", sets, GridSpec(negatives="4,512", samples="256,512"))
    # m = ratio * n can never exceed n, so ratios up to 1 are always a valid pool design
    plan = make_plan("quickstart", sets, GridSpec(ratios="0.01,1", samples="256,512"))
    assert [(r.data.n, r.m) for r in plan.recipes] == [(256, 3), (256, 256), (512, 5), (512, 512)]


@pytest.mark.parametrize(
    "name,setting", [("quickstart", "self-supervised"), ("quickstart-supervised", "supervised")]
)
def test_bundled_quickstart_studies_are_meaningful_designs(name: str, setting: str) -> None:
    assert bundled_recipes()[name].read_text().startswith("# ")
    plan = make_plan(name)
    assert plan.setting == setting and plan.recipes[0].description
    cells: dict[int, dict[int, int]] = {}
    for r in plan.recipes:
        cell = cells.setdefault(r.data.n, {})
        cell[r.m] = cell.get(r.m, 0) + 1
    assert len(cells) >= 3 and math.log10(max(cells) / min(cells)) >= 1  # n over a decade
    for ms in cells.values():
        assert len(ms) >= 7 and math.log10(max(ms) / min(ms)) >= 2.5
        assert set(ms.values()) == {3}  # three seeds per (n, m)


def test_shards_partition_the_plan_whatever_is_done(tiny) -> None:
    plan = make_plan("quickstart", tiny, GridSpec(negatives="1..7", seeds="0,1"))
    ids = sorted(plan.run_ids)
    parts = [{r.run_id() for r in plan.shard((i, 3))} for i in (1, 2, 3)]
    assert sorted(len(p) for p in parts) == [4, 5, 5]
    assert set.union(*parts) == set(ids) and sum(map(len, parts)) == len(ids)
    assert parts[0] == set(ids[0::3])  # round robin over the sorted run_ids


def test_dry_run_lists_the_plan_and_what_is_done(tmp_path, fast) -> None:
    from negscale.train import run

    run(load_recipe("quickstart", fast, m=2, seed=1), tmp_path, progress=False)
    args = ["sweep", "quickstart", "-m", "2,4", "--seeds", "0,1", "--results", str(tmp_path)]
    res = runner.invoke(app, [*args, "--dry-run", "--json", *set_args(fast)])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    states = {r["run_id"]: r["state"] for r in doc["runs"]}
    done = load_recipe("quickstart", fast, m=2, seed=1).run_id()
    assert set(states) == expected_ids(fast, [2, 4], [256], [0, 1])
    assert states.pop(done) == "done" and set(states.values()) == {"pending"}
    table = runner.invoke(app, [*args, "--dry-run", *set_args(fast)])
    assert table.exit_code == 0
    for rid in [done, *states]:
        assert rid in table.stdout
    assert "1 done, 3 pending" in table.stdout
    assert len(records_on_disk(tmp_path)) == 1  # a dry run trains nothing


def test_a_sweep_can_switch_the_dataset_like_train_does(tiny) -> None:
    # quickstart's [data] carries synthetic-only keys (flavour, classes, ...): --set data.name
    # keeps only what the new dataset has, as `negscale train` does
    sets = [*tiny, "data.name='digits'", "data.n=400", "data.n_eval=100"]
    plan = make_plan("quickstart", sets, GridSpec(negatives="1,4"))
    assert {r.data.name for r in plan.recipes} == {"digits"}
    assert {r.run_id() for r in plan.recipes} == {
        load_recipe("quickstart", sets, m=m).run_id() for m in (1, 4)
    }
