"""Runs that did not learn: the collapse checks against hand values, simulation and real runs."""

from __future__ import annotations

import math
import statistics

import pytest
import torch
import torch.nn.functional as F

from negscale.chance import chance_levels, chance_train_loss
from negscale.collapse import auc_margin, auc_sd_at_chance, diagnose, score_spread
from negscale.config import load_recipe
from negscale.evaluator import Evaluator
from negscale.metrics import evaluate
from negscale.train import Runtime, Trainer, run


def _healthy(**kw):
    base = dict(spread=1.0, train_loss=0.5, loss_form="infonce", negatives_per_anchor=7.0,
                auc=0.9, auc_init=0.6, n_eval=256)  # fmt: skip
    return {**base, **kw}


def test_chance_levels_by_hand() -> None:
    got = chance_levels(200, 4)
    assert got["recall_at_1"] == 1 / 200 and got["recall_at_10"] == 10 / 200
    assert got["mean_rank"] == 100.5 and got["auc"] == 0.5 and got["zeroshot_top1"] == 0.25
    assert got["val_loss"] == pytest.approx(math.log(200))
    assert "zeroshot_top1" not in chance_levels(8, None)
    assert chance_train_loss("infonce", 3) == pytest.approx(math.log(4))
    assert chance_train_loss("paper", 3) == 0.0


def test_constant_embeddings_have_no_spread_and_are_collapsed() -> None:
    img = F.normalize(torch.randn(50, 8), dim=-1)
    txt = F.normalize(torch.ones(50, 8), dim=-1)  # every caption at one point
    brute = max(float(img[i] @ txt[j]) for i in range(50) for j in range(50)) - min(
        float(img[i] @ txt[j]) for i in range(50) for j in range(50)
    )
    assert score_spread(img, txt) == pytest.approx(brute, abs=1e-6)
    one = F.normalize(torch.ones(50, 8), dim=-1)
    assert score_spread(one, txt) < 1e-6
    assert "every held-out score is equal" in diagnose(**_healthy(spread=0.0))


def test_final_loss_at_its_chance_level_is_collapsed() -> None:
    assert "chance level" in diagnose(**_healthy(train_loss=math.log(8)))  # ln(m+1), m = 7
    assert "chance level" in diagnose(**_healthy(train_loss=0.0, loss_form="paper"))
    assert diagnose(**_healthy(train_loss=math.log(8) * 0.95)) is None
    assert diagnose(**_healthy()) is None


def test_no_gain_over_initialisation_is_collapsed_whatever_the_level() -> None:
    margin = auc_margin(256)
    assert margin == pytest.approx(2 / math.sqrt(12 * 256))
    # random towers score 0.6: staying there is not learning, though it is above chance
    assert "no better than at initialisation" in diagnose(**_healthy(auc=0.6, auc_init=0.6))
    assert diagnose(**_healthy(auc=0.6 + margin * 0.9, auc_init=0.6)) is not None
    assert diagnose(**_healthy(auc=0.6 + margin * 1.1, auc_init=0.6)) is None
    assert diagnose(**_healthy(auc_init=None)) is None  # a checkpoint from before the check


def test_chance_auc_sd_matches_a_simulation() -> None:
    """Monte Carlo reference: the AUC of random embeddings over 64 held-out pairs."""
    gen = torch.Generator().manual_seed(0)
    aucs = []
    for _ in range(80):
        img = F.normalize(torch.randn(64, 16, generator=gen), dim=-1)
        txt = F.normalize(torch.randn(64, 16, generator=gen), dim=-1)
        aucs.append(evaluate(img, txt)["auc"])
    assert statistics.mean(aucs) == pytest.approx(0.5, abs=0.02)
    assert statistics.stdev(aucs) == pytest.approx(auc_sd_at_chance(64), rel=0.25)


def test_a_run_at_lr_1e9_is_recorded_collapsed_and_a_healthy_one_ok(
    tmp_path, tiny_overrides
) -> None:
    dead = load_recipe("quickstart", [*tiny_overrides, "train.lr=1e-9"])
    rec = run(dead, tmp_path, progress=False)
    # reference for auc_init: the same model at step 0, evaluated on its own
    fresh = Trainer(dead, Runtime(torch.device("cpu"), "fp32", False), progress=False)
    assert rec.auc_init == pytest.approx(fresh.evaluate()["auc"], abs=1e-12)
    assert rec.status == "collapsed" and "no better than at initialisation" in rec.message
    assert rec.auc == pytest.approx(rec.auc_init, abs=1e-4)  # metrics are kept

    ok = run(load_recipe("quickstart", tiny_overrides), tmp_path, progress=False)
    assert ok.status == "ok" and ok.message is None
    assert ok.auc > ok.auc_init + 10 * auc_margin(256)


def test_a_run_whose_embeddings_collapse_is_recorded_with_that_reason(
    tmp_path, tiny_overrides, monkeypatch
) -> None:
    def one_point(self, split, limit=None):  # every held-out item at the same place
        count = len(split) if limit is None else min(limit, len(split))
        same = F.normalize(torch.ones(count, self.recipe.model.embed_dim), dim=-1)
        return same, same.clone()

    monkeypatch.setattr(Evaluator, "embed", one_point)
    rec = run(load_recipe("quickstart", [*tiny_overrides, "train.steps=5"]), tmp_path,
              progress=False)  # fmt: skip
    assert rec.status == "collapsed" and "every held-out score is equal" in rec.message
