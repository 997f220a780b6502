"""One run's record, built from what the run logged and what its evaluation measured."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch

from negscale import __version__, memory
from negscale.config import Recipe
from negscale.results import RunRecord
from negscale.runlog import RunLog
from negscale.runtime import Runtime
from negscale.selection import Selection


@dataclass(frozen=True)
class RunFacts:
    """What the record needs from the built run besides its log: the model's final
    temperature, the data's sizes, the source's store and the encoders' cost."""

    tau: float
    n_eval: int
    num_classes: int | None
    negatives_store: int
    negatives_ids_sha: str | None
    encoder_flops_per_step: float
    data_skipped: int | None


@dataclass(frozen=True)
class Outcome:
    """How the run ended and what its evaluations measured."""

    status: str  # ok | diverged | collapsed
    message: str | None
    metrics: dict
    init_metrics: dict | None
    selection: Selection | None


def git_sha() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).parent,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def selected(selection: Selection | None) -> dict[str, float | int | None]:
    """The record's selection columns: null without selection or before its first evaluation."""
    if selection is None or selection.best_step is None:
        return {"selected_step": None, "select_auc": None}
    return {"selected_step": selection.best_step, "select_auc": selection.best_auc}


def _design(r: Recipe, runtime: Runtime, facts: RunFacts) -> dict:
    return dict(
        run_id=r.run_id(),
        study=r.name,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        negscale_version=__version__,
        git_sha=git_sha(),
        torch_version=str(torch.__version__),  # a plain str: unpickling needs no torch
        device=str(runtime.device),
        world_size=runtime.dist.world_size,
        recipe=r.model_dump_json(),
        design=r.design_id(),
        setting=r.setting,
        negatives=r.negatives.source,
        loss_form=r.negatives.loss_form,
        m=r.m,
        n=r.data.n,
        seed=r.train.seed,
        batch_size=r.train.batch_size,
        steps=r.train.steps,
        epochs=r.train.steps * r.train.batch_size / r.data.n,
        tau=facts.tau,
        dataset=r.data.name,
        image_encoder=r.model.image_encoder,
        text_encoder=r.model.text_encoder,
        embed_dim=r.model.embed_dim,
        precision=runtime.precision,
        n_eval=facts.n_eval,
        num_classes=facts.num_classes,
        micro_batch=r.train.micro_batch,
    )


def _cost(r: Recipe, runtime: Runtime, facts: RunFacts, log: RunLog, wall_s: float) -> dict:
    steps = len(log.losses)
    gflops = 3 * 2 * log.scores_per_step * r.model.embed_dim / 1e9
    encoder = facts.encoder_flops_per_step / 1e9
    return dict(
        wall_s=wall_s,
        train_s=log.train_s,
        select_s=log.select_s,
        eval_s=log.eval_s,
        samples_per_s=steps * r.train.batch_size / log.train_s if log.train_s else 0.0,
        peak_mem_mb=memory.peak_mb(runtime.device),
        loss_gflops=gflops,
        encoder_gflops=encoder,
        model_tflops=(encoder + gflops) * steps / log.train_s / 1e3 if log.train_s else None,
    )


def build_record(
    recipe: Recipe, runtime: Runtime, facts: RunFacts, log: RunLog, outcome: Outcome, wall_s: float
) -> RunRecord:
    """The run's one row: design, outcome, step-0 and selection columns, cost, negatives."""
    init = outcome.init_metrics or {}
    return RunRecord(
        **_design(recipe, runtime, facts),
        status=outcome.status,
        **dict(outcome.metrics),
        train_loss=log.train_loss(),
        **_cost(recipe, runtime, facts, log, wall_s),
        negatives_used=(log.negatives_used() or 0.0) if log.losses else 0.0,
        negatives_store=facts.negatives_store,
        negatives_ids_sha=facts.negatives_ids_sha,
        data_skipped=facts.data_skipped,
        message=outcome.message,
        auc_init=init.get("auc"),
        recall_at_1_init=init.get("recall_at_1"),
        val_loss_init=init.get("val_loss"),
        **selected(outcome.selection),
    )
