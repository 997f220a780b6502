"""The loop of one run: steps to the end, the progress bar, checkpoint cadence, selection."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Protocol

import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from negscale.config import Recipe
from negscale.evaluator import Evaluator
from negscale.runlog import RunLog
from negscale.runtime import Runtime
from negscale.selection import Selection, is_due


class Trainer(Protocol):
    """What the loop uses of :class:`negscale.train.Trainer` (which imports this module)."""

    recipe: Recipe
    runtime: Runtime
    console: Console
    progress: bool
    step: int
    model: torch.nn.Module
    log: RunLog
    evaluator: Evaluator
    selection: Selection | None

    def train_step(self) -> torch.Tensor: ...

    def save(self, path: Path) -> None: ...


def _bar(trainer: Trainer) -> Progress:
    columns = (
        TextColumn("[bold]train"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    shown = trainer.progress and trainer.runtime.dist.is_main
    return Progress(*columns, console=trainer.console, transient=True, disable=not shown)


def train_to_end(trainer: Trainer, checkpoint: Path | None = None) -> None:
    """Step ``trainer`` to ``train.steps``; checkpoint every K steps (if set) and at the end.

    With ``train.select = "best"`` the validation AUC is offered to the selection
    about 50 times, and the run ends with the selected weights in the model (the
    checkpoint keeps both).
    """
    total, every = trainer.recipe.train.steps, trainer.recipe.train.checkpoint_every
    log, selection = trainer.log, trainer.selection
    with _bar(trainer) as bar:
        task = bar.add_task("train", total=total, completed=trainer.step, loss=float("nan"))
        while trainer.step < total:
            t0 = time.perf_counter()
            trainer.train_step()
            due = checkpoint is not None and every and trainer.step % every == 0
            select = selection is not None and is_due(trainer.step, total)
            if due or select or trainer.step == total:
                log.flush()
            log.train_s += time.perf_counter() - t0  # exact at each flush (a sync)
            if select:
                t0 = time.perf_counter()
                selection.offer(trainer.step, trainer.evaluator.validation_auc(), trainer.model)
                log.select_s += time.perf_counter() - t0
            if not log.pending:
                bar.update(task, completed=trainer.step, loss=log.losses[-1])
            if due:
                trainer.save(checkpoint)
    if checkpoint is not None:
        trainer.save(checkpoint)
    if selection is not None:  # report the selected weights (the checkpoint keeps both)
        selection.restore(trainer.model)
    trainer.evaluator.close()
