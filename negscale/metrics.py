"""Retrieval metrics on held-out pairs: Recall@K, the paper's AUC, mean rank, zero-shot.

Scores are dot products of the rows as given (normalise first for cosine).
Row i of ``queries`` matches row i of ``keys``.

- Without labels the positive of query i is key i, every other key a negative.
- With labels every key of the query's class is a positive and the keys of
  other classes are the negatives (the supervised view of docs/theory.md).

AUC (docs/theory.md): per query, the fraction of (positive, negative) pairs where the
positive scores higher, ties counting 1/2, averaged over queries; with one
positive this is the fraction of negatives ranked below it, and in general the
query's ROC AUC. Recall@K and rank break ties *against* the positive: rank =
1 + number of negatives scoring at least the best positive.

Scores keep the inputs' precision (float64 stays float64; lower precisions
are promoted to float32), so ties and orderings are the caller's. AUC is
counted, not ranked: per positive, the negatives strictly below it plus half
of those equal to it (one positive per row: direct comparisons; several: a
rank sum over one sort per row, ties as midranks).
"""

from __future__ import annotations

import numpy as np
import torch

RECALL_KS = (1, 5, 10)


def _wins(scores: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Per row: the sum over positives of the negatives below them, ties counting 1/2.

    A rank sum (Mann-Whitney): a score in the sorted row's tie group [s, e) has
    s scores below it and e - s equal to it (itself included), so it beats
    (s + e) / 2 of the row; the positives among themselves account for P²/2 of
    that, whatever their order, so twice the wins are sum(s + e) - P², all in
    integers. Without ties (the usual case for float scores) s is the sorted
    position and e = s + 1. The row sort is numpy's (vectorised quicksort:
    about 2.7x torch.sort on the CPU; the order within a tie group is moot).
    """
    order = torch.from_numpy(np.argsort(scores.numpy(), axis=1))
    values, p = scores.gather(1, order), pos.gather(1, order)
    cols = values.shape[1]
    at = torch.arange(cols)
    n_pos = p.sum(dim=1)
    change = values[:, 1:] != values[:, :-1]  # NaN never equals: a group of its own
    if bool(change.all()):
        twice = 2 * torch.where(p, at, 0).sum(dim=1) + n_pos
    else:
        first, last = torch.ones_like(p), torch.ones_like(p)
        first[:, 1:], last[:, :-1] = change, change
        s = torch.where(first, at, 0).cummax(dim=1).values
        e = torch.where(last, at + 1, cols).flip(1).cummin(dim=1).values.flip(1)
        twice = torch.where(p, s + e, 0).sum(dim=1)
    return (twice - n_pos * n_pos).double() / 2


def auc_by_counting(scores: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Per-row ROC AUC (float64): P(positive > negative) + 1/2 P(tie), NaN without both kinds."""
    n_pos, n_neg = pos.sum(dim=1).double(), (~pos).sum(dim=1).double()
    if bool((n_pos == 1).all()):  # one positive per row (instance retrieval): no sort needed
        p = scores.masked_fill(~pos, 0).sum(dim=1, keepdim=True)
        below = (scores < p).sum(dim=1).double()
        ties = (scores == p).sum(dim=1).double() - 1.0  # the positive equals itself
        return (below + 0.5 * ties) / n_neg
    return _wins(scores, pos) / (n_pos * n_neg)


def _positive_scores(scores: torch.Tensor, start: int) -> torch.Tensor:
    """(rows, 1): each row's positive score, key ``start + row``."""
    at = torch.arange(scores.shape[0])
    return scores[at, at + start][:, None]


def _instance_auc(scores: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """AUC of rows whose positive scores ``p``: negatives below, plus half the equal ones.

    One pass: with s = sum sign(score - p) over a row of N keys (the positive
    among them, as a tie), below + (ties - 1) / 2 = (N - 1 - s) / 2. The signs
    sum exactly in float32 below 2^24 keys; 5-8x faster than counting the
    ``<`` and ``==`` masks (selection's 50 evaluations a run are mostly this).
    A NaN score takes the counting path, whose comparisons treat it as unequal
    (torch's sign(NaN) is 0, a tie): a NaN makes its row's sum NaN, a cheaper
    test than ``isnan`` over every score (an infinite sum only takes the exact
    counting path too).
    """
    width = scores.shape[1]
    if width < 2**24 and bool(scores.sum(dim=1).isfinite().all()):
        s = (scores - p).sign_().sum(dim=1)
        return 0.5 * (width - 1 - s.double()) / (width - 1)
    below = (scores < p).sum(dim=1).double()
    ties = (scores == p).sum(dim=1).double() - 1.0
    return (below + 0.5 * ties) / (scores.shape[1] - 1)


def _instance_counts(scores: torch.Tensor, start: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rank and AUC of rows whose positive is key ``start + row`` (what the masks compute).

    A positive counts itself once among the scores at least its own, and once
    among the equal ones, so each count drops one (none for a NaN positive, which
    equals nothing).
    """
    p = _positive_scores(scores, start)
    itself = (p == p).long().squeeze(1)
    at_least = (scores >= p).sum(dim=1) - itself
    return 1 + at_least, _instance_auc(scores, p)


def _per_query(
    queries: torch.Tensor,
    keys: torch.Tensor,
    labels: torch.Tensor | None,
    chunk: int,
    ranks: bool,
) -> tuple[torch.Tensor | None, np.ndarray]:
    """Per query: the rank (when ``ranks``) and the AUC, a chunk of score rows at a time."""
    dtype = torch.promote_types(torch.promote_types(queries.dtype, keys.dtype), torch.float32)
    queries, keys = queries.detach().to("cpu", dtype), keys.detach().to("cpu", dtype)
    if queries.shape[0] != keys.shape[0]:
        raise ValueError("queries and keys must be row-paired (same number of rows)")
    labels = None if labels is None else labels.detach().cpu()
    n = queries.shape[0]
    rank_parts, aucs = [], []
    for start in range(0, n, chunk):
        rows = slice(start, min(start + chunk, n))
        scores = queries[rows] @ keys.T
        if labels is None:  # the positive is the diagonal: no masks (a 3x faster eval)
            if ranks:
                rank, auc_rows = _instance_counts(scores, start)
                rank_parts.append(rank)
            else:  # selection needs the AUC only: two comparison passes, not three
                auc_rows = _instance_auc(scores, _positive_scores(scores, start))
            aucs.append(auc_rows)
            continue
        pos = labels[rows, None] == labels[None, :]  # every key of the query's class
        if ranks:
            best_pos = scores.masked_fill(~pos, float("-inf")).max(dim=1).values
            rank_parts.append(1 + ((scores >= best_pos[:, None]) & ~pos).sum(dim=1))
        aucs.append(auc_by_counting(scores, pos))
    rank = torch.cat(rank_parts).double() if ranks else None
    return rank, torch.cat(aucs).numpy()


def _mean_auc(auc: np.ndarray) -> float:
    return float(np.nanmean(auc)) if np.isfinite(auc).any() else float("nan")


def retrieval_metrics(
    queries: torch.Tensor,
    keys: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    chunk: int = 1024,
) -> dict[str, float]:
    """recall_at_{1,5,10}, auc and mean_rank for the queries -> keys direction."""
    rank, auc = _per_query(queries, keys, labels, chunk, ranks=True)
    assert rank is not None
    out = {f"recall_at_{k}": float((rank <= k).double().mean()) for k in RECALL_KS}
    out["auc"] = _mean_auc(auc)
    out["mean_rank"] = float(rank.mean())
    return out


def retrieval_auc(
    queries: torch.Tensor,
    keys: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    chunk: int = 1024,
) -> float:
    """``retrieval_metrics(...)["auc"]``, the same number, without ranks (selection's metric)."""
    return _mean_auc(_per_query(queries, keys, labels, chunk, ranks=False)[1])


def stacked_mean_auc(image_emb: torch.Tensor, text_emb: torch.Tensor) -> list[float] | None:
    """``mean_auc`` of R runs' (R, v, d) embeddings of the same v pairs (instance retrieval).

    Runs trained together are validated together (:mod:`negscale.cohort`): one
    score matrix a run serves both directions (the text-to-image scores are
    its transpose), the one-pass sign sum of :func:`_instance_auc` runs over
    its rows for one direction and its columns for the other, and the two
    buffers are reused from run to run (fresh 4 MB matrices each time cost
    more in page faults than the sums). Two to three times faster than
    ``mean_auc`` run by run. None when a score is not finite: the per-run
    path counts those.
    """
    v = image_emb.shape[1]
    if v < 2 or v >= 2**24:
        return None
    image_emb = image_emb.detach().to("cpu", torch.float32)
    text_emb = text_emb.detach().to("cpu", torch.float32)
    scores = torch.empty(v, v)  # one run's matrix at a time stays in cache
    marks = torch.empty(v, v)
    out: list[float] = []
    for img, txt in zip(image_emb, text_emb, strict=True):
        torch.mm(img, txt.T, out=scores)
        if not bool(scores.sum().isfinite()):
            return None
        p = scores.diagonal().clone()
        torch.sub(scores, p[:, None], out=marks)
        rows = marks.sign_().sum(dim=1)  # image queries, text keys
        cols = scores.sub_(p[None, :]).sign_().sum(dim=0)  # text queries, image keys
        one, two = (0.5 * (v - 1 - s.double()) / (v - 1) for s in (rows, cols))
        out.append(float(0.5 * (one.mean() + two.mean())))
    return out


def mean_auc(
    image_emb: torch.Tensor,
    text_emb: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    class_level: bool = False,
) -> float:
    """``evaluate(...)["auc"]`` (the mean of both directions), the same number, AUC only."""
    by = labels if class_level else None
    return 0.5 * (retrieval_auc(image_emb, text_emb, by) + retrieval_auc(text_emb, image_emb, by))


def zeroshot_top1(
    image_emb: torch.Tensor,
    labels: torch.Tensor,
    proto_text_emb: torch.Tensor,
    proto_labels: torch.Tensor,
) -> float:
    """Top-1 accuracy of classifying images by the nearest class prototype.

    A class prototype is the normalised mean text embedding of that class
    (from captions outside the evaluated pairs); classes with no caption are
    not candidates.
    """
    classes = torch.unique(proto_labels)
    protos = torch.stack([proto_text_emb[proto_labels == c].mean(0) for c in classes])
    protos = torch.nn.functional.normalize(protos.float(), dim=-1)
    pred = classes[(image_emb.float() @ protos.T).argmax(dim=1)]
    return float((pred == labels).double().mean())


def evaluate(
    image_emb: torch.Tensor,
    text_emb: torch.Tensor,
    labels: torch.Tensor | None = None,
    proto: tuple[torch.Tensor, torch.Tensor] | None = None,
    *,
    class_level: bool = False,
) -> dict[str, float | None]:
    """Both directions (suffixes _i2t, _t2i), their means, and zero-shot top-1.

    Retrieval is instance-level (the paired item is the positive), or with
    ``class_level`` every item of the query's class; ``labels`` are also used
    for zero-shot classification with ``proto`` = (text embeddings, labels) of
    prototype captions.
    """
    by = labels if class_level else None
    i2t = retrieval_metrics(image_emb, text_emb, by)
    t2i = retrieval_metrics(text_emb, image_emb, by)
    out: dict[str, float | None] = {}
    for name in i2t:
        out[name] = 0.5 * (i2t[name] + t2i[name])
        out[f"{name}_i2t"] = i2t[name]
        out[f"{name}_t2i"] = t2i[name]
    out["zeroshot_top1"] = (
        zeroshot_top1(image_emb, labels, *proto) if labels is not None and proto else None
    )
    return out
