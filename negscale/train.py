"""The trainer: one contrastive run from a validated recipe to a run record.

Device-agnostic: ``auto`` takes CUDA when present. The CUDA fast paths (bf16
autocast, TF32, fused AdamW, torch.compile) are switches that default on only
on GPU; on CPU the same code runs in fp32 (bf16 autocast still works there when
asked for). Batches and negative draws come from per-step generators, so a run
is deterministic on CPU for a seed and resumes exactly from a checkpoint.
"""

from __future__ import annotations

import functools
import math
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch.utils.data import DataLoader

from negscale import __version__, collapse, distributed, encoders, memory, negatives, oracle
from negscale import data as datasets
from negscale.data import loader
from negscale.data.base import PairedData, PairSet
from negscale.encoders.dual import DualEncoder
from negscale.encoders.tuning import describe as describe_towers
from negscale.errors import NegscaleError
from negscale.flops import encoder_flops_per_item
from negscale.losses import contrastive_loss
from negscale.metrics import evaluate, mean_auc
from negscale.negatives import Batch, NegativeSource, step_generator
from negscale.negatives.step import StagedStep
from negscale.recipe import Recipe
from negscale.results import RunRecord, write, write_history
from negscale.selection import Selection, is_due, validation_pairs

Notice = Callable[[str], None]

_BATCH_STREAM = 1


class Diverged(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass
class Runtime:
    """Resolved execution choices for this machine (and this rank under torchrun)."""

    device: torch.device
    precision: str  # fp32 | bf16
    compile: bool
    dist: distributed.DistInfo = field(default_factory=distributed.DistInfo)
    loss_sync: int | None = None  # None: every step on CPU, every 16 on GPU

    @property
    def sync_every(self) -> int:
        """Steps between host syncs for the loss: every step is free on CPU, costly on GPU."""
        if self.loss_sync is not None:
            return self.loss_sync
        return 1 if self.device.type == "cpu" else 16

    @property
    def autocast(self) -> torch.autocast:
        return torch.autocast(
            self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"
        )


def resolve_device(want: str) -> torch.device:
    """``auto`` takes CUDA when present; asking for CUDA without it is a user error."""
    if want == "cuda" and not torch.cuda.is_available():
        raise NegscaleError("--device cuda: CUDA is not available on this machine")
    on_gpu = want == "cuda" or (want == "auto" and torch.cuda.is_available())
    return torch.device("cuda" if on_gpu else "cpu")


def resolve_runtime(recipe: Recipe, device: str | None = None) -> Runtime:
    """Device, precision and compile choices; joins torchrun's process group if launched so."""
    dev = resolve_device(device or recipe.train.device)
    info = distributed.init(dev.type)
    if info.enabled:
        if recipe.train.batch_size % info.world_size:
            raise NegscaleError(
                f"train.batch_size: the global batch {recipe.train.batch_size} must divide "
                f"evenly over {info.world_size} processes"
            )
        if dev.type == "cuda":
            dev = torch.device("cuda", info.local_rank)
    on_gpu = dev.type == "cuda"
    precision = recipe.train.precision
    if precision == "auto":
        precision = "bf16" if on_gpu else "fp32"
    compile_ = recipe.train.compile == "on" or (recipe.train.compile == "auto" and on_gpu)
    if on_gpu:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return Runtime(dev, precision, compile_, info)


def warmup_cosine(step: int, total: int, warmup_frac: float) -> float:
    """LR multiplier: linear warmup, then cosine decay to zero."""
    warm = max(1, round(warmup_frac * total))
    if step < warm:
        return (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


HISTORY_POINTS = 100  # rows of a run's training curve (runs/<run_id>.history.parquet)


def history_every(steps: int) -> int:
    """Steps between training-curve rows: about HISTORY_POINTS rows whatever the run length."""
    return max(1, math.ceil(steps / HISTORY_POINTS))


@functools.lru_cache(maxsize=2)
def _epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """One epoch's seeded permutation of the n items: drawn once, cut into n // B batches.

    Why cached: a fresh randperm(n) every step cost 170 us at n = 16,384 (about
    5 % of a quickstart step); the order is a pure function of (n, seed, epoch).
    """
    return torch.randperm(n, generator=step_generator(seed, epoch, _BATCH_STREAM))


def batch_indices(n: int, batch: int, seed: int, step: int) -> torch.Tensor:
    """Indices of step ``step``: epochs are seeded permutations, cut into full batches."""
    per_epoch = n // batch
    epoch, pos = divmod(step, per_epoch)
    return _epoch_order(n, seed, epoch)[pos * batch : (pos + 1) * batch].clone()


def _optimizer(model: torch.nn.Module, recipe: Recipe, fused: bool) -> torch.optim.Optimizer:
    """AdamW, weight decay on matrices only; on CPU built and stepped without torch._dynamo.

    ``Optimizer.add_param_group`` and ``AdamW.step`` import ``torch._dynamo``
    (1-2 s of start-up) only to opt themselves out of compilation. An eager
    CPU optimiser never meets the compiler, so there the undecorated functions
    run: the same single-tensor AdamW maths (torch's CPU default), step under
    no_grad as torch's own wrapper does. Fused (CUDA) optimisers are built as usual.
    """
    import inspect
    import types

    from negscale.encoders.tuning import param_groups

    groups = param_groups(model, recipe.model, recipe.train.lr, recipe.train.weight_decay)
    if fused:
        return torch.optim.AdamW(groups, lr=recipe.train.lr, fused=True)
    add = getattr(torch.optim.Optimizer.add_param_group, "__wrapped__", None)
    if add is None or "torch._dynamo" in sys.modules:  # nothing to save, or another torch
        return torch.optim.AdamW(groups, lr=recipe.train.lr, foreach=False, fused=False)
    add.__dynamo_disable = add  # torch's lazy cache of the dynamo-disabled function
    try:
        opt = torch.optim.AdamW(groups, lr=recipe.train.lr, foreach=False, fused=False)
    finally:
        del add.__dynamo_disable
    raw_step = inspect.unwrap(torch.optim.AdamW.step)

    def step(self: torch.optim.Optimizer, closure: object = None) -> object:
        with torch.no_grad():
            return raw_step(self, closure)

    opt.step = types.MethodType(step, opt)  # type: ignore[method-assign]
    for name in ("zero_grad", "state_dict", "load_state_dict"):
        raw = inspect.unwrap(getattr(torch.optim.Optimizer, name))
        setattr(opt, name, types.MethodType(raw, opt))
    return opt


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


class Trainer:
    """Owns model, optimiser, negative source and the loop for one recipe."""

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
        self._batches: Iterator | None = None  # the DataLoader's iterator, and its next step
        self._next_step = -1
        torch.manual_seed(recipe.train.seed)
        self.model: DualEncoder = encoders.build(recipe.model, self.data).to(runtime.device)
        distributed.broadcast_parameters(self.model)
        self.step_model = torch.compile(self.model) if runtime.compile else self.model
        self.source: NegativeSource = negatives.build(recipe, self.data)
        self.stepper = StagedStep(
            self.source,
            self.model,
            self.step_model,
            runtime.device,
            runtime.autocast,
            micro_batch=recipe.train.micro_batch,
        )
        fused = runtime.device.type == "cuda"
        self.optimizer = _optimizer(self.model, recipe, fused)
        total, warm = recipe.train.steps, recipe.train.warmup
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: warmup_cosine(s, total, warm)
        )
        self.step = 0
        self.losses: list[float] = []
        self._pending: list[torch.Tensor] = []  # step losses still on the device
        self.negatives_seen: list[float] = []
        self.scores_per_step = 0
        self.flops_per_item: float | None = None  # encoder forward FLOPs of one pair
        self.encoder_flops_per_step = 0.0
        self.train_s = 0.0
        self.select_s = 0.0  # selection's validation evaluations (train.select = "best")
        self.eval_s = 0.0  # the held-out evaluations at step 0 and at the end
        # house: step-0 metrics (the collapse check) and the training curve, both checkpointed
        self.init_metrics: dict[str, float | None] | None = None
        self.history: list[dict[str, float]] = []
        # train.select = "best": validation pairs and the best weights seen on them
        self.selection: Selection | None = None
        self.val_split: PairSet | None = None
        if recipe.train.select == "best":
            self.val_split = validation_pairs(self.data, recipe.data.n, recipe.data.n_eval)
            self.selection = Selection()
        self._val_loader: DataLoader | None = None  # built at the first validation

    # ------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        self.flush()
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "source": self.source.state_dict(),
            "step": self.step,
            "losses": self.losses,
            "negatives_seen": self.negatives_seen,
            "train_s": self.train_s,
            "select_s": self.select_s,
            "eval_s": self.eval_s,
            "run_id": self.recipe.run_id(),
            "init_metrics": self.init_metrics,
            "history": self.history,
            "selection": None if self.selection is None else self.selection.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.source.load_state_dict(state["source"])
        self.step, self.losses = state["step"], list(state["losses"])
        self.negatives_seen = list(state["negatives_seen"])
        self.train_s = state["train_s"]
        self.select_s = state.get("select_s", 0.0)  # older checkpoints lack the two
        self.eval_s = state.get("eval_s", 0.0)
        self.init_metrics = state.get("init_metrics")  # checkpoints before these keys lack them
        self.history = list(state.get("history", []))
        if self.selection is not None and state.get("selection") is not None:
            self.selection.load_state_dict(state["selection"])

    def save(self, path: Path) -> None:
        """Write the checkpoint atomically; under torchrun only rank 0 writes."""
        if not self.runtime.dist.is_main:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(self.state_dict(), tmp)
        tmp.replace(path)

    # ------------------------------------------------------------ training
    def _batch(self, step: int) -> Batch:
        """The global batch's indices and labels, with this process's slice of the inputs.

        Batches come from a DataLoader started at ``step`` (at the checkpoint's
        step on resume); asking for any other step than the next restarts it there.
        """
        if self._batches is None or step != self._next_step:
            self._batches = self._loader(step)
        index, x, y = next(self._batches)
        self._next_step = step + 1
        split, dev = self.train_split, self.runtime.device
        labels = None if split.labels is None else split.labels[index]  # host: sources index it
        pin = dev.type == "cuda"
        return Batch(index, x.to(dev, non_blocking=pin), y.to(dev, non_blocking=pin), labels)

    def _loader(self, start: int) -> Iterator:
        r, info = self.recipe, self.runtime.dist
        n, size, seed = len(self.train_split), r.train.batch_size, r.train.seed
        sampler = loader.StepSampler(
            lambda s: batch_indices(n, size, seed, s),
            start,
            max(r.train.steps, start + 1),
            rank=info.rank if info.enabled else 0,
            world=info.world_size if info.enabled else 1,
        )
        pin = self.runtime.device.type == "cuda"
        return loader.batches(self.train_split, sampler, seed=seed, workers=self.workers, pin=pin)

    def train_step(self) -> torch.Tensor:
        """One optimiser step; returns the step's loss, still on the device (no host sync).

        The source's stages run in :class:`negscale.negatives.step.StagedStep`
        (plain, gradient-cached with ``train.micro_batch``, and per-rank local
        loss under torchrun); gradients are then averaged over ranks, clipped
        and applied.
        """
        batch = self._batch(self.step)
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
        self._pending.append(out.loss)
        self.negatives_seen.append(out.negatives_per_anchor)
        self.scores_per_step = out.scores
        if len(self._pending) >= self.runtime.sync_every:
            self.flush()
        return out.loss

    def flush(self) -> None:
        """Bring pending step losses to the host in one sync; stop at the first non-finite one.

        A diverged step has already updated the weights, which is moot: the run
        stops here and is recorded as diverged.
        """
        if not self._pending:
            return
        values = torch.stack(self._pending).float().cpu().tolist()
        first = self.step - len(values)
        self._pending.clear()
        for i, value in enumerate(values):
            if not math.isfinite(value):
                raise Diverged(f"loss became {value} at step {first + i}")
            self.losses.append(value)
            self._log_history(first + i + 1)

    def _log_history(self, step: int) -> None:
        """A training-curve row every :func:`history_every` steps and at the last one.

        ``loss`` is the mean step loss since the previous row; ``lr`` the rate
        the scheduler used for that step; ``tau`` the temperature now.
        """
        total = self.recipe.train.steps
        if step % history_every(total) and step != total:
            return
        last = int(self.history[-1]["step"]) if self.history else 0
        window = self.losses[last:step]
        lr = self.recipe.train.lr * warmup_cosine(step - 1, total, self.recipe.train.warmup)
        self.history.append(
            {
                "step": step,
                "loss": sum(window) / len(window),
                "lr": lr,
                "tau": float(self.model.tau.detach()),
            }
        )

    def fit(self, checkpoint: Path | None = None) -> None:
        """Train to ``train.steps``; checkpoint every K steps (if set) and at the end."""
        total, every = self.recipe.train.steps, self.recipe.train.checkpoint_every
        columns = (
            TextColumn("[bold]train"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TextColumn("loss {task.fields[loss]:.4f}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(
            *columns,
            console=self.console,
            transient=True,
            disable=not (self.progress and self.runtime.dist.is_main),
        ) as bar:
            task = bar.add_task("train", total=total, completed=self.step, loss=float("nan"))
            while self.step < total:
                t0 = time.perf_counter()
                self.train_step()
                due = checkpoint is not None and every and self.step % every == 0
                select = self.selection is not None and is_due(self.step, total)
                if due or select or self.step == total:
                    self.flush()
                self.train_s += time.perf_counter() - t0  # exact at each flush (a sync)
                if select:
                    t0 = time.perf_counter()
                    self.selection.offer(self.step, self.validation_auc(), self.model)
                    self.select_s += time.perf_counter() - t0
                if not self._pending:
                    bar.update(task, completed=self.step, loss=self.losses[-1])
                if due:
                    self.save(checkpoint)
        if checkpoint is not None:
            self.save(checkpoint)
        if self.selection is not None:  # report the selected weights (the checkpoint keeps both)
            self.selection.restore(self.model)
        self._val_loader = None  # no more validations: its persistent workers end here

    # ------------------------------------------------------------ evaluation
    @torch.no_grad()
    def embed(self, split: PairSet, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(image, text) embeddings of the first ``limit`` items of ``split`` (all), on the CPU."""
        count = len(split) if limit is None else min(limit, len(split))
        pin = self.runtime.device.type == "cuda"
        size, workers = self.recipe.eval.batch_size, self.workers
        rows = loader.chunk_loader(split, range(count), size, workers=workers, pin=pin)
        return self._embed(loader.chunks(rows))

    @torch.no_grad()
    def _embed(
        self, inputs: Iterable[tuple[torch.Tensor, torch.Tensor]]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        self.model.eval()
        imgs, txts = [], []
        dev = self.runtime.device
        pin = dev.type == "cuda"
        for x, y in inputs:
            with self.runtime.autocast:
                img, txt = self.model(x.to(dev, non_blocking=pin), y.to(dev, non_blocking=pin))
            imgs.append(img.float().cpu())
            txts.append(txt.float().cpu())
        return torch.cat(imgs), torch.cat(txts)

    @torch.no_grad()
    def embed_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """Text embeddings of ``tokens`` (e.g. the class prompts), in eval batches."""
        self.model.eval()
        dev, size = self.runtime.device, self.recipe.eval.batch_size
        out = []
        for part in tokens.split(size):
            with self.runtime.autocast:
                out.append(self.model.encode_text(part.to(dev)).float().cpu())
        return torch.cat(out)

    @torch.no_grad()
    def validation_auc(self) -> float:
        """AUC on the validation pairs, at the recipe's retrieval level (what selection ranks).

        Under torchrun each rank embeds only its share of the pairs and the
        shares are gathered, so every rank scores the same embeddings, gets
        the same AUC and keeps the same weights. The pairs' loader is kept for
        the whole run (its workers persist between the ~50 evaluations).
        """
        if self.val_split is None:
            raise RuntimeError('validation pairs exist only with train.select = "best"')
        total, info = len(self.val_split), self.runtime.dist
        world, rank = (info.world_size, info.rank) if total >= info.world_size else (1, 0)
        if self._val_loader is None:
            self._val_loader = loader.chunk_loader(
                self.val_split,
                distributed.share(total, world, rank),
                self.recipe.eval.batch_size,
                workers=self.workers,
                pin=self.runtime.device.type == "cuda",
                persistent=True,
            )
        img, txt = self._embed(loader.chunks(self._val_loader))
        img = distributed.gather_shares(img, total, world, self.runtime.device)
        txt = distributed.gather_shares(txt, total, world, self.runtime.device)
        labels = self.val_split.labels
        class_level = self.recipe.eval.retrieval == "class"
        return mean_auc(img, txt, labels, class_level=class_level)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float | None]:
        """Held-out retrieval metrics, zero-shot top-1, fixed-protocol val losses, ground truth.

        ``val_loss`` (symmetric InfoNCE) and ``val_loss_paper`` (the paper's
        form) score every held-out pair against all other held-out items at the
        model's tau: their chance level depends only on the evaluation size,
        never on the m the run trained with (docs/fitting.md). Both use the
        tiled LSE above ``negatives.tile`` columns, never a dense n_eval^2
        matrix. Retrieval is instance-level unless ``eval.retrieval = "class"``.
        With an oracle (synthetic vectors) and instance-level retrieval, the
        oracle columns of :mod:`negscale.oracle` are filled in; else null.
        """
        t0 = time.perf_counter()
        img, txt = self.embed(self.data.eval)
        proto = None
        labels = self.data.eval.labels
        if self.data.prompts is not None:  # class prompts: the exact template ensemble
            proto = (self.embed_text(self.data.prompts[0]), self.data.prompts[1])
        elif self.train_split.labels is not None:
            limit = self.recipe.eval.prototypes
            _, proto_txt = self.embed(self.train_split, limit)
            proto = (proto_txt, self.train_split.labels[: len(proto_txt)])
        class_level = self.recipe.eval.retrieval == "class"
        if class_level and labels is None:
            raise NegscaleError("eval.retrieval: 'class' needs labelled evaluation data")
        out = evaluate(img, txt, labels, proto, class_level=class_level)
        tau, tile = float(self.model.tau), self.recipe.negatives.tile
        for key, form in (("val_loss", "infonce"), ("val_loss_paper", "paper")):
            out[key] = float(contrastive_loss(img, txt, tau=tau, form=form, tile=tile))
        reference = None if class_level else oracle.oracle_reference(self.data, tau)
        out.update(oracle.ground_truth(reference, out["auc"], out["val_loss_paper"], tau))
        self.eval_s += time.perf_counter() - t0
        return out


def _record(
    recipe: Recipe,
    trainer: Trainer,
    runtime: Runtime,
    status: str,
    metrics: dict,
    wall_s: float,
    message: str | None,
) -> RunRecord:
    r, steps = recipe, len(trainer.losses)
    tail = trainer.losses[-max(1, steps // 10) :] if steps else []
    used = sum(trainer.negatives_seen) / len(trainer.negatives_seen) if steps else 0.0
    gflops = 3 * 2 * trainer.scores_per_step * r.model.embed_dim / 1e9
    return RunRecord(
        run_id=r.run_id(),
        study=r.name,
        status=status,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        negscale_version=__version__,
        git_sha=git_sha(),
        torch_version=torch.__version__,
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
        tau=float(trainer.model.tau),
        dataset=r.data.name,
        image_encoder=r.model.image_encoder,
        text_encoder=r.model.text_encoder,
        embed_dim=r.model.embed_dim,
        precision=runtime.precision,
        n_eval=len(trainer.data.eval),
        num_classes=trainer.data.num_classes,
        **{k: v for k, v in metrics.items()},
        train_loss=sum(tail) / len(tail) if tail else None,
        wall_s=wall_s,
        train_s=trainer.train_s,
        select_s=trainer.select_s,
        eval_s=trainer.eval_s,
        samples_per_s=steps * r.train.batch_size / trainer.train_s if trainer.train_s else 0.0,
        peak_mem_mb=memory.peak_mb(runtime.device),
        loss_gflops=gflops,
        negatives_used=used,
        negatives_store=trainer.source.store_size,
        negatives_ids_sha=trainer.source.ids_sha,
        micro_batch=r.train.micro_batch,
        encoder_gflops=trainer.encoder_flops_per_step / 1e9,
        model_tflops=(
            (trainer.encoder_flops_per_step / 1e9 + gflops) * steps / trainer.train_s / 1e3
            if trainer.train_s
            else None
        ),
        data_skipped=trainer.data.info.get("skipped"),
        message=message,
        auc_init=(trainer.init_metrics or {}).get("auc"),
        recall_at_1_init=(trainer.init_metrics or {}).get("recall_at_1"),
        val_loss_init=(trainer.init_metrics or {}).get("val_loss"),
        **_selected(trainer.selection),
    )


def _selected(selection: Selection | None) -> dict[str, float | int | None]:
    """The record's selection columns: null without selection or before its first evaluation."""
    if selection is None or selection.best_step is None:
        return {"selected_step": None, "select_auc": None}
    return {"selected_step": selection.best_step, "select_auc": selection.best_auc}


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
    img, txt = trainer.embed(trainer.data.eval, collapse.SPREAD_SAMPLE)
    used = trainer.negatives_seen
    tail = trainer.losses[-max(1, len(trainer.losses) // 10) :]
    init = trainer.init_metrics or {}
    return collapse.diagnose(
        spread=collapse.score_spread(img, txt),
        train_loss=sum(tail) / len(tail) if tail else None,
        loss_form=trainer.recipe.negatives.loss_form,
        negatives_per_anchor=sum(used) / len(used) if used else float(trainer.recipe.m),
        auc=metrics.get("auc"),
        auc_init=init.get("auc"),
        n_eval=len(trainer.data.eval),
    )


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
    say = notice or _stderr
    runtime = resolve_runtime(recipe, device)
    memory.reset_peak(runtime.device)  # this run's peak, not an earlier run's in a sweep

    def build() -> Trainer:
        return Trainer(recipe, runtime, data=data, console=console, progress=progress)

    trainer = build()
    data = trainer.data  # a rebuilt trainer reuses it
    towers = describe_towers(recipe.model, recipe.train.lr)
    if towers and runtime.dist.is_main:
        say(towers)
    ckpt = checkpoint_path(Path(results), recipe.run_id())
    if resume:
        trainer = _resume(trainer, ckpt, build, say)
    main = runtime.dist.is_main
    status, message, metrics = "ok", None, {}
    try:
        if main and trainer.step == 0 and trainer.init_metrics is None:
            trainer.init_metrics = trainer.evaluate()
        trainer.fit(ckpt)
        if main:
            metrics = trainer.evaluate()
            message = _learned(trainer, metrics)
            status = "collapsed" if message else "ok"
            if message:
                message += _what_to_try(recipe)
    except Diverged as exc:
        status, message = "diverged", str(exc)
    if main:  # one record (and history) per run, however many processes trained it
        write_history(trainer.history, results, recipe.run_id())
    record = _record(
        recipe, trainer, runtime, status, metrics, time.perf_counter() - start, message
    )
    if main:
        if report_to == "tensorboard":
            from negscale.report_to import write_tensorboard

            write_tensorboard(results, record, trainer.history)
        write(record, results)
    distributed.barrier()
    return record
