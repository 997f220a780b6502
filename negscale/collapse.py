"""Did the run learn? Two cheap checks that turn a silent failure into ``status = "collapsed"``.

A run that never learned still produces numbers: on scanned digits with too
high a learning rate, runs at small m ended with train loss exactly ln(m+1)
and AUC 0.500, and a fit happily extrapolated from them. The trainer asks this
module after evaluation, and records the reason in the run's ``message``.

1. **Collapsed embeddings.** Every held-out score equal (all images or all
   captions mapped to one point), or the final train loss at its chance level:
   ln(m+1) for ``infonce`` (m the negatives actually seen per anchor), 0 for
   the ``paper`` log-mean-exp form.
2. **No better than at initialisation.** Random towers already rank the
   held-out pairs above chance (AUC about 0.6 on images), so "at chance" is not
   the test: the run is compared with the same model at step 0, evaluated on
   the same held-out set. A run whose AUC improved by less than
   :func:`auc_margin` (two sds of a chance AUC on this many held-out pairs)
   did not learn; a learning rate of 1e-9 is caught here.
"""

from __future__ import annotations

import math

import torch

from negscale.chance import chance_train_loss

SCORE_SPREAD_TOL = 1e-4  # cosine scores lie in [-1, 1]: a spread below this is one point
LOSS_REL_TOL = 1e-3  # final train loss within 0.1 % of its chance level
SPREAD_SAMPLE = 512  # held-out pairs scored for the spread check


def auc_sd_at_chance(n_eval: int) -> float:
    """Seed-to-seed sd of the held-out AUC of a scorer that cannot tell pairs apart.

    Each query's AUC is then about uniform on [0, 1] (sd 1/sqrt(12)). The two
    directions share one score matrix, so the 2·n_eval queries count as about
    n_eval independent ones: sd 1/sqrt(12·n_eval). A Monte Carlo check with
    random embeddings gives 0.036 at n_eval = 64 and 0.017 at 256 (this: 0.036,
    0.018); tests/test_collapse.py repeats it.
    """
    return 1.0 / math.sqrt(12.0 * max(1, n_eval))


def auc_margin(n_eval: int) -> float:
    """The smallest AUC gain over initialisation that counts as learning: two chance sds.

    0.018 at n_eval = 1024, 0.051 at n_eval = 128. A healthy run gains tenths
    (0.43 in 12 steps on the test task); a run at lr 1e-9 gains about 1e-6.
    """
    return 2.0 * auc_sd_at_chance(n_eval)


def score_spread(img: torch.Tensor, txt: torch.Tensor) -> float:
    """Max minus min of the image-caption cosine scores of the first held-out pairs."""
    k = min(SPREAD_SAMPLE, len(img))
    scores = img[:k].float() @ txt[:k].float().T
    return float(scores.max() - scores.min())


def diagnose(
    *,
    spread: float | None,
    train_loss: float | None,
    loss_form: str,
    negatives_per_anchor: float,
    auc: float | None,
    auc_init: float | None,
    n_eval: int,
) -> str | None:
    """The reason this run did not learn, or None when it did (or nothing can tell)."""
    if spread is not None and spread < SCORE_SPREAD_TOL:
        return f"collapsed: every held-out score is equal (spread {spread:.2g})"
    if train_loss is not None:
        chance = chance_train_loss(loss_form, negatives_per_anchor)
        if abs(train_loss - chance) <= LOSS_REL_TOL * max(chance, 1.0):
            return (
                f"collapsed: final train loss {train_loss:.4f} is its chance level "
                f"{chance:.4f} ({loss_form}, {negatives_per_anchor:g} negatives)"
            )
    if auc is not None and auc_init is not None:
        margin = auc_margin(n_eval)
        if auc - auc_init < margin:
            return (
                f"collapsed: held-out AUC {auc:.4f} is no better than at initialisation "
                f"({auc_init:.4f}; learning needs a gain of at least {margin:.3f})"
            )
    return None
