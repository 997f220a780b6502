"""Contrastive losses as pure functions: scores in, per-anchor or scalar loss out.

Two forms (docs/theory.md), for an anchor with positive score s+ and negative scores
s-_1..s-_m:

- ``paper``:   tau * log( (1/m) * sum_j exp((s-_j - s+) / tau) )   positive excluded,
  an *average* over the m negatives (the paper's log-mean-exp form).
- ``infonce``: -log( exp(s+/tau) / (exp(s+/tau) + sum_j exp(s-_j/tau)) )   CLIP's
  cross-entropy; in-batch and symmetrised it equals open_clip's ``ClipLoss``.

Both depend on the negatives only through the log-sum-exp of their logits and
their count, so every path reduces to (positive logit, negative LSE, count) and
one combiner, :func:`loss_from_lse`. Anchors left without any negative score 0
(no contrastive signal, no NaN): e.g. the one pool item of a pool of size 1.

Negatives come in three shapes: ``None`` (the other positives of the batch),
a shared ``(M, d)`` set (pool, queue, subsample) or per-anchor ``(B, m, d)``
draws (independent), one function each (:func:`in_batch_loss`,
:func:`shared_negatives_loss`, :func:`own_negatives_loss`; the public
:func:`contrastive_loss` picks one by shape). A boolean ``negative_mask``
(True = use) removes entries, such as an anchor's own positive inside a
shared pool; each anchor then averages over the negatives it actually has.

Every score matrix whose columns are shared by all anchors (in-batch, pool,
queue, subsample, ``val_loss``) goes through the shared-tile LSE of
:mod:`negscale.tiled_lse`: row blocks x column tiles, one tile pass giving
both directions' LSE, a backward that recomputes each tile, O(tile) memory
and about 1.5x the FLOP floor on a CPU. Per-anchor draws through an index
use a column-tiled LSE (:func:`tiled_logsumexp`). :func:`subsample_loss`
scores only the m + 1 columns a shared random m-subset uses.

Why one module of about 500 lines: every form and every shape of negatives
reduces to the same (positive logit, negative LSE, count) combiner, and the
per-shape functions, the tiled LSE callers and the subsample path share it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Literal, TypeVar

import torch

from negscale.tiled_lse import COLS, shared_tile_lse

Form = Literal["paper", "infonce"]
F = TypeVar("F", bound=Callable[..., Any])


def fp32_scores(fn: F) -> F:
    """Score in float32 even inside a bf16/fp16 autocast region.

    Logits s/tau reach 1/tau (up to 100), where bf16 keeps about three
    significant digits: enough to move a loss visibly. The encoders still run
    in reduced precision; only the scoring is promoted.
    """

    def promote(value: Any) -> Any:
        if isinstance(value, torch.Tensor) and value.dtype in (torch.bfloat16, torch.float16):
            return value.float()
        return value

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        device = next((a.device.type for a in args if isinstance(a, torch.Tensor)), "cpu")
        with torch.autocast(device, enabled=False):
            return fn(*map(promote, args), **{k: promote(v) for k, v in kwargs.items()})

    return wrapper  # type: ignore[return-value]


# ---------------------------------------------------------------- combiner


def loss_from_lse(
    pos_logits: torch.Tensor,
    neg_lse: torch.Tensor,
    count: torch.Tensor,
    *,
    tau: float | torch.Tensor,
    form: Form = "paper",
) -> torch.Tensor:
    """Per-anchor loss from s+/tau ``(B,)``, the LSE of the negative logits and their count.

    ``paper``: tau * (LSE - s+/tau - log count); ``infonce``: log(exp(s+/tau) + exp(LSE)) - s+/tau.
    Anchors with ``count == 0`` get 0 and a zero gradient.
    """
    if form not in ("paper", "infonce"):
        raise ValueError(f"unknown loss form {form!r}")
    has = count > 0
    lse = torch.where(has, neg_lse, torch.zeros_like(neg_lse))
    if form == "infonce":
        return torch.where(has, torch.logaddexp(pos_logits, lse), pos_logits) - pos_logits
    log_count = torch.log(count.to(pos_logits.dtype).clamp(min=1))
    value = tau * (lse - pos_logits - log_count)
    return torch.where(has, value, torch.zeros_like(value))


def _dense_lse(
    logits: torch.Tensor, mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(LSE over kept entries, count kept) of a dense ``(B, M)`` logit matrix.

    Dropped entries are -inf (exp gives an exact 0 on the fast path, unlike
    a finite fill such as finfo.min, whose exp underflows slowly). A row with
    nothing kept is scored as zeros and reported as -inf, so its LSE has a
    finite, zero gradient (0 after :func:`loss_from_lse`).
    """
    if mask is None:
        count = torch.full(logits.shape[:1], logits.shape[1], device=logits.device)
        return torch.logsumexp(logits, dim=1), count
    count = mask.sum(dim=1)
    empty = (count == 0)[:, None]
    filled = logits.masked_fill(~mask, float("-inf")).masked_fill(empty, 0.0)
    lse = torch.logsumexp(filled, dim=1)
    return torch.where(count > 0, lse, torch.full_like(lse, float("-inf"))), count


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
    lse, count = _dense_lse(neg / tau, mask)
    return loss_from_lse(pos / tau, lse, count, tau=tau, form=form)


# ---------------------------------------------------------------- tiled LSE


def _index_logits(
    q: torch.Tensor,
    k: torch.Tensor,
    index: torch.Tensor,
    exclude: torch.Tensor | None,
    mask: torch.Tensor | None,
    start: int,
    stop: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits of per-anchor draws [start, stop) with dropped entries at -inf; keys, ids."""
    cols = index[:, start:stop]
    keys = k[cols]  # (B, t, d)
    logits = torch.einsum("bd,btd->bt", q, keys)
    drop = None if exclude is None else cols == exclude[:, None]
    if mask is not None:
        keep = mask[:, start:stop]
        drop = ~keep if drop is None else drop | ~keep
    if drop is not None:
        logits = logits.masked_fill(drop, float("-inf"))
    return logits, keys, cols


class _IndexedLSE(torch.autograd.Function):
    """LSE_t (q_i . k[index[i, t]]) over tiles of draws; backward recomputes each tile.

    Saves only q, k, the (B,) result and the index/mask inputs, so no (B, m)
    float tensor outlives a tile.
    """

    @staticmethod
    def forward(
        ctx: Any,
        q: torch.Tensor,
        k: torch.Tensor,
        index: torch.Tensor,
        exclude: torch.Tensor | None,
        mask: torch.Tensor | None,
        width: int,
    ) -> torch.Tensor:
        k = k.to(q.dtype)
        lse = torch.full(q.shape[:1], float("-inf"), dtype=q.dtype, device=q.device)
        with torch.autocast(q.device.type, enabled=False):
            for start in range(0, index.shape[1], width):
                stop = min(start + width, index.shape[1])
                logits, _, _ = _index_logits(q, k, index, exclude, mask, start, stop)
                lse = torch.logaddexp(lse, torch.logsumexp(logits, dim=1))
        ctx.save_for_backward(q, k, index, exclude, mask, lse)
        ctx.width = width
        return lse

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        q, k, index, exclude, mask, lse = ctx.saved_tensors
        gq = torch.zeros_like(q) if ctx.needs_input_grad[0] else None
        gk = torch.zeros_like(k) if ctx.needs_input_grad[1] else None
        # rows with no negatives have lse = -inf and every logit -inf: weight 0, not NaN
        base = torch.where(torch.isfinite(lse), lse, torch.zeros_like(lse))
        with torch.autocast(q.device.type, enabled=False):
            for start in range(0, index.shape[1], ctx.width):
                stop = min(start + ctx.width, index.shape[1])
                logits, keys, cols = _index_logits(q, k, index, exclude, mask, start, stop)
                w = torch.exp(logits - base[:, None]) * grad[:, None]  # dL/dlogit
                if gq is not None:
                    gq += torch.einsum("bt,btd->bd", w, keys)
                if gk is not None:
                    contrib = (w[:, :, None] * q[:, None, :]).reshape(-1, q.shape[1])
                    gk.index_add_(0, cols.reshape(-1), contrib)
        return gq, gk, None, None, None, None


@fp32_scores
def tiled_logsumexp(
    queries: torch.Tensor,
    keys: torch.Tensor,
    *,
    tile: int | None,
    index: torch.Tensor | None = None,
    exclude: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """log sum_j exp(queries_i . keys_j) over anchor i's negatives, never holding (B, M) floats.

    ``index`` (B, m) makes anchor i's negatives ``keys[index[i]]`` (per-anchor
    draws, repeats counted) instead of all keys. ``exclude`` (B,) names one key
    row that is never anchor i's negative (-1: none), e.g. its own positive.
    ``mask`` (B, M) with True = keep drops more. Shared keys go through the
    shared-tile kernel (:mod:`negscale.tiled_lse`, tiles of at most ``tile``
    columns); per-anchor tiles gather (B, t, d) keys, so their width is
    ``tile // d`` to keep O(B * tile) memory. Rows without negatives give -inf
    (and zero gradient).
    """
    if index is None:
        lse, _ = shared_tile_lse(queries, keys, cols=False, exclude=exclude, mask=mask, width=tile)
        return lse
    width = max(1, (tile or COLS) // queries.shape[1])
    return _IndexedLSE.apply(queries, keys, index, exclude, mask, width)


@fp32_scores
def negative_lse(
    anchors: torch.Tensor,
    keys: torch.Tensor,
    *,
    tau: float | torch.Tensor,
    tile: int | None = None,
    index: torch.Tensor | None = None,
    exclude: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(LSE of the negative logits s/tau, number of negatives) per anchor.

    Negatives as in :func:`tiled_logsumexp`. Shared keys always use the
    shared-tile kernel (``tile`` caps its width). Per-anchor draws are dense
    when they fit in ``tile`` columns (or ``tile`` is None), tiled otherwise;
    every path gives the same values and gradients.
    """
    count = _count(anchors.shape[0], keys.shape[0], index, exclude, mask, anchors.device)
    queries = anchors / tau
    if index is None or (tile is not None and index.shape[1] > tile):
        kw = {"index": index, "exclude": exclude, "mask": mask}
        return tiled_logsumexp(queries, keys, tile=tile, **kw), count
    logits = (queries @ keys.T).gather(1, index)
    keep = mask
    if exclude is not None:
        own = index == exclude[:, None]
        keep = ~own if keep is None else keep & ~own
    lse, _ = _dense_lse(logits, keep)
    return lse, count


def _count(
    batch: int,
    rows: int,
    index: torch.Tensor | None,
    exclude: torch.Tensor | None,
    mask: torch.Tensor | None,
    device: torch.device,
) -> torch.Tensor:
    """Negatives per anchor, without building a (B, M) mask for shared keys."""
    if index is not None:
        keep = torch.ones_like(index, dtype=torch.bool) if mask is None else mask
        if exclude is not None:
            keep = keep & (index != exclude[:, None])
        return keep.sum(dim=1)
    count = torch.full((batch,), rows, device=device) if mask is None else mask.sum(dim=1)
    if exclude is not None:
        hit = (exclude >= 0) & (exclude < rows)
        if mask is not None:
            hit = hit & mask.gather(1, exclude.clamp(0, rows - 1)[:, None])[:, 0]
        count = count - hit.long()
    return count


@fp32_scores
def in_batch_lse(
    anchors: torch.Tensor,
    positives: torch.Tensor,
    *,
    tau: float | torch.Tensor,
    tile: int | None = None,
    negative_mask: torch.Tensor | None = None,
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """(LSE, count) of both directions with the batch's other items as negatives.

    One score matrix serves both directions (rows: anchor -> positives,
    columns: positive -> anchors), in shared tiles of at most ``tile``
    columns. ``negative_mask[i, j]`` keeps item j as a negative of pair i
    either way; the column direction then needs the transposed mask, so an
    asymmetric mask costs one row-only pass per direction.
    """
    b, dev, width = anchors.shape[0], anchors.device, tile
    own = torch.arange(b, device=dev)
    if negative_mask is None:
        lse, back = shared_tile_lse(anchors / tau, positives, exclude=own, width=width)
        count = torch.full((b,), b - 1, device=dev)
        return (lse, count), (back, count)
    count = (negative_mask & in_batch_mask(b, dev)).sum(dim=1)
    if torch.equal(negative_mask, negative_mask.T):  # one kept set serves both directions
        kw = {"exclude": own, "mask": negative_mask, "width": width}
        lse, back = shared_tile_lse(anchors / tau, positives, **kw)
        return (lse, count), (back, count)
    # rows keep negative_mask, columns its transpose: one row-only pass per direction
    kw = {"cols": False, "exclude": own, "mask": negative_mask, "width": width}
    lse, _ = shared_tile_lse(anchors / tau, positives, **kw)
    back, _ = shared_tile_lse(positives / tau, anchors, **kw)
    return (lse, count), (back, count)


def in_batch_mask(batch: int, device: torch.device | None = None) -> torch.Tensor:
    """(B, B) mask that keeps every item but the diagonal (the anchor's own positive)."""
    return ~torch.eye(batch, dtype=torch.bool, device=device)


def _reduce(loss: torch.Tensor, reduction: Literal["mean", "none"]) -> torch.Tensor:
    return loss.mean() if reduction == "mean" else loss


@fp32_scores
def in_batch_loss(
    anchors: torch.Tensor,
    positives: torch.Tensor,
    *,
    tau: float | torch.Tensor,
    form: Form,
    negative_mask: torch.Tensor | None = None,
    symmetric: bool = True,
    reduction: Literal["mean", "none"] = "mean",
    tile: int | None = None,
) -> torch.Tensor:
    """The other positives of the batch are the negatives (m = B - 1, or fewer under
    ``negative_mask`` (B, B): item j is a negative of pair i in either direction);
    ``symmetric`` averages both directions, as CLIP does."""
    pos_logits = (anchors * positives).sum(dim=-1) / tau
    if form == "infonce" and negative_mask is None:
        # the positive sits on the diagonal: LSE over a whole row (column) is the
        # InfoNCE denominator, so nothing is dropped (cross-entropy, as ClipLoss)
        lse, back_lse = shared_tile_lse(anchors / tau, positives, cols=symmetric, width=tile)
        loss = lse - pos_logits
        if symmetric:
            loss = 0.5 * (loss + back_lse - pos_logits)
        return _reduce(loss, reduction)
    if not symmetric:
        own = torch.arange(anchors.shape[0], device=anchors.device)
        kw = {"tau": tau, "tile": tile, "exclude": own, "mask": negative_mask}
        lse, count = negative_lse(anchors, positives, **kw)
        return _reduce(loss_from_lse(pos_logits, lse, count, tau=tau, form=form), reduction)
    (lse, count), (back_lse, back_count) = in_batch_lse(
        anchors, positives, tau=tau, tile=tile, negative_mask=negative_mask
    )
    loss = loss_from_lse(pos_logits, lse, count, tau=tau, form=form)
    back = loss_from_lse(pos_logits, back_lse, back_count, tau=tau, form=form)
    return _reduce(0.5 * (loss + back), reduction)


@fp32_scores
def shared_negatives_loss(
    anchors: torch.Tensor,
    positives: torch.Tensor,
    negatives: torch.Tensor,
    *,
    tau: float | torch.Tensor,
    form: Form,
    negative_index: torch.Tensor | None = None,
    exclude: torch.Tensor | None = None,
    negative_mask: torch.Tensor | None = None,
    reduction: Literal["mean", "none"] = "mean",
    tile: int | None = None,
) -> torch.Tensor:
    """Anchor direction against a shared (M, d) table: every row is every anchor's
    negative, or anchor i's are ``negatives[negative_index[i]]`` (repeats counted);
    ``exclude`` (B,) names a row that is not anchor i's negative (its own; -1: none)."""
    if negatives.dim() != 2:
        raise ValueError("shared negatives are an (M, d) table")
    pos_logits = (anchors * positives).sum(dim=-1) / tau
    lse, count = negative_lse(anchors, negatives, tau=tau, tile=tile, index=negative_index,
                              exclude=exclude, mask=negative_mask)  # fmt: skip
    return _reduce(loss_from_lse(pos_logits, lse, count, tau=tau, form=form), reduction)


@fp32_scores
def own_negatives_loss(
    anchors: torch.Tensor,
    positives: torch.Tensor,
    negatives: torch.Tensor,
    *,
    tau: float | torch.Tensor,
    form: Form,
    negative_mask: torch.Tensor | None = None,
    reduction: Literal["mean", "none"] = "mean",
) -> torch.Tensor:
    """Anchor direction against each anchor's own (B, m, d) negatives."""
    if negatives.dim() != 3:
        raise ValueError("each anchor's own negatives are a (B, m, d) tensor")
    pos = (anchors * positives).sum(dim=-1)
    scores = torch.einsum("bd,bmd->bm", anchors, negatives)
    return _reduce(loss_from_scores(pos, scores, tau=tau, form=form, mask=negative_mask), reduction)


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
    tile: int | None = None,
    negative_index: torch.Tensor | None = None,
    exclude: torch.Tensor | None = None,
) -> torch.Tensor:
    """Contrastive loss of ``anchors`` against ``positives`` (row-paired) and negatives:
    the public entry that picks the function of the negatives' shape.

    ``negatives=None``: :func:`in_batch_loss` (``symmetric`` averages both
    directions); (M, d): :func:`shared_negatives_loss` (``negative_index``,
    ``exclude``); (B, m, d): :func:`own_negatives_loss`. Only the anchor
    direction is scored against given negatives. Every score matrix with shared
    columns goes through the shared-tile LSE (:mod:`negscale.tiled_lse`):
    tiles of at most ``tile`` columns (default and cap per device:
    :func:`~negscale.tiled_lse.tile_shape`), the same values and gradients as
    the dense loss, O(tile) loss memory. ``form`` defaults to the paper's
    (0.1.0's default, kept for callers of this function); recipes default to
    ``infonce`` and the per-shape functions take it explicitly.
    """
    if (negative_index is not None or exclude is not None) and (
        negatives is None or negatives.dim() != 2
    ):
        raise ValueError("negative_index and exclude need shared (M, d) negatives")
    common = {"tau": tau, "form": form, "negative_mask": negative_mask, "reduction": reduction}
    if negatives is None:
        return in_batch_loss(anchors, positives, symmetric=symmetric, tile=tile, **common)
    if negatives.dim() == 2:
        return shared_negatives_loss(anchors, positives, negatives, tile=tile,
                                     negative_index=negative_index, exclude=exclude,
                                     **common)  # fmt: skip
    if negatives.dim() == 3:
        return own_negatives_loss(anchors, positives, negatives, **common)
    raise ValueError("negatives must be None, (M, d) or (B, m, d)")


def order_rank(order: torch.Tensor) -> torch.Tensor:
    """Each batch item's position in ``order`` (the inverse permutation)."""
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.shape[0], device=order.device)
    return rank


def subsample_columns(
    order: torch.Tensor, m: int, rank: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(items scored, position each anchor drops) for a shared random m-subset of the batch.

    ``order`` is the step's random permutation of the batch; anchor i's
    negatives are the first m items of ``order`` other than itself. So only
    the first m + 1 items are ever scored: an anchor among the first m drops
    its own position, every other anchor drops position m (item ``order[m]``).
    ``rank``: :func:`order_rank` of ``order``, when the caller already has it.
    """
    b = order.shape[0]
    if not 1 <= m <= b - 1:
        raise ValueError(f"subsample needs 1 <= m <= B-1 = {b - 1}, got {m}")
    rank = order_rank(order) if rank is None else rank
    return order[: m + 1], rank.clamp(max=m)


@fp32_scores
def subsample_loss(
    img: torch.Tensor,
    txt: torch.Tensor,
    order: torch.Tensor,
    m: int,
    *,
    tau: float | torch.Tensor,
    form: Form = "paper",
) -> torch.Tensor:
    """Symmetric loss with a shared random m-subset of the batch as every anchor's negatives.

    Equal (values and gradients) to ``contrastive_loss(img, txt,
    negative_mask=mask, symmetric=True)`` with the mask that ``order`` defines
    (see :func:`subsample_columns`), but each direction scores only the
    B x (m + 1) columns it uses, as a shared table with the anchor's own item
    excluded: cost O(B m d), not O(B^2 d), and no fill value is exponentiated.
    m = B - 1 is the batch loss (one score matrix serves both directions).
    """
    cols, drop = subsample_columns(order.to(img.device), m)
    if m == img.shape[0] - 1:  # every other item: the batch loss, one shared score matrix
        return in_batch_loss(img, txt, tau=tau, form=form)
    kw: dict[str, Any] = {"tau": tau, "form": form, "exclude": drop, "reduction": "none"}
    fwd = shared_negatives_loss(img, txt, txt[cols], **kw)
    back = shared_negatives_loss(txt, img, img[cols], **kw)
    return (0.5 * (fwd + back)).mean()
