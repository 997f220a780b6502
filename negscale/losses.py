"""Contrastive losses as pure functions: scores in, per-anchor or scalar loss out.

Two forms (PAPER.md), for an anchor with positive score s+ and negative scores
s-_1..s-_m:

- ``paper``:   tau * log( (1/m) * sum_j exp((s-_j - s+) / tau) )   positive excluded,
  an *average* over the m negatives (the paper's log-mean-exp form).
- ``infonce``: -log( exp(s+/tau) / (exp(s+/tau) + sum_j exp(s-_j/tau)) )   CLIP's
  cross-entropy; in-batch and symmetrised it equals open_clip's ``ClipLoss``.

Negatives come in three shapes: ``None`` (the other positives of the batch),
a shared ``(M, d)`` set (pool, queue, subsample) or per-anchor ``(B, m, d)``
draws (independent). A boolean ``negative_mask`` (True = use) removes entries,
such as an anchor's own positive inside a shared pool; each anchor then
averages over the negatives it actually has.
"""

from __future__ import annotations

from typing import Literal

import torch

Form = Literal["paper", "infonce"]


def loss_from_scores(
    pos: torch.Tensor,
    neg: torch.Tensor,
    *,
    tau: float | torch.Tensor,
    form: Form = "paper",
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-anchor loss from positive scores ``(B,)`` and negative scores ``(B, m)``."""
    if form not in ("paper", "infonce"):
        raise ValueError(f"unknown loss form {form!r}")
    neg_logits = neg / tau
    if mask is not None:
        neg_logits = neg_logits.masked_fill(~mask, float("-inf"))
    pos_logits = pos / tau
    if form == "infonce":
        full = torch.cat([pos_logits[:, None], neg_logits], dim=1)
        return torch.logsumexp(full, dim=1) - pos_logits
    count = torch.full_like(pos, neg.shape[1]) if mask is None else mask.sum(dim=1).to(pos.dtype)
    return tau * (torch.logsumexp(neg_logits, dim=1) - pos_logits - torch.log(count))


def in_batch_mask(batch: int, device: torch.device | None = None) -> torch.Tensor:
    """(B, B) mask that keeps every item but the diagonal (the anchor's own positive)."""
    return ~torch.eye(batch, dtype=torch.bool, device=device)


def contrastive_loss(
    anchors: torch.Tensor,
    positives: torch.Tensor,
    negatives: torch.Tensor | None = None,
    *,
    tau: float | torch.Tensor,
    form: Form = "paper",
    negative_mask: torch.Tensor | None = None,
    symmetric: bool = True,
    reduction: Literal["mean", "none"] = "mean",
) -> torch.Tensor:
    """Contrastive loss of ``anchors`` against ``positives`` (row-paired) and negatives.

    With ``negatives=None`` the other positives of the batch are the negatives
    (m = B - 1, or fewer under ``negative_mask``, shape (B, B), where
    ``negative_mask[i, j]`` means item j is a negative for pair i in either
    direction); ``symmetric`` then averages both directions (anchor->positive
    and positive->anchor), as CLIP does. Otherwise only the anchor direction
    is scored: ``negatives`` of shape (M, d) are shared by every anchor,
    (B, m, d) are each anchor's own.
    """
    pos = (anchors * positives).sum(dim=-1)
    if negatives is None:
        scores = anchors @ positives.T
        mask = in_batch_mask(scores.shape[0], scores.device)
        if negative_mask is not None:
            mask = mask & negative_mask
        loss = loss_from_scores(pos, scores, tau=tau, form=form, mask=mask)
        if symmetric:
            back = loss_from_scores(pos, scores.T, tau=tau, form=form, mask=mask)
            loss = 0.5 * (loss + back)
    elif negatives.dim() == 2:
        loss = loss_from_scores(pos, anchors @ negatives.T, tau=tau, form=form, mask=negative_mask)
    elif negatives.dim() == 3:
        scores = torch.einsum("bd,bmd->bm", anchors, negatives)
        loss = loss_from_scores(pos, scores, tau=tau, form=form, mask=negative_mask)
    else:
        raise ValueError("negatives must be None, (M, d) or (B, m, d)")
    return loss.mean() if reduction == "mean" else loss
