"""``queue``: the other B-1 batch items plus a FIFO queue of past embeddings (MoCo)."""

from __future__ import annotations

import copy
from typing import Any

import torch

from negscale.config.sources import SPECS
from negscale.data.base import PairedData
from negscale.encoders.dual import DualEncoder
from negscale.errors import NegscaleError
from negscale.negatives.base import (
    Batch,
    Draw,
    Embedded,
    Keys,
    NegativeSource,
    SourceParams,
    StepLoss,
    register,
    symmetric_loss,
)


@register
class QueueSource(NegativeSource):
    """MoCo-style negatives: the other B-1 batch items plus a FIFO queue of past embeddings.

    The queue holds the last m distinct items' embeddings of each side
    (texts for image anchors, images for text anchors), detached; after each
    step the batch is enqueued and the oldest entries drop out. An item's
    newer embedding replaces its older one, and queued copies of the current
    batch's items are skipped (the batch has them fresh), so an anchor never
    meets its own pair. Empty (the first step) it is exactly ``batch``.
    m is the queue length; each anchor sees B - 1 + (queued items not in the
    batch) negatives, which is what ``negatives_per_anchor`` reports.
    ``[negatives.queue] momentum`` > 0 (off by default) fills the queue from an
    exponential moving average of the model instead of the live one, as MoCo;
    the key encoder embeds the whole global batch (under torchrun each rank
    its slice, gathered), so the queued rows always match the queued ids.
    Contents (and the momentum model) live in ``state_dict`` for exact resume.
    """

    spec = SPECS["queue"]

    def __init__(
        self, params: SourceParams, data: PairedData, momentum: float | None = None
    ) -> None:
        super().__init__(params, data)
        momentum = self.neg.momentum if momentum is None else momentum
        if not 0.0 <= momentum < 1.0:
            raise NegscaleError(f"queue momentum must be in [0, 1), got {momentum}")
        self.momentum = momentum
        self.key_model: DualEncoder | None = None  # built from the live model on first use
        self._key_state: dict[str, Any] | None = None
        self.img_q = torch.zeros(0, 0)
        self.txt_q = torch.zeros(0, 0)
        self.ids = torch.zeros(0, dtype=torch.long)

    @property
    def store_size(self) -> int:
        return len(self.ids)

    def draw(self, batch: Batch, step: int) -> Draw:
        index = batch.index.cpu()
        return Draw(step, index, info={"keep": ~torch.isin(self.ids, index)})

    def loss(self, emb: Embedded, draw: Draw, tau: torch.Tensor) -> StepLoss:
        b, dev = emb.batch, emb.img.device
        keep = draw.info["keep"].to(dev)
        q_img = self.img_q.to(dev)[keep] if len(self.ids) else emb.img[:0].detach()
        q_txt = self.txt_q.to(dev)[keep] if len(self.ids) else emb.txt[:0].detach()
        img, txt = emb.anchors()
        loss = symmetric_loss(
            img,
            txt,
            torch.cat([emb.img, q_img]),
            torch.cat([emb.txt, q_txt]),
            tau=tau,
            form=self.form,
            tile=self.neg.tile,
            exclude=emb.own(),
        )
        width = b - 1 + len(q_img)
        pending = {"img": emb.img.detach(), "txt": emb.txt.detach()}
        return StepLoss(loss, float(width), 2 * b * width, pending)

    def _key_embeddings(self, out: StepLoss, keys: Keys) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch's entries: the live embeddings, or the momentum encoder's."""
        if self.momentum == 0:
            return out.pending["img"], out.pending["txt"]
        if self.key_model is None:
            self.key_model = copy.deepcopy(keys.model).requires_grad_(False)
            if self._key_state is not None:  # resumed: continue the saved average
                self.key_model.load_state_dict(self._key_state)
        for k, q in zip(self.key_model.parameters(), keys.model.parameters(), strict=True):
            k.lerp_(q.detach(), 1.0 - self.momentum)
        return keys.embed(self.key_model)

    def update(self, draw: Draw, out: StepLoss, keys: Keys) -> None:
        img, txt = self._key_embeddings(out, keys)
        new_img, new_txt = img.detach().float(), txt.detach().float()
        keep = draw.info["keep"]
        if len(self.ids):
            on = keep.to(new_img.device)
            new_img = torch.cat([self.img_q.to(new_img.device)[on], new_img])
            new_txt = torch.cat([self.txt_q.to(new_txt.device)[on], new_txt])
        ids = torch.cat([self.ids[keep], draw.index])
        self.img_q, self.txt_q, self.ids = new_img[-self.m :], new_txt[-self.m :], ids[-self.m :]

    def state_dict(self) -> dict[str, Any]:
        key = None if self.key_model is None else self.key_model.state_dict()
        return {"img": self.img_q, "txt": self.txt_q, "ids": self.ids, "key_model": key}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.img_q, self.txt_q = state["img"], state["txt"]
        self.ids = state["ids"].cpu()
        self._key_state = state.get("key_model")
        if self._key_state is not None and self.key_model is not None:
            self.key_model.load_state_dict(self._key_state)
