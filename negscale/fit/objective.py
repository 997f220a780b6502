"""The fitting objective: Huber loss on log residuals, its noise scale, and
information criteria.

Working on log y makes the fit relative (a 1% miss costs the same near the
floor as at the top of the curve), and Huber keeps one diverged-but-"ok" run
from dragging the curve.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DELTA_FLOOR = 0.01  # 1% relative: below this a log residual is indistinguishable from noise


@dataclass(frozen=True)
class Data:
    """Runs in the fitter's units: scaled m and n, error y > 0 and log y."""

    m: np.ndarray
    n: np.ndarray
    y: np.ndarray

    @property
    def logy(self) -> np.ndarray:
        return np.log(self.y)

    def subset(self, idx: np.ndarray) -> Data:
        return Data(self.m[idx], self.n[idx], self.y[idx])

    def __len__(self) -> int:
        return int(self.y.size)


def huber_rows(r: np.ndarray, delta: float) -> np.ndarray:
    """Sum over the last axis of Huber_δ(r): r²/2 inside ±δ, δ(|r|−δ/2) outside."""
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta)).sum(axis=-1)


def huber_delta(logy: np.ndarray, cells: np.ndarray) -> float | None:
    """1.4826·MAD of within-cell log residuals (None when no cell has ≥ 2 runs).

    Residuals about the cell mean shrink by √((k−1)/k); they are scaled back so
    δ estimates the single-run noise sd.
    """
    res: list[np.ndarray] = []
    for c in np.unique(cells):
        v = logy[cells == c]
        if v.size >= 2:
            res.append((v - v.mean()) * np.sqrt(v.size / (v.size - 1)))
    if not res:
        return None
    r = np.concatenate(res)
    return float(1.4826 * np.median(np.abs(r - np.median(r))))


def information(r: np.ndarray, k: int) -> tuple[float, float]:
    """(AICc, BIC) from log residuals with a Gaussian likelihood, k parameters.

    AIC = N·ln(RSS/N) + 2k; AICc adds 2k(k+1)/(N−k−1) (inf when N ≤ k+1);
    BIC = N·ln(RSS/N) + k·ln N.
    """
    N = r.size
    rss = max(float(np.sum(r * r)), 1e-300)
    base = N * np.log(rss / N)
    aicc = base + 2 * k + (2 * k * (k + 1) / (N - k - 1) if N - k - 1 > 0 else np.inf)
    bic = base + k * np.log(N)
    return float(aicc), float(bic)


def runs_test_p(signs: np.ndarray) -> float:
    """Two-sided Wald–Wolfowitz runs test on residual signs (ordered by m).

    Few runs (long stretches of same-sign residuals) mean the form misses the
    curve's shape, e.g. a sharp knee that a power law cannot follow.
    """
    from math import erfc, sqrt

    s = signs[signs != 0] > 0
    n1, n2 = int(s.sum()), int((~s).sum())
    n = n1 + n2
    if n1 == 0 or n2 == 0 or n < 6:
        return float("nan")
    runs = 1 + int(np.sum(s[1:] != s[:-1]))
    mu = 2.0 * n1 * n2 / n + 1.0
    var = 2.0 * n1 * n2 * (2.0 * n1 * n2 - n) / (n * n * (n - 1))
    if var <= 0:
        return float("nan")
    z = (runs - mu) / sqrt(var)
    return float(erfc(abs(z) / sqrt(2.0)))
