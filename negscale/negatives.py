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
| queue        | self-supervised  | the other B-1 items plus the last m embeddings (MoCo)  |

Every source is symmetric, like CLIP: image anchors score drawn/pooled/queued
texts and text anchors score images, and the step loss averages both. An
anchor's own pair is never its negative. Extra items (independent draws, pool
members) are encoded with the live model, with gradient, in chunks of
``negatives.chunk``; items of the current batch reuse its embeddings. Wide
score matrices go through the tiled LSE of :mod:`negscale.losses`
(``negatives.tile``), so the loss never holds a dense B x m matrix.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from negscale.data.base import PairedData
from negscale.encoders.dual import DualEncoder
from negscale.errors import NegscaleError
from negscale.losses import contrastive_loss, in_batch_lse, loss_from_lse, negative_lse
from negscale.recipe import Recipe

# step_generator streams (the trainer's batches use 1)
_SUBSAMPLE_STREAM, _INDEPENDENT_STREAM, _POOL_STREAM, _POOL_BATCH_STREAM = 11, 12, 13, 14


def step_generator(
    seed: int, step: int, stream: int, device: str | torch.device = "cpu"
) -> torch.Generator:
    """A generator determined by (seed, stream, step) alone: no state to carry or restore."""
    state = np.random.SeedSequence([seed, stream, step]).generate_state(2, dtype=np.uint64)
    gen = torch.Generator(device=device)
    gen.manual_seed(int(state[0] >> np.uint64(1)))
    return gen


def positions(haystack: torch.Tensor, needles: torch.Tensor) -> torch.Tensor:
    """Position of each needle in ``haystack`` (distinct values), -1 where absent."""
    if len(haystack) == 0:
        return torch.full_like(needles, -1)
    order = torch.argsort(haystack)
    ordered = haystack[order]
    at = torch.searchsorted(ordered, needles).clamp(max=len(haystack) - 1)
    return torch.where(ordered[at] == needles, order[at], torch.full_like(needles, -1))


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
        self.neg = recipe.negatives
        self.form = recipe.negatives.loss_form
        self.m = recipe.m
        self.seed = recipe.train.seed
        self.n = recipe.data.n
        self.train = data.train.head(self.n)  # the trainer's first n items: a view, no copy

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
        loss = contrastive_loss(
            img, txt, tau=model.tau, form=self.form, symmetric=True, tile=self.neg.tile
        )
        return StepLoss(loss, float(b - 1), 2 * b * (b - 1))

    def encode_items(
        self,
        model: DualEncoder,
        ids: torch.Tensor,
        batch: Batch,
        img: torch.Tensor,
        txt: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Image and text embeddings of training items ``ids``, with gradient.

        Items of the current batch reuse its embeddings (same function of the
        weights, no second forward); the rest are encoded in chunks of
        ``negatives.chunk`` so one forward never exceeds that many items.
        """
        dev = img.device
        ids = ids.cpu()
        row = positions(batch.index.cpu(), ids)
        if bool((row >= 0).all()):  # only batch items: no encoding, maybe no copy
            if torch.equal(row, torch.arange(len(img))):
                return img, txt
            return img[row.to(dev)], txt[row.to(dev)]
        hit, miss = (row >= 0).nonzero()[:, 0], (row < 0).nonzero()[:, 0]
        imgs, txts = [img[row[hit].to(dev)]], [txt[row[hit].to(dev)]]
        for part in ids[miss].split(self.neg.chunk):
            x, y = self.train.fetch(part)
            imgs.append(model.encode_image(x.to(dev)).float())
            txts.append(model.encode_text(y.to(dev)).float())
        inverse = torch.empty_like(ids)
        inverse[torch.cat([hit, miss])] = torch.arange(len(ids))
        inverse = inverse.to(dev)
        return torch.cat(imgs)[inverse], torch.cat(txts)[inverse]

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
        order = torch.randperm(batch, generator=step_generator(self.seed, step, _SUBSAMPLE_STREAM))
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


def _symmetric(
    img: torch.Tensor,
    txt: torch.Tensor,
    neg_img: torch.Tensor,
    neg_txt: torch.Tensor,
    *,
    tau: torch.Tensor,
    form: str,
    tile: int,
    index: torch.Tensor | None = None,
    exclude: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean of image->texts and text->images losses over shared negative tables."""
    kw: dict[str, Any] = {
        "tau": tau,
        "form": form,
        "tile": tile,
        "negative_index": index,
        "exclude": exclude,
        "reduction": "none",
    }
    fwd = contrastive_loss(img, txt, neg_txt, **kw)
    back = contrastive_loss(txt, img, neg_img, **kw)
    return (0.5 * (fwd + back)).mean()


class IndependentSource(NegativeSource):
    """Supervised negatives: each anchor draws its own m i.i.d. items, fresh every step.

    With labels, draws are uniform over the items of *other* classes; without,
    uniform over all items but the anchor's own pair. Draws are with
    replacement (i.i.d., repeats count), so m may exceed both B and a class's
    complement. The step encodes the unique drawn items once (a shared table,
    at most min(B*m, n) rows) and scores each anchor against its own draws
    through an index, tiled when wide, so no (B, m, d) tensor is built.
    Reproducible: draws depend only on (seed, step).
    """

    name = "independent"
    summary = (
        "m own i.i.d. draws per anchor from the training set (other classes when"
        " labelled), fresh each step; m may exceed B"
    )

    def __init__(self, recipe: Recipe, data: PairedData) -> None:
        super().__init__(recipe, data)
        labels = self.train.labels
        self.order: torch.Tensor | None = None
        if labels is not None:
            self.order = torch.argsort(labels, stable=True)  # items grouped by class
            self.classes, self.sizes = torch.unique(labels, return_counts=True)
            self.starts = torch.cumsum(self.sizes, 0) - self.sizes
            if len(self.classes) < 2:
                raise NegscaleError(
                    "negatives.source: 'independent' draws other-class negatives, but the"
                    " training split has a single class"
                )

    def draw(self, index: torch.Tensor, step: int) -> torch.Tensor:
        """(B, m) training ids: anchor ``index[i]``'s negatives at ``step``."""
        gen = step_generator(self.seed, step, _INDEPENDENT_STREAM)
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

    def step_loss(
        self, model: DualEncoder, batch: Batch, img: torch.Tensor, txt: torch.Tensor, step: int
    ) -> StepLoss:
        b = img.shape[0]
        ids, index = torch.unique(self.draw(batch.index, step), return_inverse=True)
        neg_img, neg_txt = self.encode_items(model, ids, batch, img, txt)
        loss = _symmetric(
            img,
            txt,
            neg_img,
            neg_txt,
            tau=model.tau,
            form=self.form,
            tile=self.neg.tile,
            index=index.to(img.device),
        )
        return StepLoss(loss, float(self.m), 2 * b * self.m)


class PoolSource(NegativeSource):
    """Self-supervised negatives: one fixed pool of m training items shared by all anchors.

    The pool is a uniform m-subset of the n training items drawn once from the
    seed (``ids_sha`` records it). Anchor i's negatives are the whole pool
    *minus its own item* when that item is a pool member (a mask: m_i = m - 1
    then; an anchor whose own item is the entire pool, m = 1, has no negative
    and scores 0). Loss per anchor (``paper`` form)
    tau * log((1/m_i) sum_{j in pool, j != i} exp(s_ij / tau)) - s_ii, both
    directions averaged; ``infonce`` adds the positive to the denominator.

    * exact (m <= ``pool_exact_max``): the whole pool is encoded every step.
    * estimator (larger m; SogCLR/FastCLIP compositional estimator): per
      training item and direction, a moving average u_i of the pool mean-exp
      (1/m_i) sum_j exp(s_ij / tau), kept in log space. Each step draws a
      negative mini-batch S of k = min(``pool_batch`` or B, m) pool items
      (uniform without replacement: the batch's own pool members first, as
      they are already encoded, topped up uniformly from the rest of the pool,
      which by symmetry is a uniform k-subset) and for each anchor in the
      batch forms g_i = mean_{j in S, j != i} exp(s_ij / tau), then
      u_i <- (1 - gamma_v) u_i + gamma_v g_i with gamma_v = max(gamma, 1/v) on
      the anchor's v-th visit: the first visit sets u_i = g_i (no zero-start
      bias), the first 1/gamma visits are a running mean, then a constant-rate
      average. The loss value uses u_i; its gradient is the estimator's,
      grad(g_i) / u_i in place of grad(u_i) / u_i (weights exp(s_ij/tau) / u_i),
      via a straight-through LSE. gamma = 1 with k = m is the exact gradient.

    Per-step encoding, scoring and memory depend on B and k, never on m (at
    m = n the batch itself is the mini-batch: no extra encoding at all); only
    an O(m) integer shuffle tops S up, and the averages take O(n) floats.
    """

    name = "pool"
    summary = (
        "a fixed shared pool of m training items (1 <= m <= n); exact up to"
        " pool_exact_max, else a moving-average (SogCLR/FastCLIP) estimator"
    )

    def __init__(self, recipe: Recipe, data: PairedData) -> None:
        super().__init__(recipe, data)
        if not 1 <= self.m <= self.n:
            raise NegscaleError(f"negatives.m: a pool holds 1..data.n = {self.n} items")
        gen = step_generator(self.seed, 0, _POOL_STREAM)
        self.pool = torch.randperm(self.n, generator=gen)[: self.m].sort().values
        self.slot = torch.full((self.n,), -1, dtype=torch.long)
        self.slot[self.pool] = torch.arange(self.m)
        self.exact = self.m <= self.neg.pool_exact_max
        self.k = min(self.neg.pool_batch or recipe.train.batch_size, self.m)
        # per direction (0: image anchors vs pool texts, 1: text anchors vs pool images)
        self.log_u = torch.full((2, self.n), float("nan"))
        self.visits = torch.zeros((2, self.n), dtype=torch.long)

    @property
    def store_size(self) -> int:
        return self.m

    @property
    def ids_sha(self) -> str | None:
        return hashlib.sha256(self.pool.numpy().astype("<i8").tobytes()).hexdigest()

    def sample(self, index: torch.Tensor, step: int) -> torch.Tensor:
        """Training ids of the step's negative mini-batch (k distinct pool items)."""
        gen = step_generator(self.seed, step, _POOL_BATCH_STREAM)
        index = index.cpu()
        mine = index[self.slot[index] >= 0]  # pool members already in the batch
        if len(mine) >= self.k:  # keep batch order: all of a batch inside the pool is the batch
            return mine[torch.randperm(len(mine), generator=gen)[: self.k].sort().values]
        free = torch.ones(self.m, dtype=torch.bool)
        free[self.slot[mine]] = False
        order = torch.randperm(self.m, generator=gen)
        extra = self.pool[order[free[order]][: self.k - len(mine)]]
        return torch.cat([mine, extra])

    def step_loss(
        self, model: DualEncoder, batch: Batch, img: torch.Tensor, txt: torch.Tensor, step: int
    ) -> StepLoss:
        b, dev, tau = img.shape[0], img.device, model.tau
        in_pool = (self.slot[batch.index.cpu()] >= 0).to(dev)
        m_i = self.m - in_pool.long()  # negatives of each anchor in the objective
        used = float(m_i.float().mean())
        if self.exact:
            pool_img, pool_txt = self.encode_items(model, self.pool, batch, img, txt)
            own = self.slot[batch.index.cpu()].to(dev)
            kw = {"tau": tau, "form": self.form, "tile": self.neg.tile}
            loss = _symmetric(img, txt, pool_img, pool_txt, exclude=own, **kw)
            return StepLoss(loss, used, 2 * b * self.m)
        ids = self.sample(batch.index, step)
        neg_img, neg_txt = self.encode_items(model, ids, batch, img, txt)
        tile = self.neg.tile
        if neg_img is img and neg_txt is txt:  # the mini-batch is the batch: one score matrix
            both = in_batch_lse(img, txt, tau=tau, tile=tile)
        else:
            own = positions(ids, batch.index.cpu()).to(dev)
            both = (
                negative_lse(img, neg_txt, tau=tau, tile=tile, exclude=own),
                negative_lse(txt, neg_img, tau=tau, tile=tile, exclude=own),
            )
        pos_logits = (img * txt).sum(dim=-1) / tau
        losses = [
            self._estimated(d, lse, count, batch.index, m_i, pos_logits, tau)
            for d, (lse, count) in enumerate(both)
        ]
        loss = (0.5 * (losses[0] + losses[1])).mean()
        return StepLoss(loss, used, 2 * b * len(ids))

    def _estimated(
        self,
        direction: int,
        lse: torch.Tensor,
        count: torch.Tensor,
        index: torch.Tensor,
        m_i: torch.Tensor,
        pos_logits: torch.Tensor,
        tau: torch.Tensor,
    ) -> torch.Tensor:
        """Per-anchor loss of one direction from the mini-batch LSE and the moving averages."""
        dev = lse.device
        lse = lse.to(torch.promote_types(lse.dtype, torch.float32))  # averages never in bf16
        if self.log_u.device != dev or self.log_u.dtype != lse.dtype:
            self.log_u, self.visits = self.log_u.to(dev, lse.dtype), self.visits.to(dev)
        rows = index.to(dev)
        seen = count > 0
        log_g = torch.where(seen, lse - torch.log(count.clamp(min=1).to(lse.dtype)), 0.0)
        old, visits = self.log_u[direction, rows], self.visits[direction, rows] + seen.long()
        rate = torch.clamp(1.0 / visits.clamp(min=1).to(lse.dtype), min=self.neg.gamma)
        mixed = torch.logaddexp(
            torch.log1p(-rate.clamp(max=1 - 1e-12)) + old, torch.log(rate) + log_g.detach()
        )
        mixed = torch.where(rate >= 1.0, log_g.detach(), mixed)
        new = torch.where(seen, mixed, old)
        self.log_u[direction, rows], self.visits[direction, rows] = new, visits
        valid = visits > 0
        log_u = torch.where(valid, new, 0.0)
        # straight-through: value log(m_i u_i), gradient (g_i / u_i) grad log g_i
        weight = torch.where(seen & valid, torch.exp(log_g.detach() - log_u), 0.0)
        est = torch.log(m_i.clamp(min=1).to(lse.dtype)) + log_u + weight * (log_g - log_g.detach())
        return loss_from_lse(pos_logits, est, torch.where(valid, m_i, 0), tau=tau, form=self.form)

    def state_dict(self) -> dict[str, Any]:
        return {"log_u": self.log_u.clone(), "visits": self.visits.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.log_u, self.visits = state["log_u"].clone(), state["visits"].clone()


class QueueSource(NegativeSource):
    """MoCo-style negatives: the other B-1 batch items plus a FIFO queue of past embeddings.

    The queue holds the last m distinct items' embeddings of each side
    (texts for image anchors, images for text anchors), detached; after each
    step the batch is enqueued and the oldest entries drop out. An item's
    newer embedding replaces its older one, and queued copies of the current
    batch's items are skipped (the batch has them fresh), so an anchor never
    meets its own pair. Empty (the first step) it is exactly ``batch``.
    ``negatives.momentum`` > 0 (off by default) fills the queue from an
    exponential moving average of the model instead of the live one, as MoCo.
    Contents (and the momentum model) live in ``state_dict`` for exact resume.
    """

    name = "queue"
    summary = "the other B-1 batch items plus the last m embeddings of past batches (MoCo queue)"

    def __init__(self, recipe: Recipe, data: PairedData, momentum: float | None = None) -> None:
        super().__init__(recipe, data)
        momentum = recipe.negatives.momentum if momentum is None else momentum
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

    def step_loss(
        self, model: DualEncoder, batch: Batch, img: torch.Tensor, txt: torch.Tensor, step: int
    ) -> StepLoss:
        b, dev = img.shape[0], img.device
        index = batch.index.cpu()
        keep = ~torch.isin(self.ids, index)
        q_img = self.img_q.to(dev)[keep.to(dev)] if len(self.ids) else img[:0].detach()
        q_txt = self.txt_q.to(dev)[keep.to(dev)] if len(self.ids) else txt[:0].detach()
        own = torch.arange(b, device=dev)
        loss = _symmetric(
            img,
            txt,
            torch.cat([img, q_img]),
            torch.cat([txt, q_txt]),
            tau=model.tau,
            form=self.form,
            tile=self.neg.tile,
            exclude=own,
        )
        width = b - 1 + len(q_img)
        self._enqueue(model, batch, img, txt, keep)
        return StepLoss(loss, float(width), 2 * b * width)

    @torch.no_grad()
    def _enqueue(
        self,
        model: DualEncoder,
        batch: Batch,
        img: torch.Tensor,
        txt: torch.Tensor,
        keep: torch.Tensor,
    ) -> None:
        if self.momentum > 0:
            if self.key_model is None:
                self.key_model = copy.deepcopy(model).requires_grad_(False)
                if self._key_state is not None:  # resumed: continue the saved average
                    self.key_model.load_state_dict(self._key_state)
            for k, q in zip(self.key_model.parameters(), model.parameters(), strict=True):
                k.lerp_(q, 1.0 - self.momentum)
            img, txt = self.key_model(batch.x, batch.y)
        new_img, new_txt = img.detach().float(), txt.detach().float()
        if len(self.ids):
            on = keep.to(new_img.device)
            new_img = torch.cat([self.img_q.to(new_img.device)[on], new_img])
            new_txt = torch.cat([self.txt_q.to(new_txt.device)[on], new_txt])
        ids = torch.cat([self.ids[keep], batch.index.cpu()])
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


SOURCES: dict[str, type[NegativeSource]] = {
    cls.name: cls
    for cls in (NegativeSource, SubsampleSource, IndependentSource, PoolSource, QueueSource)
}


def build(recipe: Recipe, data: PairedData) -> NegativeSource:
    name = recipe.negatives.source
    if name not in SOURCES:
        raise NegscaleError(f"negatives.source: '{name}' is not available yet")
    return SOURCES[name](recipe, data)
