"""The run's batches: seeded epochs cut into full batches, fetched through a DataLoader.

A batch is a function of (seed, step) alone, so a resumed run continues with
the batches it would have seen, and 0, 1 or 8 loader workers give the same ones.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from negscale.data import loader
from negscale.data.base import PairSet
from negscale.negatives.base import Batch, step_generator
from negscale.runtime import Runtime

BATCH_STREAM = 1  # the step_generator stream of the batch order


_ORDERS: dict[tuple[int, int], tuple[int, torch.Tensor]] = {}  # (n, seed) -> its current epoch
_RUNS_KEPT = 64  # runs of a cohort interleave their seeds (and m): one epoch's order each


def _epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """One epoch's seeded permutation of the n items: drawn once, cut into n // B batches.

    Why cached: a fresh randperm(n) every step cost 170 us at n = 16,384 (about
    5 % of a quickstart step); the order is a pure function of (n, seed, epoch).
    Only each run's current epoch is kept, so a process holds one order per run
    it steps (one at the paper's n, where an order is 100 MB).
    """
    kept = _ORDERS.get((n, seed))
    if kept is not None and kept[0] == epoch:
        return kept[1]
    order = torch.randperm(n, generator=step_generator(seed, epoch, BATCH_STREAM))
    _ORDERS.pop((n, seed), None)
    while len(_ORDERS) >= _RUNS_KEPT:
        _ORDERS.pop(next(iter(_ORDERS)))
    _ORDERS[(n, seed)] = (epoch, order)
    return order


def batch_indices(n: int, batch: int, seed: int, step: int) -> torch.Tensor:
    """Indices of step ``step``: epochs are seeded permutations, cut into full batches."""
    per_epoch = n // batch
    epoch, pos = divmod(step, per_epoch)
    return _epoch_order(n, seed, epoch)[pos * batch : (pos + 1) * batch].clone()


class BatchFeed:
    """Step -> :class:`Batch` of ``pairs``: the global batch's ids and labels, with this
    process's slice of the inputs on the device (under torchrun each rank fetches its own)."""

    def __init__(
        self, pairs: PairSet, batch: int, seed: int, steps: int, runtime: Runtime, workers: int
    ) -> None:
        self.pairs, self.batch, self.seed, self.steps = pairs, batch, seed, steps
        self.runtime, self.workers = runtime, workers
        self._batches: Iterator | None = None  # the DataLoader's iterator, and its next step
        self._next_step = -1

    def __call__(self, step: int) -> Batch:
        """The batch of ``step``; asking for any other step than the next restarts the
        loader there (at the checkpoint's step on resume)."""
        if self._batches is None or step != self._next_step:
            self._batches = self._loader(step)
        index, x, y = next(self._batches)
        self._next_step = step + 1
        labels = None if self.pairs.labels is None else self.pairs.labels.index_select(0, index)
        dev, pin = self.runtime.device, self.runtime.pin
        return Batch(index, x.to(dev, non_blocking=pin), y.to(dev, non_blocking=pin), labels)

    def _loader(self, start: int) -> Iterator:
        n, size, seed, info = len(self.pairs), self.batch, self.seed, self.runtime.dist
        sampler = loader.StepSampler(
            lambda s: batch_indices(n, size, seed, s),
            start,
            max(self.steps, start + 1),
            rank=info.rank if info.enabled else 0,
            world=info.world_size if info.enabled else 1,
        )
        return loader.batches(
            self.pairs, sampler, seed=seed, workers=self.workers, pin=self.runtime.pin
        )
