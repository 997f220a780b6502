"""Chance levels: what a scorer that cannot tell pairs apart gets, on this run's data.

They depend only on the evaluated data (held-out pairs, classes) and the loss
form, never on the m a run trained with, so tables can print them beside the
metrics and the collapse check can compare the training loss with its own.
"""

from __future__ import annotations

import math


def chance_levels(n_eval: int, num_classes: int | None = None) -> dict[str, float]:
    """Held-out metrics of a random (or constant) scorer over ``n_eval`` pairs.

    recall@k = k / n_eval (one positive among n_eval candidates), AUC = 1/2,
    mean rank = (n_eval + 1) / 2, val_loss = ln(n_eval) (InfoNCE over all
    held-out pairs with equal scores), zero-shot top-1 = 1 / classes.
    """
    out = {f"recall_at_{k}": min(k / n_eval, 1.0) for k in (1, 5, 10)}
    out.update(auc=0.5, mean_rank=(n_eval + 1) / 2, val_loss=math.log(n_eval))
    if num_classes:
        out["zeroshot_top1"] = 1 / num_classes
    return out


def chance_train_loss(loss_form: str, negatives_per_anchor: float) -> float:
    """The training loss with every score equal: ln(m+1) for infonce, 0 for paper's form."""
    return math.log(negatives_per_anchor + 1.0) if loss_form == "infonce" else 0.0
