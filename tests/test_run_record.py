"""The record is built from the run's log and its evaluation: columns against hand values."""

from __future__ import annotations

import math

import pytest
import torch

from negscale.config import load_recipe
from negscale.run_record import Outcome, RunFacts, build_record
from negscale.runlog import Diverged, RunLog
from negscale.runtime import Runtime
from negscale.selection import Selection

FACTS = RunFacts(tau=0.2, n_eval=100, num_classes=16, negatives_store=0,
                 negatives_ids_sha=None, encoder_flops_per_step=4e9, data_skipped=None)  # fmt: skip


def _log(losses: list[float], negatives: list[float], scores: int) -> RunLog:
    log = RunLog(steps=len(losses), lr=1e-3, warmup=0.1, sync_every=3, tau=lambda: 0.2)
    for value, m in zip(losses, negatives, strict=True):
        log.add(torch.tensor(value), m, scores)
    log.flush()
    return log


def test_record_columns_come_from_the_log_and_the_evaluation(tiny_overrides) -> None:
    recipe = load_recipe("quickstart", [*tiny_overrides, "train.steps=20"], m=8)
    losses = [float(20 - i) for i in range(20)]  # last tenth: steps 19, 20 -> losses 2, 1
    log = _log(losses, [8.0] * 19 + [6.0], scores=640)
    log.train_s, log.select_s, log.eval_s = 2.0, 0.5, 0.25
    best = Selection(best_auc=0.9, best_step=12)
    outcome = Outcome("ok", None, {"auc": 0.8}, {"auc": 0.55}, best)
    runtime = Runtime(torch.device("cpu"), "fp32", False)
    rec = build_record(recipe, runtime, FACTS, log, outcome, wall_s=3.0)
    assert rec.train_loss == pytest.approx(1.5)
    assert rec.negatives_used == pytest.approx((19 * 8 + 6) / 20)
    batch = recipe.train.batch_size
    assert rec.samples_per_s == pytest.approx(20 * batch / 2.0)
    loss_gflops = 3 * 2 * 640 * recipe.model.embed_dim / 1e9  # fwd + bwd of the score tables
    assert rec.loss_gflops == pytest.approx(loss_gflops)
    assert rec.model_tflops == pytest.approx((4.0 + loss_gflops) * 20 / 2.0 / 1e3)
    assert (rec.auc, rec.auc_init, rec.selected_step, rec.select_auc) == (0.8, 0.55, 12, 0.9)
    assert (rec.wall_s, rec.train_s, rec.select_s, rec.eval_s) == (3.0, 2.0, 0.5, 0.25)
    assert (rec.m, rec.steps, rec.tau, rec.n_eval) == (8, 20, 0.2, 100)


def test_the_log_stops_at_the_first_non_finite_loss_and_keeps_the_curve_rows() -> None:
    log = RunLog(steps=300, lr=1.0, warmup=0.0, sync_every=4, tau=lambda: 0.5)
    for i in range(6):
        log.add(torch.tensor(float(i)), 1.0, 10)  # synced after steps 4 (and 8)
    assert log.losses == [0.0, 1.0, 2.0, 3.0] and len(log.pending) == 2
    assert [row["step"] for row in log.history] == [3]  # every ceil(300 / 100) = 3 steps
    assert log.history[0]["loss"] == pytest.approx(1.0)  # mean of steps 1..3
    log.add(torch.tensor(math.nan), 1.0, 10)
    with pytest.raises(Diverged, match="at step 6"):
        log.add(torch.tensor(7.0), 1.0, 10)
    assert log.losses == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
