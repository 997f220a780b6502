"""Batches through a ``torch.utils.data.DataLoader``, in the trainer's fixed order.

Why a sampler of whole batches: the order of a run is ``order(step)`` (seeded
epochs cut into batches), so a batch is a function of the step alone. The
sampler yields one step's ids at a time and a worker fetches the whole batch
with ``PairSet.fetch``; random transforms inside a fetch are seeded by
(seed, step), never by the worker, so 0, 1 or 8 workers give the same batches,
and a resumed run continues at the step its checkpoint holds. Under torchrun
each rank fetches only its slice of the global batch, while ``Batch.index``
keeps the global ids every rank scores.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_convert

from negscale.data.base import PairSet
from negscale.errors import NegscaleError

Order = Callable[[int], torch.Tensor]  # step -> the global batch's ids


@dataclass(frozen=True)
class Slice:
    """One loader item: a step's global ids and the part this process fetches."""

    step: int
    index: torch.Tensor
    mine: torch.Tensor


class StepSampler(Sampler[Slice]):
    """Steps ``start..stop-1`` of ``order``; rank ``rank`` of ``world`` takes its chunk."""

    def __init__(self, order: Order, start: int, stop: int, rank: int = 0, world: int = 1):
        self.order, self.start, self.stop = order, start, stop
        self.rank, self.world = rank, world

    def __iter__(self) -> Iterator[Slice]:
        for step in range(self.start, self.stop):
            idx = self.order(step)
            mine = idx.chunk(self.world)[self.rank] if self.world > 1 else idx
            yield Slice(step, idx, mine)

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


def step_seed(seed: int, step: int) -> int:
    """A 63-bit seed for the random transforms of one step's fetch."""
    return int(np.random.SeedSequence([seed, 7, step + 1]).generate_state(2, np.uint64)[0] >> 1)


@contextmanager
def seeded(seed: int):
    """Seed torch's and Python's global RNGs inside, restore them after.

    Transform libraries (timm, torchvision) draw from these globals; restoring
    them keeps the main process's streams the same however many workers run.
    """
    state = random.getstate()
    with torch.random.fork_rng(devices=[]):
        # the CPU generator only: torch.manual_seed would also queue a lazy CUDA
        # seeding that records a stack trace on every call (0.5 s per 300 steps)
        torch.random.default_generator.manual_seed(seed)
        random.seed(seed)
        try:
            yield
        finally:
            random.setstate(state)


class _Fetched(Dataset):
    """Map-style view whose item is a whole batch: ``Slice -> (index, x, y)``.

    A :class:`NegscaleError` (bad file) is returned, not raised, so the main
    process re-raises it as the one-line error it is (a raise inside a worker
    arrives wrapped in a multi-line traceback).
    """

    def __init__(self, pairs: PairSet, seed: int) -> None:
        self.pairs, self.seed = pairs, seed

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, item: Slice):
        try:
            if not getattr(self.pairs, "draws_random", True):  # nothing to seed
                x, y = self.pairs.fetch(item.mine)
            else:
                with seeded(step_seed(self.seed, item.step)):
                    x, y = self.pairs.fetch(item.mine)
        except NegscaleError as exc:
            return str(exc)
        return item.index, x, y


def _unwrap(batch):
    if isinstance(batch, str):
        raise NegscaleError(batch)
    return batch


def default_workers(pairs: PairSet, want: int | None) -> int:
    """``data.workers``: as asked; by default 0 for in-memory sets, up to 4 for decoding ones."""
    if want is not None:
        return want
    if not getattr(pairs, "decodes", False):
        return 0
    return max(0, min(4, (os.cpu_count() or 1) - 1))


def _loader(
    pairs: PairSet, sampler: StepSampler, *, seed: int, workers: int, pin: bool, persistent: bool
) -> DataLoader:
    return DataLoader(
        _Fetched(pairs, seed),
        sampler=sampler,
        batch_size=None,  # each sampler item is already a whole batch
        num_workers=workers,
        pin_memory=pin,
        prefetch_factor=2 if workers else None,
        persistent_workers=persistent and workers > 0,
    )


def unwrapped(loader: DataLoader) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """One pass over ``loader``: (global index, x, y) per item, a worker's error re-raised.

    Without workers or pinning, the items are fetched here exactly as the
    loader's single-process iterator would (``dataset[item]``, then
    ``default_convert``, its collate for ``batch_size=None``), skipping its
    per-item bookkeeping: about 0.25 ms, 6 % of a quickstart step (n = 4096, m = 20).
    """
    if loader.num_workers == 0 and not loader.pin_memory:
        for item in loader.sampler:
            yield _unwrap(default_convert(loader.dataset[item]))
        return
    for batch in loader:
        yield _unwrap(batch)


def batches(
    pairs: PairSet,
    sampler: StepSampler,
    *,
    seed: int,
    workers: int,
    pin: bool,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(global index, x, y) per step of ``sampler``, prefetched by ``workers`` processes."""
    loader = _loader(pairs, sampler, seed=seed, workers=workers, pin=pin, persistent=False)
    yield from unwrapped(loader)


def chunk_loader(
    pairs: PairSet, rows: range, size: int, *, workers: int, pin: bool, persistent: bool = False
) -> DataLoader:
    """A loader of items ``rows`` in order, ``size`` at a time (evaluation embeddings).

    ``persistent`` keeps its worker processes between passes: the validation
    pairs of ``train.select = "best"`` are embedded about 50 times a run, and a
    fresh loader would start its workers (and refill their prefetch) each time.
    """
    first, stop = rows.start, rows.stop

    def order(step: int) -> torch.Tensor:
        return torch.arange(first + step * size, min(first + (step + 1) * size, stop))

    sampler = StepSampler(order, 0, (len(rows) + size - 1) // size)
    return _loader(pairs, sampler, seed=0, workers=workers, pin=pin, persistent=persistent)


def chunks(loader: DataLoader) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(x, y) of one pass over a :func:`chunk_loader`, in order."""
    for _, x, y in unwrapped(loader):
        yield x, y
