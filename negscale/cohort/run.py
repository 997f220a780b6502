"""A cohort from recipes to records: each run opened, trained together, concluded, recorded."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from negscale import memory
from negscale.cohort.loop import train_together
from negscale.config import Recipe
from negscale.data.base import PairedData
from negscale.encoders.tiny import MLPTower
from negscale.results import RunRecord
from negscale.run_record import Outcome
from negscale.runlog import Diverged
from negscale.runtime import resolve_runtime
from negscale.train import Trainer, close_run, conclude, diverged, evaluate_init, open_run


def run_together(
    recipes: Sequence[Recipe],
    results: str | Path,
    *,
    device: str | None = None,
    data: PairedData | None = None,
    notice: Callable[[str], None] = print,
    report_to: str | None = None,
) -> list[RunRecord]:
    """Train runs of one design (apart only by seed and m) as one stacked model; their records.

    Each run resumes from its own checkpoint; runs at the same step train
    together, a run alone (or a runtime that compiles or runs in bf16, or towers other than
    the built-in MLP: :func:`negscale.cohort.mlp_towers`) trains as
    :func:`negscale.train.run` would. Each record's ``wall_s`` is the cohort's
    wall time shared equally.
    """
    start, results = time.perf_counter(), Path(results)
    runtime = resolve_runtime(recipes[0], device)
    memory.reset_peak(runtime.device)
    trainers, ckpts = [], []
    for recipe in recipes:
        trainer, ckpt = open_run(recipe, results, runtime, data=data, console=None,
                                 progress=False, say=notice, resume=True)  # fmt: skip
        data = trainer.data
        trainers.append(trainer)
        ckpts.append(ckpt)
    outcomes: dict[int, Outcome] = {}
    _evaluate_inits(trainers)
    at: dict[int, list[int]] = {}
    for i, trainer in enumerate(trainers):
        at.setdefault(trainer.step, []).append(i)
    towers = [tower for t in trainers for tower in (t.model.image_tower, t.model.text_tower)]
    mlps = all(isinstance(tower, MLPTower) for tower in towers)
    for group in at.values():
        if len(group) == 1 or runtime.compile or runtime.precision != "fp32" or not mlps:
            for i in group:
                try:
                    trainers[i].fit(ckpts[i])
                except Diverged as exc:
                    outcomes[i] = diverged(trainers[i], exc)
            continue
        failed = train_together([trainers[i] for i in group], [ckpts[i] for i in group])
        for j, exc in failed.items():
            outcomes[group[j]] = diverged(trainers[group[j]], exc)
    for i, trainer in enumerate(trainers):
        if i not in outcomes:
            outcomes[i] = conclude(trainer)
    wall = (time.perf_counter() - start) / len(trainers)
    return [close_run(t, results, outcomes[i], wall, report_to) for i, t in enumerate(trainers)]


def _evaluate_inits(trainers: Sequence[Trainer]) -> None:
    """Each run's step-0 metrics, evaluated once per distinct starting model.

    The seed alone draws a run's initial weights, so the runs of one seed in a
    stack (every m) start from the same model and score the same step-0
    metrics on the same held-out pairs: a stack of 7 m x 3 seeds evaluates 3
    models, not 21. Weights are compared, not assumed.
    """
    evaluated: list[Trainer] = []
    for trainer in trainers:
        twin = next((t for t in evaluated if _same_start(t, trainer)), None)
        if twin is not None and trainer.step == 0 and trainer.init_metrics is None:
            trainer.init_metrics = dict(twin.init_metrics or {})
            continue
        evaluate_init(trainer)
        if trainer.init_metrics is not None and trainer.step == 0:
            evaluated.append(trainer)


def _same_start(a: Trainer, b: Trainer) -> bool:
    """Same held-out data, evaluation settings and weights (so the same step-0 metrics)."""
    if a.data is not b.data or a.recipe.eval != b.recipe.eval:
        return False
    mine, theirs = a.model.state_dict(), b.model.state_dict()
    return mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
