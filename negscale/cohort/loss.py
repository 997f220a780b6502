"""The loss of runs stepped together: each run's batch scored against its own batch columns.

One call scores R runs at once (the leading dimension), where
:func:`negscale.losses.subsample_loss` and :func:`negscale.losses.in_batch_loss`
score one. Written with plain batched ops (``gather``, ``bmm``, ``logsumexp``)
rather than through those functions because their shared-tile LSE is a custom
autograd function that does not batch; the tables here are small (B x k per
run, k <= B), so nothing needs tiling. Values and gradients equal the one-run
losses to float rounding (tests/test_cohort.py).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from negscale.cohort.fused import batch_loss, fused_table_loss
from negscale.losses import Form, fp32_scores, loss_from_lse


def _direction(
    anchors: torch.Tensor,
    items: torch.Tensor,
    columns: torch.Tensor,
    own: torch.Tensor,
    tau: torch.Tensor,
    form: Form,
) -> torch.Tensor:
    """(R, B) per-anchor losses of one direction: anchors against ``items[columns]``."""
    width = anchors.shape[-1]
    table = torch.gather(items, 1, columns[:, :, None].expand(-1, -1, width))
    logits = torch.bmm(anchors, table.transpose(1, 2)) / tau[:, None, None]
    lse = torch.logsumexp(logits.masked_fill(own, float("-inf")), dim=-1)
    positive = (anchors * items).sum(dim=-1) / tau[:, None]
    count = torch.full_like(lse, columns.shape[1] - 1)
    return loss_from_lse(positive, lse, count, tau=tau[:, None], form=form)


@fp32_scores
def stacked_table_loss(
    img: torch.Tensor,
    txt: torch.Tensor,
    columns: torch.Tensor,
    drop: torch.Tensor,
    *,
    tau: torch.Tensor,
    form: Form,
) -> torch.Tensor:
    """(R,) symmetric losses: run r's anchor i against its batch rows ``columns[r]``
    except column ``drop[r, i]`` (both directions, mean over anchors).

    ``img``, ``txt``: (R, B, d) normalised embeddings; ``columns``: (R, k), the
    same k for every run (runs of another m are another call: padding the
    narrower tables made a stack of m = 1 … 319 slower than its runs apart);
    ``drop``: (R, B) in [0, k); ``tau``: (R,).
    """
    own = F.one_hot(drop, columns.shape[1]).bool()
    fwd = _direction(img, txt, columns, own, tau, form)
    back = _direction(txt, img, columns, own, tau, form)
    return (0.5 * (fwd + back)).mean(dim=-1)


def table_loss(
    img: torch.Tensor,
    txt: torch.Tensor,
    columns: torch.Tensor,
    drop: torch.Tensor,
    *,
    tau: torch.Tensor,
    form: Form,
    widths: torch.Tensor | None = None,
) -> torch.Tensor:
    """(R,) as :func:`stacked_table_loss`; with a fixed temperature through the fused
    loss (:mod:`negscale.cohort.fused`, one autograd node), else through autograd.

    ``widths``: (R,) each run's own table width when narrower tables are padded
    to ``columns``' K (fused loss only; the padding is never scored).
    """
    k = columns.shape[1]
    padded = widths is not None and bool((widths != k).any())
    if tau.requires_grad:
        if padded:
            raise ValueError("padded tables need a fixed temperature (the fused loss)")
        return stacked_table_loss(img, txt, columns, drop, tau=tau, form=form)
    in_order = torch.arange(k, device=columns.device).expand_as(columns)
    every = not padded and k == img.shape[1] and torch.equal(columns, in_order)
    if every and torch.equal(drop, in_order):  # the batch source: one logit matrix
        return batch_loss(img, txt, tau=tau, form=form)
    pad = None
    if padded:
        assert widths is not None
        beyond = torch.arange(k, device=img.device) >= widths.to(img.device)[:, None]
        pad = torch.zeros(beyond.shape, device=img.device).masked_fill_(beyond, -math.inf)[:, None]
        count = (widths - 1).to(img.device, torch.float32)
    else:
        count = torch.full((len(columns),), k - 1.0, device=img.device)
    return fused_table_loss(img, txt, None if every else columns, drop, count, tau=tau,
                            form=form, pad=pad)  # fmt: skip
