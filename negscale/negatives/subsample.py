"""``subsample``: a shared random m-subset of the other batch items, fresh each step."""

from __future__ import annotations

import functools

import torch

from negscale.config.sources import SPECS
from negscale.losses import order_rank, subsample_columns, subsample_loss
from negscale.negatives.base import (
    SUBSAMPLE_STREAM,
    Batch,
    BatchTable,
    Draw,
    Embedded,
    NegativeSource,
    StepLoss,
    register,
    step_generator,
    symmetric_loss,
)


@functools.lru_cache(maxsize=64)
def _order(seed: int, step: int, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The step's order and its ranks, a pure function of (seed, step, B), drawn once:
    runs of one seed stepped together (:mod:`negscale.cohort`, every m) share them."""
    order = torch.randperm(batch, generator=step_generator(seed, step, SUBSAMPLE_STREAM))
    return order, order_rank(order)


@register
class SubsampleSource(NegativeSource):
    """A shared random m-subset of the batch, re-drawn every step.

    One random order of the batch is drawn per step; anchor i takes the first m
    items of that order other than itself, so every anchor has exactly m
    negatives, all anchors share them (up to their own item), and m = B-1 is
    exactly ``batch``.
    """

    spec = SPECS["subsample"]

    def order(self, batch: int, step: int) -> torch.Tensor:
        """The step's random order of the batch (what the negatives are cut from); read-only."""
        return _order(self.seed, step, batch)[0]

    def mask_of(self, order: torch.Tensor, device: torch.device) -> torch.Tensor:
        """(B, B) keep-mask: row i keeps the first m items of ``order`` other than i."""
        b = len(order)
        rank = torch.empty(b, dtype=torch.long)
        rank[order] = torch.arange(b)
        limit = self.m + (rank < self.m).long()  # skip yourself if you are among the first m
        keep = rank[None, :] < limit[:, None]
        keep.fill_diagonal_(False)
        return keep.to(device)

    def mask(self, batch: int, step: int, device: torch.device) -> torch.Tensor:
        return self.mask_of(self.order(batch, step), device)

    def draw(self, batch: Batch, step: int) -> Draw:
        b = len(batch.index)
        assert self.m <= b - 1, "the spec's rule admits m <= B-1 only (recipe validation)"
        return Draw(step, batch.index.cpu(), info={"order": self.order(b, step)})

    def loss(self, emb: Embedded, draw: Draw, tau: torch.Tensor) -> StepLoss:
        b, order = emb.batch, draw.info["order"]
        if emb.local:
            img, txt = emb.anchors()
            mask = self.mask_of(order, emb.img.device)[emb.rows]
            kw = {"tau": tau, "form": self.form, "tile": self.neg.tile}
            loss = symmetric_loss(img, txt, emb.img, emb.txt, mask=mask, **kw)
            scores = 2 * b * (b - 1)
        else:
            loss = self.batch_loss(emb.img, emb.txt, order, tau)
            scores = 2 * b * (self.m + 1)  # the B x (m+1) table per direction
        return StepLoss(loss, float(self.m), scores)

    def table(self, draw: Draw, batch: int) -> BatchTable:
        order, rank = _order(self.seed, draw.step, batch)
        if order is not draw.info["order"]:  # a draw from elsewhere: its own ranks
            order, rank = draw.info["order"], None
        columns, drop = subsample_columns(order, self.m, rank)
        return BatchTable(columns, drop, float(self.m), 2 * batch * (self.m + 1))

    def batch_loss(
        self, img: torch.Tensor, txt: torch.Tensor, order: torch.Tensor, tau: torch.Tensor
    ) -> torch.Tensor:
        """Symmetric loss of the whole batch, each anchor against its m of ``order``.

        Scores only the m+1 columns a direction uses (never a masked B x B
        matrix): equal to the masked in-batch loss of :meth:`mask_of` (tested).
        """
        return subsample_loss(img, txt, order, self.m, tau=tau, form=self.form)
