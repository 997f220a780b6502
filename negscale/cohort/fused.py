"""The stacked table loss with its gradient written out: one autograd node per call.

:func:`negscale.cohort.loss.stacked_table_loss` builds the loss from some thirty
small ops per direction, and autograd records and replays each; for the tiny
models a stack trains, those passes over small tensors, not the arithmetic,
set the time of the loss. The gradient of a
log-sum-exp loss is the softmax of its logits, which the forward already
computes, so here the forward keeps it and the backward is three batched
matmuls and a scatter per direction. When every anchor scores the whole
batch but its own item (the batch source), one logit matrix serves both
directions (:func:`batch_loss`). Values and gradients equal
``stacked_table_loss`` to float rounding (tests/test_cohort.py); on the
quickstart's stacks the loss with its backward takes a third less time.

Only for a fixed temperature: a learnable one (``model.learn_tau``) takes the
autograd path, where its gradient comes for free.
"""

from __future__ import annotations

from typing import Any

import torch

from negscale.losses import Form, fp32_scores

SOFTMAX_WIDTH = 16  # from this many columns torch.softmax beats the exp chain below


def _softmax_(logits: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(softmax, LSE) along ``dim`` of logits with -inf where skipped (in place when narrow).

    From ``SOFTMAX_WIDTH`` columns, torch's softmax kernel (its vectorised exp
    is some 2x the elementwise ``exp_``; the chain below took a tenth of a
    quickstart step) gives the softmax, and the LSE follows from its largest
    entry: p_max = exp(top - LSE), so LSE = top - log p_max. Narrower rows
    keep the chain, which torch's per-row cost makes faster there.
    """
    top = logits.amax(dim=dim, keepdim=True)  # finite: every row keeps a column
    if logits.shape[dim] >= SOFTMAX_WIDTH:
        prob = torch.softmax(logits, dim)
        return prob, (top - prob.amax(dim=dim, keepdim=True).log_()).squeeze(dim)
    prob = logits.sub_(top).exp_()  # one exp serves the LSE and the softmax
    total = prob.sum(dim=dim, keepdim=True)
    prob.div_(total)
    return prob, (top + total.log()).squeeze(dim)


def _form(lse: torch.Tensor, pos: torch.Tensor, tau: torch.Tensor, log_count: torch.Tensor,
          paper: bool) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """(R, B) losses from the LSEs and positive logits, and each anchor's dloss/dLSE."""
    if paper:  # tau * (LSE - s+/tau - log count): d/dLSE = tau, d/ds+ = -tau
        loss = tau[:, None] * (lse - pos - log_count[:, None])
        return loss, tau[:, None].expand_as(lse)
    # infonce: log(e^s+ + e^LSE) - s+: d/dLSE = sigmoid(LSE - s+) = -d/ds+
    return torch.logaddexp(pos, lse) - pos, torch.sigmoid(lse - pos)


def _direction(scaled: torch.Tensor, items: torch.Tensor, table: torch.Tensor,
               drop: torch.Tensor, pad: torch.Tensor | None, tau: torch.Tensor,
               log_count: torch.Tensor, paper: bool) -> tuple[torch.Tensor, ...]:  # fmt: skip
    """(R, B) losses, the (R, B, K) softmax over kept columns and each anchor's dloss/dlse."""
    logits = torch.bmm(scaled, table.transpose(1, 2))
    logits.scatter_(-1, drop, float("-inf"))  # a row's own column (a mask read cost more)
    if pad is not None:  # 0 or -inf a column: an add (a masked fill took 2.5 ns an element)
        logits.add_(pad)
    prob, lse = _softmax_(logits, -1)
    loss, coef = _form(lse, (scaled * items).sum(dim=-1), tau, log_count, paper)
    return loss, prob, coef


def _grads(scaled: torch.Tensor, items: torch.Tensor, table: torch.Tensor,
           prob: torch.Tensor, weight: torch.Tensor, inv: torch.Tensor,
           index: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Gradients of one direction's weighted losses w.r.t. its anchors and its items."""
    grad_logits = prob.mul_(weight[..., None])
    d_scaled = torch.bmm(grad_logits, table).sub_(weight[..., None] * items)
    d_table = torch.bmm(grad_logits.transpose(1, 2), scaled)
    d_items = -weight[..., None] * scaled
    if index is None:  # every batch row is a column, in order
        d_items += d_table
    else:
        d_items.scatter_add_(1, index, d_table)
    return d_scaled.mul_(inv), d_items


class _TableLoss(torch.autograd.Function):
    """Both directions' mean losses (R,) forward; the saved softmaxes give the backward."""

    @staticmethod
    def forward(ctx: Any, img: torch.Tensor, txt: torch.Tensor, columns: torch.Tensor | None,
                drop: torch.Tensor, pad: torch.Tensor | None, count: torch.Tensor,
                tau: torch.Tensor, paper: bool) -> torch.Tensor:  # fmt: skip
        inv = (1.0 / tau)[:, None, None]
        index = None if columns is None else columns[:, :, None].expand(-1, -1, img.shape[-1])
        log_count = count.log()
        drop = drop[..., None]
        saved, total = [], torch.zeros_like(img[:, :, 0])
        for anchors, items in ((img, txt), (txt, img)):
            scaled = anchors * inv
            table = items if index is None else torch.gather(items, 1, index)
            loss, prob, coef = _direction(scaled, items, table, drop, pad, tau, log_count,
                                           paper)  # fmt: skip
            total += loss
            saved += [scaled, table, prob, coef]
        ctx.save_for_backward(img, txt, inv, *saved)
        ctx.index = index
        return 0.5 * total.mean(dim=-1)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        img, txt, inv, s1, t1, p1, c1, s2, t2, p2, c2 = ctx.saved_tensors
        per_anchor = grad[:, None] * (0.5 / img.shape[1])
        a1, i1 = _grads(s1, txt, t1, p1, c1 * per_anchor, inv, ctx.index)  # img -> txt
        a2, i2 = _grads(s2, img, t2, p2, c2 * per_anchor, inv, ctx.index)  # txt -> img
        return a1 + i2, i1 + a2, None, None, None, None, None, None


class _BatchLoss(torch.autograd.Function):
    """The whole batch, each anchor skipping its own item: one (R, B, B) logit matrix
    serves both directions (the text anchors' logits are its transpose), so one
    matmul forward and two backward instead of two and four."""

    @staticmethod
    def forward(ctx: Any, img: torch.Tensor, txt: torch.Tensor, tau: torch.Tensor,
                paper: bool) -> torch.Tensor:  # fmt: skip
        inv = (1.0 / tau)[:, None, None]
        scaled = img * inv
        logits = torch.bmm(scaled, txt.transpose(1, 2))
        pos = logits.diagonal(dim1=1, dim2=2).clone()  # s+/tau of both directions
        logits.diagonal(dim1=1, dim2=2).fill_(float("-inf"))
        log_count = torch.full_like(tau, img.shape[1] - 1.0).log()
        wide = logits.shape[-1] >= SOFTMAX_WIDTH  # torch.softmax leaves its input as it was
        by_row, lse_row = _softmax_(logits if wide else logits.clone(), -1)  # image anchors
        by_col, lse_col = _softmax_(logits, 1)  # text anchors
        loss_row, coef_row = _form(lse_row, pos, tau, log_count, paper)
        loss_col, coef_col = _form(lse_col, pos, tau, log_count, paper)
        ctx.save_for_backward(txt, scaled, inv, by_row, by_col, coef_row, coef_col)
        return 0.5 * (loss_row + loss_col).mean(dim=-1)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        txt, scaled, inv, by_row, by_col, coef_row, coef_col = ctx.saved_tensors
        per_anchor = grad[:, None] * (0.5 / txt.shape[1])
        row, col = coef_row * per_anchor, coef_col * per_anchor
        grad_logits = by_row.mul_(row[:, :, None]).add_(by_col.mul_(col[:, None, :]))
        both = (row + col)[..., None]  # each positive logit is in both directions
        d_img = torch.bmm(grad_logits, txt).sub_(both * txt).mul_(inv)
        d_txt = torch.bmm(grad_logits.transpose(1, 2), scaled).sub_(both * scaled)
        return d_img, d_txt, None, None


def _is_paper(form: Form) -> bool:
    if form not in ("paper", "infonce"):
        raise ValueError(f"unknown loss form {form!r}")
    return form == "paper"


@fp32_scores
def fused_table_loss(img: torch.Tensor, txt: torch.Tensor, columns: torch.Tensor | None,
                     drop: torch.Tensor, count: torch.Tensor, *, tau: torch.Tensor,
                     form: Form, pad: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
    """(R,) symmetric losses, as ``stacked_table_loss``, of tables given as column indices.

    ``columns``: (R, K) batch rows each run scores (None: all B rows, in order);
    ``drop``: (R, B) in [0, K), the column anchor i does not score (its own item
    or the extra column); ``pad``: (R, 1, K), -inf on columns a run does not
    score at all (padding up to K) and 0 elsewhere, or None; ``count``: (R,) negatives per
    anchor (K minus the skipped columns of any row, the same for every row);
    ``tau``: (R,), not learnable.
    """
    return _TableLoss.apply(img, txt, columns, drop, pad, count.to(img.dtype), tau.detach(),
                            _is_paper(form))  # fmt: skip


@fp32_scores
def batch_loss(img: torch.Tensor, txt: torch.Tensor, *, tau: torch.Tensor,
               form: Form) -> torch.Tensor:  # fmt: skip
    """(R,) symmetric losses of the whole batch, each anchor skipping its own item
    (the batch source's table), from one logit matrix a run; ``tau`` not learnable."""
    return _BatchLoss.apply(img, txt, tau.detach(), _is_paper(form))
