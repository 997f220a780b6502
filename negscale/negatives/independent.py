"""``independent``: m own i.i.d. draws per anchor from the training set, fresh each step."""

from __future__ import annotations

import torch

from negscale.config.sources import SPECS
from negscale.data.base import PairedData
from negscale.errors import NegscaleError
from negscale.negatives.base import (
    INDEPENDENT_STREAM,
    Batch,
    Draw,
    Embedded,
    NegativeSource,
    SourceParams,
    StepLoss,
    register,
    step_generator,
    symmetric_loss,
)


@register
class IndependentSource(NegativeSource):
    """Supervised negatives: each anchor draws its own m i.i.d. items, fresh every step.

    Class-aware (``[negatives.independent] class_aware``, the default) with labels, draws are
    uniform over the items of *other* classes; otherwise (no labels, or
    ``class_aware = false``: the marginal, labels ignored) uniform over all
    items but the anchor's own pair. Draws are with replacement (i.i.d.,
    repeats count), so m may exceed both B and a class's complement. The step
    encodes the unique drawn items once (a shared table, at most min(B*m, n)
    rows) and scores each anchor against its own draws through an index,
    tiled when wide, so no (B, m, d) tensor is built. Reproducible: draws
    depend only on (seed, step).
    """

    spec = SPECS["independent"]

    def __init__(self, params: SourceParams, data: PairedData) -> None:
        super().__init__(params, data)
        labels = self.train.labels if self.neg.class_aware else None
        self.order: torch.Tensor | None = None
        if labels is not None:
            self.order = torch.argsort(labels, stable=True)  # items grouped by class
            self.classes, self.sizes = torch.unique(labels, return_counts=True)
            self.starts = torch.cumsum(self.sizes, 0) - self.sizes
            if len(self.classes) < 2:
                raise NegscaleError(
                    "negatives.source: 'independent' draws other-class negatives, but the"
                    " training split has a single class"
                    " (set negatives.independent.class_aware = false)"
                )

    def draws(self, index: torch.Tensor, step: int) -> torch.Tensor:
        """(B, m) training ids: anchor ``index[i]``'s negatives at ``step``."""
        gen = step_generator(self.seed, step, INDEPENDENT_STREAM)
        index = index.cpu()
        u = torch.rand(len(index), self.m, generator=gen, dtype=torch.float64)
        if self.order is None:  # uniform over the n - 1 other items: skip your own slot
            r = (u * (self.n - 1)).long().clamp(max=self.n - 2)
            return r + (r >= index[:, None]).long()
        cls = torch.searchsorted(self.classes, self.train.labels[index])
        size, start = self.sizes[cls], self.starts[cls]
        others = (self.n - size)[:, None]  # uniform over the class-sorted order minus own block
        r = torch.minimum((u * others).long(), others - 1)
        return self.order[r + size[:, None] * (r >= start[:, None]).long()]

    def draw(self, batch: Batch, step: int) -> Draw:
        ids, where = torch.unique(self.draws(batch.index, step), return_inverse=True)
        return Draw(step, batch.index.cpu(), extra=ids, info={"index": where})

    def loss(self, emb: Embedded, draw: Draw, tau: torch.Tensor) -> StepLoss:
        assert emb.neg_img is not None and emb.neg_txt is not None
        b = emb.batch
        img, txt = emb.anchors()
        where = draw.info["index"][emb.rows].to(img.device)
        kw = {"tau": tau, "form": self.form, "tile": self.neg.tile}
        loss = symmetric_loss(img, txt, emb.neg_img, emb.neg_txt, index=where, **kw)
        return StepLoss(loss, float(self.m), 2 * b * self.m)
