"""``pool``: one fixed pool of m training items shared by all anchors (exact or estimator)."""

from __future__ import annotations

import hashlib
from typing import Any

import torch

from negscale import distributed
from negscale.config import pool_rule
from negscale.config.sources import SPECS
from negscale.data.base import PairedData
from negscale.losses import in_batch_lse, loss_from_lse, negative_lse
from negscale.negatives.base import (
    POOL_BATCH_STREAM,
    POOL_STREAM,
    Batch,
    Draw,
    Embedded,
    Keys,
    NegativeSource,
    SourceParams,
    StepLoss,
    positions,
    register,
    step_generator,
    symmetric_loss,
)


@register
class PoolSource(NegativeSource):
    """Self-supervised negatives: one fixed pool of m training items shared by all anchors.

    The pool is a uniform m-subset of the n training items drawn once from the
    seed (``ids_sha`` records it). Anchor i's negatives are the whole pool
    *minus its own item* when that item is a pool member (m_i = m - 1 then; an
    anchor whose own item is the entire pool, m = 1, has no negative and
    scores 0). Loss per anchor (``paper`` form)
    tau * log((1/m_i) sum_{j in pool, j != i} exp(s_ij / tau)) - s_ii, both
    directions averaged; ``infonce`` adds the positive to the denominator.

    * exact (m <= ``exact_max``, default B // 2): the whole pool is
      encoded every step.
    * estimator (larger m; SogCLR/FastCLIP compositional estimator): per
      training item and direction, a moving average u_i of the pool mean-exp
      (1/m_i) sum_j exp(s_ij / tau), kept in log space. Each step draws a
      negative mini-batch S of pool items without replacement: the batch's own
      pool members first, as they are already encoded, topped up uniformly
      from the rest of the pool to k = min(``minibatch``, m) items (default:
      every member of the batch, topped up to B // 2; ``pool_rule``). Given
      its size, S is a uniform subset of the pool by symmetry (a batch is a
      uniform draw of the training items). For each anchor it forms
      g_i = mean_{j in S, j != i} exp(s_ij / tau), then
      u_i <- (1 - gamma_v) u_i + gamma_v g_i with gamma_v = max(gamma, 1/v) on
      the anchor's v-th visit: the first visit sets u_i = g_i (no zero-start
      bias), the first 1/gamma visits are a running mean, then a constant-rate
      average. The loss value uses u_i; its gradient is the estimator's,
      grad(g_i) / u_i in place of grad(u_i) / u_i (weights exp(s_ij/tau) / u_i),
      via a straight-through LSE. gamma = 1 with k = m is the exact gradient.
      The loss stage computes the new u_i of its anchors; the update stage
      writes them (gathered over ranks under torchrun), once per step.

    Per-step encoding, scoring and memory depend on B and k, never on m (at
    m = n the batch itself is the mini-batch: no extra encoding at all); only
    an O(m) integer shuffle tops S up, and the averages take O(n) floats.
    """

    spec = SPECS["pool"]

    def __init__(self, params: SourceParams, data: PairedData) -> None:
        super().__init__(params, data)
        assert 1 <= self.m <= self.n, "the spec's rule admits 1 <= m <= n only (recipe validation)"
        gen = step_generator(self.seed, 0, POOL_STREAM)
        self.pool = torch.randperm(self.n, generator=gen)[: self.m].sort().values
        self.slot = torch.full((self.n,), -1, dtype=torch.long)
        self.slot[self.pool] = torch.arange(self.m)
        batch = self.batch
        self.exact = self.m <= pool_rule.exact_max(self.neg.exact_max, batch)
        self.k = pool_rule.minibatch_floor(self.neg.minibatch, batch, self.m)
        self.all_members = self.neg.minibatch is None  # every member of the batch, then top up
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
        """Training ids of the step's negative mini-batch: distinct pool items, the batch's first.

        At least k items; with ``minibatch`` unset, every pool member of the
        batch even beyond k (they are encoded anyway), else exactly k.
        """
        gen = step_generator(self.seed, step, POOL_BATCH_STREAM)
        index = index.cpu()
        mine = index[self.slot[index] >= 0]  # pool members already in the batch
        if len(mine) >= self.k:  # keep batch order: all of a batch inside the pool is the batch
            keep = len(mine) if self.all_members else self.k
            return mine[torch.randperm(len(mine), generator=gen)[:keep].sort().values]
        free = torch.ones(self.m, dtype=torch.bool)
        free[self.slot[mine]] = False
        order = torch.randperm(self.m, generator=gen)
        extra = self.pool[order[free[order]][: self.k - len(mine)]]
        return torch.cat([mine, extra])

    # ------------------------------------------------------------ stages
    def draw(self, batch: Batch, step: int) -> Draw:
        index = batch.index.cpu()
        if self.exact:
            return Draw(step, index, extra=self.pool, info={"own": self.slot[index]})
        ids = self.sample(index, step)
        return Draw(step, index, extra=ids, info={"own": positions(ids, index)})

    def loss(self, emb: Embedded, draw: Draw, tau: torch.Tensor) -> StepLoss:
        assert emb.neg_img is not None and emb.neg_txt is not None
        b, dev = emb.batch, emb.img.device
        m_all = self.m - (self.slot[draw.index] >= 0).long()  # negatives of each anchor
        used = float(m_all.float().mean())
        img, txt = emb.anchors()
        own = draw.info["own"][emb.rows].to(dev)
        kw = {"tau": tau, "tile": self.neg.tile, "exclude": own}
        if self.exact:
            loss = symmetric_loss(img, txt, emb.neg_img, emb.neg_txt, form=self.form, **kw)
            return StepLoss(loss, used, 2 * b * self.m)
        if emb.neg_img is emb.img and not emb.local:  # the mini-batch is the batch
            both = in_batch_lse(img, txt, tau=tau, tile=self.neg.tile)
        else:
            both = (negative_lse(img, emb.neg_txt, **kw), negative_lse(txt, emb.neg_img, **kw))
        pos_logits = (img * txt).sum(dim=-1) / tau
        rows = draw.index[emb.rows]
        m_i = m_all[emb.rows].to(dev)
        losses, pending = [], {"rows": rows.to(dev)}
        for d, (lse, count) in enumerate(both):
            loss_d, pending[f"log_u{d}"], pending[f"visits{d}"] = self._estimated(
                d, lse, count, rows, m_i, pos_logits, tau
            )
            losses.append(loss_d)
        loss = (0.5 * (losses[0] + losses[1])).mean()
        return StepLoss(loss, used, 2 * b * len(draw.extra), pending)

    def _estimated(
        self,
        direction: int,
        lse: torch.Tensor,
        count: torch.Tensor,
        index: torch.Tensor,
        m_i: torch.Tensor,
        pos_logits: torch.Tensor,
        tau: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-anchor loss of one direction, and the anchors' new log u_i and visit counts."""
        dev = lse.device
        lse = lse.to(torch.promote_types(lse.dtype, torch.float32))  # averages never in bf16
        if self.log_u.device != dev or self.log_u.dtype != lse.dtype:  # a move, not a change
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
        valid = visits > 0
        log_u = torch.where(valid, new, 0.0)
        # straight-through: value log(m_i u_i), gradient (g_i / u_i) grad log g_i
        weight = torch.where(seen & valid, torch.exp(log_g.detach() - log_u), 0.0)
        est = torch.log(m_i.clamp(min=1).to(lse.dtype)) + log_u + weight * (log_g - log_g.detach())
        loss = loss_from_lse(pos_logits, est, torch.where(valid, m_i, 0), tau=tau, form=self.form)
        return loss, new.detach(), visits

    def update(self, draw: Draw, out: StepLoss, keys: Keys) -> None:
        """Write the scored anchors' new averages: every rank's, so all ranks agree."""
        if not out.pending:
            return
        rows = distributed.all_gather(out.pending["rows"])
        for d in (0, 1):
            self.log_u[d, rows] = distributed.all_gather(out.pending[f"log_u{d}"])
            self.visits[d, rows] = distributed.all_gather(out.pending[f"visits{d}"])

    def state_dict(self) -> dict[str, Any]:
        return {"log_u": self.log_u.clone(), "visits": self.visits.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.log_u, self.visits = state["log_u"].clone(), state["visits"].clone()
