"""The paper-scale recipes plan on any machine: ``negscale sweep NAME --dry-run``."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from negscale.cli import app
from negscale.config import validate
from negscale.data import DATASETS
from negscale.errors import NegscaleError


def _needs(dataset: str, **fields: object) -> None:
    """Skip (with the reason) while the data layer lacks this dataset or these fields."""
    if dataset not in DATASETS:
        pytest.skip(f"data.name '{dataset}' is not registered yet (the data layer adds it)")
    try:
        validate({"data": {"name": dataset, **fields}})
    except NegscaleError as exc:
        pytest.skip(f"data.name '{dataset}' does not take {sorted(fields)} yet: {exc}")


def _plan(name: str) -> dict:
    res = CliRunner().invoke(app, ["sweep", name, "--dry-run", "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_paper_fastclip_dfn_plans_15_pool_runs_at_320m_samples_seen() -> None:
    _needs("shards", path="/data/dfn/{00000..01999}.tar")
    plan = _plan("paper-fastclip-dfn")
    runs = plan["runs"]
    assert len(runs) == 15
    ms = {(r["n"], r["m"]) for r in runs}
    for n in (6_000_000, 10_000_000, 14_000_000):
        assert {m for nn, m in ms if nn == n} == {round(f * n) for f in (0.01, 0.1, 0.4, 0.7, 1)}
    from negscale.config import load_recipe

    r = load_recipe("paper-fastclip-dfn")
    assert r.negatives.source == "pool" and r.negatives.loss_form == "paper"
    assert r.negatives.options.exact_max == 0  # the estimator at every ratio
    assert r.train.steps * r.train.batch_size == 320_000_000
    assert r.model.image_encoder == "timm:vit_base_patch16_224" and r.model.text_encoder == "hf"


def test_coco_clip_vitb16_plans_a_grid_over_m() -> None:
    _needs("pairs", format="coco", path="captions.json")
    runs = _plan("coco-clip-vitb16")["runs"]
    assert sorted({r["m"] for r in runs}) == [1, 3, 10, 30, 100, 300, 511]
    assert len(runs) == 21 and {r["n"] for r in runs} == {113_000}
