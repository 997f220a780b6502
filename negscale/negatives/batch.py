"""``batch``: the other B-1 items of the batch (CLIP/SimCLR)."""

from __future__ import annotations

import torch

from negscale.config.sources import SPECS
from negscale.losses import in_batch_loss
from negscale.negatives.base import (
    BatchTable,
    Draw,
    Embedded,
    NegativeSource,
    StepLoss,
    register,
    symmetric_loss,
)


@register
class BatchSource(NegativeSource):
    """In-batch negatives: anchor i scores the other B-1 items of the global batch."""

    spec = SPECS["batch"]

    def loss(self, emb: Embedded, draw: Draw, tau: torch.Tensor) -> StepLoss:
        b, tile = emb.batch, self.neg.tile
        if emb.local:  # this rank's anchors against the gathered batch
            img, txt = emb.anchors()
            kw = {"tau": tau, "form": self.form, "tile": tile, "exclude": emb.own()}
            loss = symmetric_loss(img, txt, emb.img, emb.txt, **kw)
        else:
            loss = in_batch_loss(
                emb.img, emb.txt, tau=tau, form=self.form, symmetric=True, tile=tile
            )
        return StepLoss(loss, float(b - 1), 2 * b * (b - 1))

    def table(self, draw: Draw, batch: int) -> BatchTable:
        every = torch.arange(batch)
        return BatchTable(every, every, float(batch - 1), 2 * batch * (batch - 1))
