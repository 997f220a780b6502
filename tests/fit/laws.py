"""Known laws and study designs for the fitter's tests (independent of the fitter)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

Law = Callable[[np.ndarray, np.ndarray], np.ndarray]

M_LEVELS = 2.0 ** np.arange(0, 12)  # 12 doublings over 3.3 decades
N_LEVELS = (1e4, 4e4, 1.6e5)


def supervised(E=0.05, A=0.5, B=5.0) -> Law:
    return lambda m, n: E + A / m + B / np.sqrt(n)


def self_supervised(E=0.05, A=0.4, B=5.0) -> Law:
    return lambda m, n: E + A / np.sqrt(m) + B / np.sqrt(n)


def free(E=0.05, A=0.3, a=0.3, B=20.0, b=0.7) -> Law:
    return lambda m, n: E + A * m ** (-a) + B * n ** (-b)


def exp(E=0.05, A=0.3, s=40.0, B=5.0, b=0.5) -> Law:
    return lambda m, n: E + A * np.exp(-m / s) + B * n ** (-b)


def study(
    law: Law,
    *,
    ms=M_LEVELS,
    ns=N_LEVELS,
    seeds: int = 3,
    sigma: float = 0.02,
    rng: np.random.Generator | int = 0,
    setting: str = "self-supervised",
) -> pd.DataFrame:
    """Runs with error y = law(m, n)·exp(N(0, σ²)), reported as auc = 1 − y."""
    rng = np.random.default_rng(rng)
    rows = []
    for n in ns:
        for m in ms:
            for s in range(seeds):
                y = float(law(np.float64(m), np.float64(n))) * np.exp(rng.normal(0.0, sigma))
                rows.append({"m": m, "n": n, "seed": s, "auc": 1.0 - y, "setting": setting})
    return pd.DataFrame(rows)


def power_m_sat(A: float, a: float, eps: float) -> float:
    """Brute force: the smallest m on a fine grid past which every doubling gains ≤ ε
    for the m-term A·m^(−a) (checked point by point, not from the closed form)."""
    grid = np.geomspace(1e-6, 1e12, 200_001)
    gain = A * grid ** (-a) - A * (2 * grid) ** (-a)
    return brute_force_m_sat(grid, gain, eps)


def brute_force_m_sat(grid: np.ndarray, gain: np.ndarray, eps: float) -> float:
    """The definition, literally: smallest grid m with gain(m') ≤ ε for all m' ≥ m."""
    ok_from_here = np.flip(np.logical_and.accumulate(np.flip(gain <= eps)))
    idx = np.nonzero(ok_from_here)[0]
    if idx.size == 0:
        return float("inf")
    return float(grid[idx[0]])
