"""The trainer: one contrastive run from a validated recipe to a run record.

A run has four roles, each in its own module: the **trainer** here (it builds
the model, optimiser, negative source and batches, and takes a step), the
**loop** (:mod:`negscale.loop`: steps to the end, progress, checkpoint cadence,
selection), the **evaluator** (:mod:`negscale.evaluator`: embeddings,
validation AUC, held-out metrics) and the **run log** (:mod:`negscale.runlog`:
losses, curve, divergence, timings). :func:`run` ties them together and
builds the record from the log and the evaluation (:mod:`negscale.run_record`).

Device-agnostic (:mod:`negscale.runtime`). Batches and negative draws come
from per-step generators, so a run is deterministic on CPU for a seed and
resumes exactly from a checkpoint.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from rich.console import Console

from negscale import collapse, distributed, encoders, memory, negatives
from negscale import data as datasets
from negscale.config import Recipe
from negscale.data import loader
from negscale.data.base import PairedData, PairSet
from negscale.encoders.dual import DualEncoder
from negscale.encoders.tuning import describe as describe_towers
from negscale.evaluator import Evaluator
from negscale.feed import BatchFeed, batch_indices
from negscale.flops import encoder_flops_per_item
from negscale.loop import train_to_end
from negscale.negatives import NegativeSource
from negscale.negatives.step import StagedStep
from negscale.optim import build_optimizer, schedule, warmup_cosine
from negscale.results import RunRecord, write, write_history
from negscale.run_record import Outcome, RunFacts, build_record
from negscale.runlog import Diverged, RunLog, history_every
from negscale.runtime import Runtime, resolve_device, resolve_runtime
from negscale.selection import Selection, validation_pairs

Notice = Callable[[str], None]

__all__ = [  # the trainer's public names (some live in the role modules)
    "Diverged",
    "Runtime",
    "Trainer",
    "batch_indices",
    "checkpoint_path",
    "history_every",
    "resolve_device",
    "resolve_runtime",
    "run",
    "warmup_cosine",
]


class Trainer:
    """Builds one run's model, optimiser, negative source and batches, and steps them.

    ``log`` (:class:`RunLog`) keeps the run's books, ``evaluator``
    (:class:`Evaluator`) its evaluations, ``selection`` the best validation
    weights (``train.select = "best"``); :meth:`fit` runs the loop.
    """

    def __init__(
        self,
        recipe: Recipe,
        runtime: Runtime,
        data: PairedData | None = None,
        console: Console | None = None,
        progress: bool = True,
    ) -> None:
        self.recipe, self.runtime = recipe, runtime
        self.console = console or Console(stderr=True)
        self.progress = progress
        self.data = data or datasets.build(recipe.data, recipe.model)
        self.train_split: PairSet = self.data.train.head(recipe.data.n)
        self.workers = loader.default_workers(self.train_split, recipe.data.workers)
        t = recipe.train
        split, workers = self.train_split, self.workers
        self.feed = BatchFeed(split, t.batch_size, t.seed, t.steps, runtime, workers)
        torch.manual_seed(t.seed)
        self.model: DualEncoder = encoders.build(recipe.model, self.data).to(runtime.device)
        distributed.broadcast_parameters(self.model)
        self.step_model = torch.compile(self.model) if runtime.compile else self.model
        self.source: NegativeSource = negatives.build(recipe, self.data)
        self.stepper = StagedStep(self.source, self.model, self.step_model, runtime.device,
                                  runtime.autocast, micro_batch=t.micro_batch)  # fmt: skip
        self.optimizer = build_optimizer(self.model, recipe, fused=runtime.device.type == "cuda")
        self.scheduler = schedule(self.optimizer, recipe)
        self.step = 0
        self.log = RunLog(t.steps, t.lr, t.warmup, runtime.sync_every, self._tau)
        self.flops_per_item: float | None = None  # encoder forward FLOPs of one pair
        self.encoder_flops_per_step = 0.0
        self.init_metrics: dict[str, float | None] | None = None  # step 0: the collapse check
        self.selection: Selection | None = None
        val_split = None
        if t.select == "best":
            val_split = validation_pairs(self.data, recipe.data.n, recipe.data.n_eval)
            self.selection = Selection()
        self.evaluator = Evaluator(self.model, self.data, self.train_split, recipe, runtime,
                                   self.workers, val_split)  # fmt: skip

    def _tau(self) -> float:
        return float(self.model.tau.detach())

    # ------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        return {  # the log's keys at the top level: the checkpoint format of 0.1.0
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "source": self.source.state_dict(),
            "step": self.step,
            **self.log.state_dict(),
            "run_id": self.recipe.run_id(),
            "init_metrics": self.init_metrics,
            "selection": None if self.selection is None else self.selection.state_dict(),
            "flops": (self.flops_per_item, self.encoder_flops_per_step),
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.source.load_state_dict(state["source"])
        self.step = state["step"]
        self.log.load_state_dict(state)
        self.init_metrics = state.get("init_metrics")  # checkpoints before these keys lack them
        # a run resumed at its last step takes no step to count them again
        self.flops_per_item, self.encoder_flops_per_step = state.get("flops", (None, 0.0))
        if self.selection is not None and state.get("selection") is not None:
            self.selection.load_state_dict(state["selection"])

    def save(self, path: Path) -> None:
        """Write the checkpoint atomically; under torchrun only rank 0 writes."""
        if not self.runtime.dist.is_main:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(_own_storage(self.state_dict()), tmp)
        tmp.replace(path)

    # ------------------------------------------------------------ training
    def train_step(self) -> torch.Tensor:
        """One optimiser step; returns the step's loss, still on the device (no host sync).

        The source's stages run in :class:`negscale.negatives.step.StagedStep`
        (plain, gradient-cached with ``train.micro_batch``, and per-rank local
        loss under torchrun); gradients are then averaged over ranks, clipped
        and applied.
        """
        batch = self.feed(self.step)
        self.model.train()
        if self.flops_per_item is None:
            self.flops_per_item = encoder_flops_per_item(
                self.model, batch.x, batch.y, self.runtime.autocast
            )
        self.optimizer.zero_grad(set_to_none=True)
        out = self.stepper(batch, self.step)
        self.encoder_flops_per_step = self.flops_per_item * self.stepper.cost.forwards()
        distributed.average_gradients(list(self.model.parameters()))
        if self.recipe.train.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.recipe.train.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        self.log.add(out.loss, out.negatives_per_anchor, out.scores)
        return out.loss

    def fit(self, checkpoint: Path | None = None) -> None:
        """Train to ``train.steps`` (:func:`negscale.loop.train_to_end`)."""
        train_to_end(self, checkpoint)

    def evaluate(self) -> dict[str, float | None]:
        """The held-out metrics now (:meth:`Evaluator.evaluate`), timed into the log."""
        t0 = time.perf_counter()
        out = self.evaluator.evaluate()
        self.log.eval_s += time.perf_counter() - t0
        return out

    def facts(self) -> RunFacts:
        """What the record needs from the built run besides its log."""
        return RunFacts(
            tau=float(self.model.tau),
            n_eval=len(self.data.eval),
            num_classes=self.data.num_classes,
            negatives_store=self.source.store_size,
            negatives_ids_sha=self.source.ids_sha,
            encoder_flops_per_step=self.encoder_flops_per_step,
            data_skipped=self.data.info.get("skipped"),
        )


def _own_storage(state: object) -> object:
    """``state`` with every tensor that views a larger storage copied out.

    Why: runs stepped together (:mod:`negscale.cohort`) hold their weights and
    moments as views of stacked tensors, and ``torch.save`` writes a view's
    whole storage: every run's checkpoint would hold all the runs.
    """
    if isinstance(state, torch.Tensor):
        own = state.numel() * state.element_size()
        return state.clone() if state.untyped_storage().nbytes() > own else state
    if isinstance(state, dict):
        return {k: _own_storage(v) for k, v in state.items()}
    if isinstance(state, list | tuple):
        return type(state)(_own_storage(v) for v in state)
    return state


def checkpoint_path(results: Path, run_id: str) -> Path:
    return Path(results) / "checkpoints" / f"{run_id}.pt"


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def _resume(trainer: Trainer, ckpt: Path, rebuild: Callable[[], Trainer], say: Notice) -> Trainer:
    """The trainer at its checkpoint's step, or a fresh one when the checkpoint will not load.

    ``load_state_dict`` can fail after copying part of the state (a tensor of
    the wrong shape, a truncated file), so a failure never continues with the
    trainer it was loading into: the run restarts from step 0 on a new one.
    """
    if not ckpt.is_file():
        return trainer
    try:
        trainer.load_state_dict(
            torch.load(ckpt, map_location=trainer.runtime.device, weights_only=False)
        )
    except Exception as exc:  # a broken checkpoint only costs the work it held
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        say(f"warning: ignoring unreadable checkpoint {ckpt} ({reason}); training from step 0")
        return rebuild()
    say(f"resuming run {trainer.recipe.run_id()} from its checkpoint at step "
        f"{trainer.step}/{trainer.recipe.train.steps}")  # fmt: skip
    return trainer


def _what_to_try(recipe: Recipe) -> str:
    """The learning rates a collapsed run trained at, and what to change."""
    towers = describe_towers(recipe.model, recipe.train.lr)
    lrs = f"train.lr {recipe.train.lr:g}" + (f"; {towers}" if towers else "")
    return (
        f" [{lrs}]; try a lower train.lr, a smaller model.*_lr_scale for a pretrained tower, "
        "or model.lock_image / model.lock_text (LiT)"
    )


def _learned(trainer: Trainer, metrics: dict) -> str | None:
    """Why the finished run did not learn (collapse checks), or None."""
    img, txt = trainer.evaluator.embed(trainer.data.eval, collapse.SPREAD_SAMPLE)
    used = trainer.log.negatives_used()
    init = trainer.init_metrics or {}
    return collapse.diagnose(
        spread=collapse.score_spread(img, txt),
        train_loss=trainer.log.train_loss(),
        loss_form=trainer.recipe.negatives.loss_form,
        negatives_per_anchor=used if used is not None else float(trainer.recipe.m),
        auc=metrics.get("auc"),
        auc_init=init.get("auc"),
        n_eval=len(trainer.data.eval),
    )


def open_run(
    recipe: Recipe,
    results: Path,
    runtime: Runtime,
    *,
    data: PairedData | None,
    console: Console | None,
    progress: bool,
    say: Notice,
    resume: bool,
) -> tuple[Trainer, Path]:
    """A built run and its checkpoint path, at its checkpoint's step when resuming."""

    def build() -> Trainer:
        return Trainer(recipe, runtime, data=data, console=console, progress=progress)

    trainer = build()
    data = trainer.data  # a rebuilt trainer reuses it
    towers = describe_towers(recipe.model, recipe.train.lr)
    if towers and runtime.dist.is_main:
        say(towers)
    ckpt = checkpoint_path(results, recipe.run_id())
    if resume:
        trainer = _resume(trainer, ckpt, build, say)
    return trainer, ckpt


def check_run(recipe: Recipe, data: PairedData, device: str | None) -> None:
    """What a run would fail on only after its header: the device the recipe asks for,
    the towers (names, timm architectures, local weight paths)."""
    resolve_device(device or recipe.train.device)
    encoders.check(recipe.model, data)


def evaluate_init(trainer: Trainer) -> None:
    """The step-0 metrics (the collapse check's baseline), once per run: kept in checkpoints."""
    if trainer.runtime.dist.is_main and trainer.step == 0 and trainer.init_metrics is None:
        trainer.init_metrics = trainer.evaluate()


def conclude(trainer: Trainer) -> Outcome:
    """A trained run's outcome: its held-out metrics and whether it learned."""
    status, message, metrics = "ok", None, {}
    if trainer.runtime.dist.is_main:
        metrics = trainer.evaluate()
        message = _learned(trainer, metrics)
        status = "collapsed" if message else "ok"
        if message:
            message += _what_to_try(trainer.recipe)
    return Outcome(status, message, metrics, trainer.init_metrics, trainer.selection)


def diverged(trainer: Trainer, exc: Diverged) -> Outcome:
    return Outcome("diverged", str(exc), {}, trainer.init_metrics, trainer.selection)


def close_run(
    trainer: Trainer, results: Path, outcome: Outcome, wall_s: float, report_to: str | None
) -> RunRecord:
    """Write the run's history and record (rank 0 only) and return the record."""
    recipe, runtime = trainer.recipe, trainer.runtime
    main = runtime.dist.is_main
    if main:  # one record (and history) per run, however many processes trained it
        write_history(trainer.log.history, results, recipe.run_id())
    record = build_record(recipe, runtime, trainer.facts(), trainer.log, outcome, wall_s)
    if main:
        if report_to == "tensorboard":
            from negscale.report_to import write_tensorboard

            write_tensorboard(results, record, trainer.log.history)
        write(record, results)
    distributed.barrier()
    return record


def run(
    recipe: Recipe,
    results: str | Path,
    *,
    device: str | None = None,
    console: Console | None = None,
    progress: bool = True,
    data: PairedData | None = None,
    notice: Notice | None = None,
    resume: bool = True,
    report_to: str | None = None,
) -> RunRecord:
    """Train, evaluate and record one run; resumes from its checkpoint if one exists.

    The model is evaluated at step 0 too (kept in the checkpoint), so a run
    that did not learn is recorded with ``status="collapsed"`` and the reason
    (:mod:`negscale.collapse`), with its metrics. A diverged run is recorded
    with ``status="diverged"`` and no metrics. ``notice`` receives one-line
    messages (resuming, an unreadable checkpoint); default: stderr. With
    ``resume=False`` an existing checkpoint is ignored and overwritten.
    ``report_to="tensorboard"`` also writes the curve and metrics as scalars.
    """
    start = time.perf_counter()
    runtime = resolve_runtime(recipe, device)
    memory.reset_peak(runtime.device)  # this run's peak, not an earlier run's in a sweep
    trainer, ckpt = open_run(recipe, Path(results), runtime, data=data, console=console,
                             progress=progress, say=notice or _stderr, resume=resume)  # fmt: skip
    try:
        evaluate_init(trainer)
        trainer.fit(ckpt)
        outcome = conclude(trainer)
    except Diverged as exc:
        outcome = diverged(trainer, exc)
    return close_run(trainer, Path(results), outcome, time.perf_counter() - start, report_to)
