"""The loop of runs stepped together: the one-run loop (:mod:`negscale.loop`) over a stack.

Per step, each run draws its own negatives from its batch (runs of one seed
share the feed: the same batches); the stack embeds all batches in one
forward, takes every run's loss in one call per group of similar widths
(:func:`_segments`, :func:`negscale.cohort.loss.table_loss`), backpropagates
once, clips each run's gradients and steps once. Each run's books (log,
selection, checkpoints) are then kept exactly as the one-run loop keeps them,
and a run that diverges leaves the books (its slot still steps, unread).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.nn.utils.rnn import pad_sequence

from negscale.cohort.loss import table_loss
from negscale.cohort.stacked import StackedRuns
from negscale.feed import BatchFeed
from negscale.flops import encoder_flops_per_item
from negscale.losses import Form
from negscale.metrics import stacked_mean_auc
from negscale.negatives.base import Batch, BatchTable
from negscale.negatives.step import StepCost
from negscale.runlog import Diverged
from negscale.selection import is_due
from negscale.train import Trainer

CALL_COST = 130  # a loss call's fixed cost, in run x column units (quickstart stacks)


def _cost(runs: int, width: int) -> int:
    """One loss call's cost: its fixed part and its runs' padded tables."""
    return CALL_COST + runs * width


def _segments(tables: Sequence[BatchTable], pad: bool = True) -> list[tuple[int, int]]:
    """[start, stop) ranges of consecutive runs scored in one loss call.

    Runs of one width share a call; with ``pad``, neighbouring widths also
    join (the narrower tables padded to the widest), partitioned to the least
    total :func:`_cost` (a call of two runs at width 2 took as long as at
    width 130, 0.6 ms; one at width 320 took 3.4 ms).
    """
    width = [len(t.columns) for t in tables]
    runs: list[tuple[int, int]] = []
    for r, w in enumerate(width):
        if runs and width[runs[-1][0]] == w:
            runs[-1] = (runs[-1][0], r + 1)
        else:
            runs.append((r, r + 1))
    if not pad or len(runs) < 2:
        return runs

    def call(i: int, j: int) -> int:  # one call for the equal-width ranges i .. j - 1
        a, b = runs[i][0], runs[j - 1][1]
        return _cost(b - a, max(width[a:b]))

    # best[j]: least cost of the first j ranges; cut[j]: the range its last call starts at
    best, cut = [0], [0]
    for j in range(1, len(runs) + 1):
        cost, i = min((best[i] + call(i, j), i) for i in range(j))
        best.append(cost)
        cut.append(i)
    out, j = [], len(runs)
    while j:
        i = cut[j]
        out.append((runs[i][0], runs[j - 1][1]))
        j = i
    return out[::-1]


def _loss(img, txt, tables: Sequence[BatchTable], tau: torch.Tensor, form: Form) -> torch.Tensor:
    """(R,) each run's loss: one stacked call per segment, on views of the stack."""
    dev, parts = img.device, []
    pad = not tau.requires_grad  # padded tables take the fused loss
    segments = _segments(tables, pad)
    sizes = [b - a for a, b in segments]  # split, not sliced: one cat in the backward
    pieces = zip(img.split(sizes), txt.split(sizes), tau.split(sizes), segments, strict=True)
    for img_part, txt_part, tau_part, (a, b) in pieces:
        part = tables[a:b]
        columns = pad_sequence([t.columns for t in part], batch_first=True).to(dev)
        drop = torch.stack([t.drop for t in part]).to(dev)
        widths = torch.tensor([len(t.columns) for t in part])
        parts.append(table_loss(img_part, txt_part, columns, drop, tau=tau_part, form=form,
                                widths=widths))  # fmt: skip
    return torch.cat(parts)


def _step(stack: StackedRuns, trainers: Sequence[Trainer]) -> tuple[torch.Tensor, list[BatchTable]]:
    """One optimiser step of every run; (R,) detached losses and each run's table."""
    step = trainers[0].step
    fetched: dict[int, Batch] = {}  # runs of one seed share a feed (_share_feeds)
    for t in trainers:
        if id(t.feed) not in fetched:
            fetched[id(t.feed)] = t.feed(step)
    batches = [fetched[id(t.feed)] for t in trainers]
    tables = []
    for t, batch in zip(trainers, batches, strict=True):
        b = len(batch.index)
        tables.append(t.source.table(t.source.draw(batch, step), b))
        if t.flops_per_item is None:
            t.flops_per_item = encoder_flops_per_item(t.model, batch.x, batch.y, t.runtime.autocast)
            t.encoder_flops_per_step = t.flops_per_item * StepCost(graph=b).forwards()
    x, y = torch.stack([b.x for b in batches]), torch.stack([b.y for b in batches])
    stack.zero_grad()
    with trainers[0].runtime.autocast:
        img, txt = stack.forward(x, y)
        loss = _loss(img, txt, tables, stack.tau(), trainers[0].source.form)
    loss.sum().backward()
    clip = trainers[0].recipe.train.grad_clip
    if clip > 0:
        stack.clip(clip)
    stack.step()
    trainers[0].scheduler.step()  # the stack's rate; the other runs' follow at a save
    for t in trainers:
        t.step += 1
    return loss.detach(), tables


def _follow_lead(trainers: Sequence[Trainer]) -> None:
    """Each run's LR schedule and rate set to the first run's: a stack's runs share one
    schedule (same recipe but the seed and m), so only the first steps its scheduler
    (twenty schedulers stepped a step cost ~2 % of it); a checkpoint gets the others'."""
    lead = trainers[0]
    state = lead.scheduler.state_dict()
    for t in trainers[1:]:
        t.scheduler.load_state_dict(copy.deepcopy(state))
        for group, own in zip(t.optimizer.param_groups, lead.optimizer.param_groups, strict=True):
            group["lr"] = own["lr"]


def _share_feeds(trainers: Sequence[Trainer]) -> None:
    """Runs of one seed (and n) see the same batches, a pure function of (seed, step):
    one feed serves them all, so a stack of 7 m x 3 seeds fetches 3 batches a step."""
    feeds: dict[tuple, BatchFeed] = {}
    for t in trainers:
        f = t.feed  # its pairs are the first n of the trainer's data, a fresh view each
        key = (id(t.data), len(f.pairs), f.batch, f.seed, f.steps, f.workers, id(f.runtime))
        t.feed = feeds.setdefault(key, f)


def _validation_aucs(stack: StackedRuns, live: dict[int, Trainer]) -> dict[int, float]:
    """Each live run's validation AUC; one stacked embedding pass when they share the pairs."""
    runs = list(live.values())
    pairs = runs[0].evaluator.validation_split()
    if any(t.evaluator.validation_split() is not pairs for t in runs):
        return {r: t.evaluator.validation_auc() for r, t in live.items()}
    imgs, txts, dev = [], [], runs[0].runtime.device
    with runs[0].runtime.autocast:
        for x, y in runs[0].evaluator.validation_inputs():
            img, txt = stack.embed(x.to(dev), y.to(dev))
            imgs.append(img.float().cpu())
            txts.append(txt.float().cpu())
    img, txt = torch.cat(imgs, dim=1), torch.cat(txts, dim=1)
    rows = list(live)
    if runs[0].recipe.eval.retrieval != "class":  # instance retrieval: all runs at once
        aucs = stacked_mean_auc(img[rows], txt[rows])
        if aucs is not None:
            return dict(zip(rows, aucs, strict=True))
    return {r: t.evaluator.validation_score(img[r], txt[r]) for r, t in live.items()}


def train_together(trainers: Sequence[Trainer], checkpoints: Sequence[Path]) -> dict[int, Diverged]:
    """Step runs at the same step to ``train.steps``; the ones that diverged, by position.

    Checkpoints, selection and the final restore are each run's own, at the
    steps the one-run loop takes them; a batched step's time is shared equally
    among the runs still training.
    """
    stack = StackedRuns(trainers)
    _share_feeds(trainers)
    first = trainers[0]
    total, every = first.recipe.train.steps, first.recipe.train.checkpoint_every
    live = dict(enumerate(trainers))
    failed: dict[int, Diverged] = {}
    while first.step < total and live:
        t0 = time.perf_counter()
        losses, tables = _step(stack, trainers)
        share = (time.perf_counter() - t0) / len(live)
        step = first.step
        due = bool(every) and step % every == 0
        select = first.selection is not None and is_due(step, total)
        aucs, select_share, synced = {}, 0.0, False
        if select:
            t0 = time.perf_counter()
            aucs = _validation_aucs(stack, live)
            select_share = (time.perf_counter() - t0) / len(live)
        # one host copy a step on CPU, not one per run (views stay on a GPU: no sync)
        values = losses.tolist() if losses.device.type == "cpu" else losses.unbind()
        for r, t in list(live.items()):
            try:
                t.log.add(values[r], tables[r].negatives_per_anchor, tables[r].scores)
                if due or select or step == total:
                    t.log.flush()
            except Diverged as exc:
                failed[r] = exc
                del live[r]
                continue
            t.log.train_s += share
            if select and t.selection is not None:
                t0 = time.perf_counter()
                t.selection.offer(step, aucs[r], t.model)
                t.log.select_s += time.perf_counter() - t0 + select_share
            if due:
                if not synced:
                    _follow_lead(trainers)
                    synced = True
                t.save(checkpoints[r])
    _follow_lead(trainers)
    for r, t in live.items():
        t.save(checkpoints[r])
        if t.selection is not None:
            t.selection.restore(t.model)
        t.evaluator.close()
    return failed
