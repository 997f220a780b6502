"""Ground truth for runs on data with a known density ratio (the synthetic vectors).

On the evaluation pairs of a run, the true scorer s*(x, y) = log p(y|x) / p(y)
(``PairedData.oracle``) gives the best achievable AUC and the best achievable
loss, so every such run also records how far it is from the optimum and
whether the calibration inequality of docs/theory.md,

    E* - E <= sqrt((2 / tau) * (L - L*)),

holds for it. Columns (all null for data without an oracle):

- ``auc_oracle``, ``recall_at_1_oracle``: E* and recall@1 of s* under the
  run's protocol (instance-level, both directions averaged, as ``auc``).
- ``loss_oracle``: L* = -tau * I_hat, the paper-form loss of s* with infinitely
  many negatives. I_hat is the plug-in mutual-information estimate
  (1/N) sum_i s*(x_i, y_i) over the N evaluation pairs: unbiased because s* is
  the exact log density ratio (its expectation over p(x, y) is I(X; Y)).
- ``loss_oracle_finite``: the paper-form loss of s* (logits s*, scaled by tau)
  under the same finite protocol as ``val_loss_paper`` (the other N - 1
  evaluation items as negatives). It sits below L* by the finite-negative bias
  of log-mean-exp (Jensen; about 0.5 nats at N = 1024 on the quickstart task).
- ``excess_auc``: E* - E.
- ``calibration_bound``: sqrt((2/tau) * max(0, L_N - L*_N)), L_N = the run's
  ``val_loss_paper``. Bias-corrected: L - L* is estimated as
  (L_N - b) - L* with b = L*_N - L*, the oracle's own finite-N bias measured on
  the same pairs, i.e. as L_N - L*_N. The correction assumes the model's bias
  equals the oracle's; a negative estimate (noise) is clamped to 0, never rooted.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from negscale.data.base import PairedData
from negscale.losses import loss_from_scores
from negscale.metrics import retrieval_metrics

COLUMNS = (
    "auc_oracle",
    "recall_at_1_oracle",
    "loss_oracle",
    "loss_oracle_finite",
    "excess_auc",
    "calibration_bound",
)


def oracle_scores(data: PairedData) -> torch.Tensor | None:
    """(N, N) true log ratios s*(x_i, y_j) of the evaluation pairs, or None without an oracle."""
    if data.oracle is None:
        return None
    ids = torch.arange(len(data.eval))
    return data.oracle.log_ratio("eval", ids, ids).double()


def paper_loss_of_scores(scores: torch.Tensor, tau: float) -> float:
    """Symmetric paper-form loss of a score matrix whose diagonal holds the positives.

    ``scores`` are logits (already divided by the temperature); the loss is
    tau * mean over anchors and both directions of
    log((1/(N-1)) sum_{j != i} exp(s_ij)) - s_ii.
    """
    n = scores.shape[0]
    off = ~torch.eye(n, dtype=torch.bool)
    pos = scores.diagonal()
    rows = loss_from_scores(pos, scores, tau=1.0, form="paper", mask=off)
    cols = loss_from_scores(pos, scores.T, tau=1.0, form="paper", mask=off)
    return tau * float(0.5 * (rows + cols).mean())


def score_retrieval(scores: torch.Tensor) -> dict[str, float]:
    """Retrieval metrics of a score matrix (rows: images, cols: texts), both directions."""
    eye = torch.eye(scores.shape[0], dtype=scores.dtype)
    i2t = retrieval_metrics(eye, scores.T.contiguous())  # eye @ scores = scores
    t2i = retrieval_metrics(eye, scores.contiguous())
    return {k: 0.5 * (i2t[k] + t2i[k]) for k in i2t}


_REFERENCES: dict[tuple[str, float], dict[str, float]] = {}  # a sweep's runs share one eval set


def oracle_reference(data: PairedData, tau: float) -> dict[str, float] | None:
    """The run-independent columns: E*, recall@1 of s*, L* and L*_N at this tau.

    Cached by the oracle's fingerprint of the evaluation split (when it has
    one), so the runs of a sweep, which share their held-out pairs, compute it once.
    """
    fingerprint = getattr(data.oracle, "fingerprint", None)
    key = None if fingerprint is None else (fingerprint("eval"), tau)
    if key is not None and key in _REFERENCES:
        return dict(_REFERENCES[key])
    scores = oracle_scores(data)
    if scores is None:
        return None
    best = score_retrieval(scores)
    ref = {
        "auc_oracle": best["auc"],
        "recall_at_1_oracle": best["recall_at_1"],
        "loss_oracle": -tau * float(scores.diagonal().mean()),
        "loss_oracle_finite": paper_loss_of_scores(scores, tau),
    }
    if key is not None:
        _REFERENCES[key] = dict(ref)
    return ref


def calibration_bound(val_loss_paper: float, loss_oracle_finite: float, tau: float) -> float:
    """sqrt((2/tau) (L - L*)) with L - L* estimated bias-corrected as L_N - L*_N, floored at 0."""
    return math.sqrt(max(0.0, (2.0 / tau) * (val_loss_paper - loss_oracle_finite)))


def ground_truth(
    reference: dict[str, float] | None, auc: float, val_loss_paper: float, tau: float
) -> dict[str, float | None]:
    """All oracle columns of one run (None everywhere when the data has no oracle)."""
    if reference is None:
        return dict.fromkeys(COLUMNS)
    return {
        **reference,
        "excess_auc": reference["auc_oracle"] - auc,
        "calibration_bound": calibration_bound(
            val_loss_paper, reference["loss_oracle_finite"], tau
        ),
    }


def plot_calibration(df: Any, path: str | Path) -> Path:
    """Excess AUC against the calibration bound for every run with both, and the line y = x.

    The inequality says every point lies on or below the line. Returns the path written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = df.dropna(subset=["excess_auc", "calibration_bound"])
    if rows.empty:
        raise ValueError("no run has both excess_auc and calibration_bound (no oracle data)")
    fig, ax = plt.subplots(figsize=(5, 4.5))
    groups = rows.groupby("n") if "n" in rows.columns else [(None, rows)]
    for n, part in groups:
        label = None if n is None else f"n = {n}"
        ax.scatter(part["calibration_bound"], part["excess_auc"], s=18, alpha=0.8, label=label)
    top = float(max(rows["calibration_bound"].max(), rows["excess_auc"].max(), 1e-6)) * 1.05
    ax.plot([0, top], [0, top], "k--", lw=1, label="y = x (the bound)")
    above = int((rows["excess_auc"] > rows["calibration_bound"]).sum())
    ax.set_xlabel(r"calibration bound $\sqrt{(2/\tau)(L - L^*)}$")
    ax.set_ylabel(r"excess AUC $E^* - E$")
    ax.set_title(f"calibration check: {len(rows)} runs, {above} above the bound")
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
