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
of those equal to it (one positive per row: direct comparisons; several: one
sort per row and running counts over its tie groups).
"""

from __future__ import annotations

import numpy as np
import torch

RECALL_KS = (1, 5, 10)


def _wins(scores: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Per row: the sum over positives of the negatives below them, ties counting 1/2.

    One sort per row; equal scores form tie groups, and each positive counts
    the negatives of earlier groups plus half of its own group's (one sort and
    running counts, where searching every score among the sorted row cost 7x).
    """
    values, order = scores.sort(dim=1)
    p = pos.gather(1, order)
    rows, cols = values.shape
    starts = torch.ones_like(p)
    starts[:, 1:] = values[:, 1:] != values[:, :-1]
    group = starts.long().cumsum(dim=1) - 1  # tie group of each sorted score, per row
    flat = (group + torch.arange(rows)[:, None] * cols).flatten()
    in_group = torch.zeros(rows * cols, dtype=torch.long)
    in_group.index_add_(0, flat, (~p).long().flatten())
    in_group = in_group.view(rows, cols)  # negatives in group g of the row, at column g
    below = in_group.cumsum(dim=1) - in_group  # negatives in the groups before g
    wins = below.gather(1, group).double() + 0.5 * in_group.gather(1, group).double()
    return (wins * p).sum(dim=1)


def auc_by_counting(scores: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Per-row ROC AUC (float64): P(positive > negative) + 1/2 P(tie), NaN without both kinds."""
    n_pos, n_neg = pos.sum(dim=1).double(), (~pos).sum(dim=1).double()
    if bool((n_pos == 1).all()):  # one positive per row (instance retrieval): no sort needed
        p = scores.masked_fill(~pos, 0).sum(dim=1, keepdim=True)
        below = (scores < p).sum(dim=1).double()
        ties = (scores == p).sum(dim=1).double() - 1.0  # the positive equals itself
        return (below + 0.5 * ties) / n_neg
    return _wins(scores, pos) / (n_pos * n_neg)


def _instance_counts(scores: torch.Tensor, start: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rank and AUC of rows whose positive is key ``start + row`` (what the masks compute).

    A positive counts itself once among the scores at least its own, and once
    among the equal ones, so each count drops one (none for a NaN positive, which
    equals nothing).
    """
    count = scores.shape[0]
    p = scores[torch.arange(count), torch.arange(start, start + count)][:, None]
    itself = (p == p).long().squeeze(1)
    at_least = (scores >= p).sum(dim=1) - itself
    below = (scores < p).sum(dim=1).double()
    ties = (scores == p).sum(dim=1).double() - 1.0
    return 1 + at_least, (below + 0.5 * ties) / (scores.shape[1] - 1)


def retrieval_metrics(
    queries: torch.Tensor,
    keys: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    chunk: int = 1024,
) -> dict[str, float]:
    """recall_at_{1,5,10}, auc and mean_rank for the queries -> keys direction."""
    dtype = torch.promote_types(torch.promote_types(queries.dtype, keys.dtype), torch.float32)
    queries, keys = queries.detach().to("cpu", dtype), keys.detach().to("cpu", dtype)
    if queries.shape[0] != keys.shape[0]:
        raise ValueError("queries and keys must be row-paired (same number of rows)")
    labels = None if labels is None else labels.detach().cpu()
    n = queries.shape[0]
    ranks, aucs = [], []
    for start in range(0, n, chunk):
        rows = slice(start, min(start + chunk, n))
        scores = queries[rows] @ keys.T
        if labels is None:  # the positive is the diagonal: no masks (a 3x faster eval)
            rank, auc_rows = _instance_counts(scores, start)
            ranks.append(rank)
            aucs.append(auc_rows)
            continue
        pos = labels[rows, None] == labels[None, :]  # every key of the query's class
        best_pos = scores.masked_fill(~pos, float("-inf")).max(dim=1).values
        neg_at_least = ((scores >= best_pos[:, None]) & ~pos).sum(dim=1)
        ranks.append(1 + neg_at_least)
        aucs.append(auc_by_counting(scores, pos))
    rank = torch.cat(ranks).double()
    auc = torch.cat(aucs).numpy()
    out = {f"recall_at_{k}": float((rank <= k).double().mean()) for k in RECALL_KS}
    out["auc"] = float(np.nanmean(auc)) if np.isfinite(auc).any() else float("nan")
    out["mean_rank"] = float(rank.mean())
    return out


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
