"""Negative sources: how each anchor's m negatives arise, and the loss over them.

A source turns one training batch (indices, embeddings) into the step's loss
and reports how many negatives each anchor actually saw. Sources own whatever
state their negatives need (a queue, a pool's moving averages) and expose it to
checkpoints through ``state_dict``. All randomness comes from per-step
generators (``step_generator``), so a run is reproducible and resumable.

| source       | setting          | negatives of anchor i                                  |
|--------------|------------------|--------------------------------------------------------|
| batch        | self-supervised  | the other B-1 items of the batch                       |
| subsample    | self-supervised  | a shared random m-subset of the other batch items      |
| independent  | supervised       | m own i.i.d. draws (other classes when labelled)       |
| pool         | self-supervised  | a fixed shared pool of m training items (1 <= m <= n)  |
| queue        | self-supervised  | the last m embeddings of the positive side (MoCo)      |
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from negscale.data.base import PairedData
from negscale.encoders.dual import DualEncoder
from negscale.errors import NegscaleError
from negscale.losses import contrastive_loss
from negscale.recipe import Recipe


def step_generator(
    seed: int, step: int, stream: int, device: str | torch.device = "cpu"
) -> torch.Generator:
    """A generator determined by (seed, stream, step) alone: no state to carry or restore."""
    state = np.random.SeedSequence([seed, stream, step]).generate_state(2, dtype=np.uint64)
    gen = torch.Generator(device=device)
    gen.manual_seed(int(state[0] >> np.uint64(1)))
    return gen


@dataclass
class Batch:
    index: torch.Tensor  # positions in the training split
    x: torch.Tensor
    y: torch.Tensor
    labels: torch.Tensor | None


@dataclass
class StepLoss:
    loss: torch.Tensor
    negatives_per_anchor: float  # mean over anchors (and directions)
    scores: int  # negative scores computed this step, both directions (for loss FLOPs)


class NegativeSource:
    """Base class: in-batch negatives (``batch``)."""

    name = "batch"
    summary = "the other B-1 items of the batch (CLIP/SimCLR): m = B-1"

    def __init__(self, recipe: Recipe, data: PairedData) -> None:
        self.recipe = recipe
        self.form = recipe.negatives.loss_form
        self.m = recipe.m
        self.seed = recipe.train.seed

    @property
    def store_size(self) -> int:
        """Size of the source's negative store (pool or queue); 0 for in-batch sources."""
        return 0

    @property
    def ids_sha(self) -> str | None:
        """Hash of the fixed negative ids (pool); None when negatives are drawn fresh."""
        return None

    def step_loss(
        self, model: DualEncoder, batch: Batch, img: torch.Tensor, txt: torch.Tensor, step: int
    ) -> StepLoss:
        b = img.shape[0]
        loss = contrastive_loss(img, txt, tau=model.tau, form=self.form, symmetric=True)
        return StepLoss(loss, float(b - 1), 2 * b * (b - 1))

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None


class SubsampleSource(NegativeSource):
    """A shared random m-subset of the batch, re-drawn every step.

    One random order of the batch is drawn per step; anchor i takes the first m
    items of that order other than itself, so every anchor has exactly m
    negatives, all anchors share them (up to their own item), and m = B-1 is
    exactly ``batch``.
    """

    name = "subsample"
    summary = "a shared random m-subset of the other batch items (m < B), fresh each step"

    def mask(self, batch: int, step: int, device: torch.device) -> torch.Tensor:
        order = torch.randperm(batch, generator=step_generator(self.seed, step, 11))
        rank = torch.empty(batch, dtype=torch.long)
        rank[order] = torch.arange(batch)
        limit = self.m + (rank < self.m).long()  # skip yourself if you are among the first m
        keep = rank[None, :] < limit[:, None]
        keep.fill_diagonal_(False)
        return keep.to(device)

    def step_loss(
        self, model: DualEncoder, batch: Batch, img: torch.Tensor, txt: torch.Tensor, step: int
    ) -> StepLoss:
        b = img.shape[0]
        if self.m > b - 1:
            raise NegscaleError(f"negatives.m: subsample needs m <= B-1 = {b - 1}, got {self.m}")
        mask = self.mask(b, step, img.device)
        loss = contrastive_loss(
            img, txt, tau=model.tau, form=self.form, negative_mask=mask, symmetric=True
        )
        return StepLoss(loss, float(self.m), 2 * b * (b - 1))


SourceFactory = Callable[[Recipe, PairedData], NegativeSource]
SOURCES: dict[str, type[NegativeSource]] = {
    NegativeSource.name: NegativeSource,
    SubsampleSource.name: SubsampleSource,
}


def build(recipe: Recipe, data: PairedData) -> NegativeSource:
    name = recipe.negatives.source
    if name not in SOURCES:
        raise NegscaleError(f"negatives.source: '{name}' is not available yet")
    return SOURCES[name](recipe, data)
