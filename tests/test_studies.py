"""The bundled studies measure what the theory is about (docs/studies.md).

Read from the recipe files' raw tables, so these checks hold whatever the
negatives schema accepts today.
"""

from __future__ import annotations

import math

import pytest

from negscale import oracle
from negscale.config import DataConfig, read_recipe_file
from negscale.data import build

STUDIES = ("quickstart", "quickstart-supervised", "self-supervised")


def _raw(name: str) -> dict:
    return read_recipe_file(name)[1]


@pytest.mark.parametrize("name", STUDIES)
def test_each_study_has_three_n_over_a_decade_three_seeds_and_the_papers_loss(name: str) -> None:
    raw = _raw(name)
    ns = raw["sweep"]["samples"]
    assert len(ns) >= 3 and math.log10(max(ns) / min(ns)) >= 1
    assert len(raw["sweep"]["seeds"]) >= 3
    assert raw["negatives"]["loss_form"] == "paper"
    # `negscale train <study>` trains a point of the grid, so it is one of the study's runs
    assert raw["data"]["n"] in ns and raw["train"]["batch_size"] <= min(ns)


def test_supervised_and_self_supervised_quickstarts_differ_only_in_how_negatives_are_drawn():
    ssl, sup = _raw("quickstart"), _raw("quickstart-supervised")
    for section in ("data", "train", "sweep", "model"):
        assert ssl.get(section) == sup.get(section), section
    assert ssl.get("eval", {}).get("retrieval", "instance") == "instance"
    assert sup.get("eval", {}).get("retrieval", "instance") == "instance"
    assert (ssl["negatives"]["source"], sup["negatives"]["source"]) == ("batch", "independent")
    assert sup["negatives"]["independent"]["class_aware"] is False  # p- = the marginal (SCRL)
    assert ssl["negatives"]["loss_form"] == sup["negatives"]["loss_form"]


@pytest.mark.parametrize(
    ("name", "epochs"),
    [("quickstart", 40), ("quickstart-supervised", 40), ("supervised-class-aware", 80)],
)
def test_the_quickstart_studies_hold_epochs_fixed_at_every_n(name: str, epochs: int) -> None:
    """Fixed epochs (steps = epochs n / B), not fixed samples seen, and the best validation
    checkpoint; class-level AUC needs 80 (docs/studies.md, Budgets)."""
    raw = _raw(name)
    assert raw["train"]["epochs"] == epochs and "steps" not in raw["train"]
    assert raw["train"]["select"] == "best"
    assert raw["sweep"]["samples"] == [1024, 4096, 16384] and raw["train"]["batch_size"] == 320
    assert raw["sweep"]["negatives"] == [1, 3, 8, 20, 50, 130, 319]  # up to B - 1


def test_class_aware_variant_is_its_own_study_evaluated_class_level() -> None:
    raw = _raw("supervised-class-aware")
    assert raw["negatives"]["source"] == "independent"
    assert raw["negatives"].get("independent", {}).get("class_aware", True) is True
    assert raw["eval"]["retrieval"] == "class"
    assert raw["data"] == _raw("quickstart")["data"]


def test_the_bundled_task_has_overlapping_clusters_and_the_documented_oracle_ceiling() -> None:
    """docs/studies.md quotes E* = 0.975 and oracle recall@1 = 0.125 at n_eval = 1024."""

    def task_of(study: str) -> dict:
        return {k: v for k, v in _raw(study)["data"].items() if k != "n"}

    task = task_of("quickstart")
    assert all(task_of(s) == task for s in STUDIES)  # the same task; n follows each grid
    ref = oracle.oracle_reference(build(DataConfig(**task, n=20)), 0.1)
    assert ref["auc_oracle"] == pytest.approx(0.975, abs=5e-4)
    assert ref["recall_at_1_oracle"] == pytest.approx(0.125, abs=5e-4)
    # clusters overlap: the centres' spread is close to the within-cluster spread
    assert task["cluster_scale"] < 2 * task["cluster_spread"]
