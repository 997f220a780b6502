"""The pool defaults that follow the batch (negscale.config.pool_rule) and their run ids."""

from __future__ import annotations

import json

import pytest
import torch
from test_negatives import SMALL, _setup

from negscale.config import load_recipe
from negscale.config.pool_rule import AUTO_BATCH, exact_max, minibatch_floor, v1_hashed
from negscale.negatives import source_params
from negscale.negatives.pool import PoolSource


def _pool(m: int, *sets: str, n: int = 40, batch: int = 8):
    extra = [*SMALL, f"data.n={n}", f"train.batch_size={batch}", "negatives.source='pool'"]
    return load_recipe("quickstart", [*extra, *sets], m=m)


def test_defaults_are_half_the_batch_and_numbers_keep_their_meaning() -> None:
    assert exact_max(None, 320) == 160 and exact_max(0, 320) == 0 and exact_max(1024, 8) == 1024
    assert minibatch_floor(None, 320, 5000) == 160 and minibatch_floor(None, 320, 40) == 40
    assert minibatch_floor(300, 320, 5000) == 300 and minibatch_floor(None, 1, 9) == 1


@pytest.mark.parametrize("m,exact", [(4, True), (5, False), (39, False)])
def test_a_pool_is_exact_up_to_half_the_batch(m: int, exact: bool) -> None:
    r = _pool(m)
    assert r.negatives.options.exact_max is None
    assert PoolSource(source_params(r), _setup()[1]).exact is exact


def test_default_minibatch_is_every_batch_member_topped_up_to_half_the_batch() -> None:
    data = _setup()[1]
    pool = PoolSource(source_params(_pool(20)), data)  # B = 8, floor 4; 20 of 40 items in the pool
    members = set(pool.pool.tolist())
    counts = torch.zeros(40)
    for step in range(400):
        index = torch.randperm(40, generator=torch.Generator().manual_seed(step))[:8]
        mine = {i for i in index.tolist() if i in members}
        ids = pool.sample(index, step).tolist()
        assert len(ids) == len(set(ids)) == max(len(mine), 4) and set(ids) <= members
        assert mine <= set(ids)  # every member the batch holds, even beyond the floor
        if len(mine) < 4:  # the top-up: pool items outside the batch
            counts[[i for i in ids if i not in mine]] += 1
    # uniform top-up over the pool: every member is drawn, none far from the mean
    drawn = counts[sorted(members)]
    assert bool((drawn > 0).all()) and float(drawn.max() / drawn.mean()) < 2.0


def test_a_given_pool_batch_is_exactly_that_many_items() -> None:
    pool = PoolSource(source_params(_pool(40, "negatives.pool_batch=3")), _setup()[1])
    index = torch.arange(8)  # m = n: all 8 are members
    assert len(pool.sample(index, 0)) == 3
    assert torch.equal(PoolSource(source_params(_pool(40)), _setup()[1]).sample(index, 0), index)


def _flat(r) -> dict:
    from negscale.config.run_id import flatten

    return flatten(r.model_dump(mode="json"))


@pytest.mark.parametrize(
    "source,m,n,batch,want",
    [
        ("batch", None, 4096, 320, (1024, None)),  # not a pool: version-1 defaults
        ("pool", 100, 4096, 320, (1024, None)),  # exact both ways
        ("pool", 500, 4096, 320, (160, AUTO_BATCH)),  # was exact, now the estimator
        ("pool", 2048, 4096, 320, (1024, AUTO_BATCH)),  # estimator, new mini-batch
        ("pool", 4096, 4096, 320, (1024, None)),  # m = n: the mini-batch is the batch either way
    ],
)
def test_only_runs_the_new_defaults_change_hash_them(source, m, n, batch, want) -> None:
    sets = [*SMALL, f"data.n={n}", f"train.batch_size={batch}", f"negatives.source='{source}'"]
    got = v1_hashed(_flat(load_recipe("quickstart", sets, m=m)))
    assert (got["negatives.pool_exact_max"], got["negatives.pool_batch"]) == want


@pytest.mark.parametrize("m,moved", [(100, False), (160, False), (161, True), (4095, True)])
def test_an_estimator_moves_only_when_its_minibatch_changed(m: int, moved: bool) -> None:
    # exact_max 0: the estimator at every m; up to B // 2 = 160 its mini-batch is the
    # whole pool under both defaults, at m = n the batch under both
    sets = [*SMALL, "data.n=4096", "train.batch_size=320", "negatives.source='pool'"]
    got = v1_hashed(_flat(load_recipe("quickstart", [*sets, "negatives.pool_exact_max=0"], m=m)))
    assert (got["negatives.pool_batch"] == AUTO_BATCH) is moved


def test_given_pool_fields_hash_as_themselves_and_ids_move_only_where_computation_does() -> None:
    given = _pool(20, "negatives.pool_exact_max=1024", "negatives.pool_batch=8")
    assert v1_hashed(_flat(given))["negatives.pool_batch"] == 8
    exact_small = _pool(3)  # exact under both defaults: the same id as version 1's default
    assert exact_small.run_id() == _pool(3, "negatives.pool_exact_max=1024").run_id()
    moved = _pool(20)  # B // 2 < m <= 1024: now the estimator, so a new id
    assert moved.run_id() != _pool(20, "negatives.pool_exact_max=1024").run_id()


@pytest.mark.parametrize(
    "study", ["self-supervised", "quickstart", "quickstart-supervised", "supervised-class-aware"]
)
def test_every_point_of_a_bundled_study_is_one_design(study: str) -> None:
    """Version 2 hashes the pool fields per point (by m and n); the design must not,
    or `negscale fit FOLDER` fits a part of the study (0.2.0 split self-supervised 42 / 21)."""
    from negscale.sweep.plan import GridSpec, make_plan

    plan = make_plan(study, [], GridSpec())
    assert len(plan.recipes) == 63
    assert len({r.design_id() for r in plan.recipes}) == 1
    assert len({r.run_id() for r in plan.recipes}) == 63  # while run_ids stay per point


def test_results_recompute_a_stale_stored_design(tmp_path) -> None:
    """A record written with 0.2.0's split design joins its study when read."""
    from test_results import make_record

    from negscale.results import load, write
    from negscale.sweep.plan import GridSpec, make_plan

    plan = make_plan("self-supervised", [], GridSpec())
    for i, r in enumerate(plan.recipes[:6]):
        text = json.dumps(r.resolved())
        write(make_record(f"r{i}", design=f"stale{i % 2}", recipe=text, m=r.m), tmp_path)
    write(make_record("hand", design="kept", recipe="{}"), tmp_path)  # no recipe to derive from
    designs = load(tmp_path).set_index("run_id")["design"]
    assert set(designs.drop("hand")) == {plan.recipes[0].design_id()}
    assert designs["hand"] == "kept"
