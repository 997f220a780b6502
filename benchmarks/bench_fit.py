"""Time `negscale fit` on a 100-run study with 1000 bootstrap replicates.

The study: 10 values of m (doubling) x 5 values of n x 2 seeds, drawn from a
law whose saturation point grows with n, so every part of the fitter runs:
all five candidate forms with held-out refits, five per-group model choices,
the bootstrap of the chosen forms and of every form within 2 AICc, gamma and
the budget table. Prints one line the README quotes.

    OMP_NUM_THREADS=2 python benchmarks/bench_fit.py
"""

from __future__ import annotations

import os
import time

import numpy as np
import pandas as pd

from negscale.fit import fit


def study(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for n in (2_000, 4_000, 8_000, 16_000, 32_000):
        for m in 2 ** np.arange(3, 13):
            for s in range(2):
                y = (0.03 + 1.5 / np.sqrt(n) + 0.002 * np.sqrt(n / m)) * np.exp(rng.normal(0, 0.02))
                rows.append({"m": m, "n": n, "seed": s, "auc": 1 - y, "setting": "self-supervised"})
    return pd.DataFrame(rows)


def main() -> None:
    df = study()
    fit(df, bootstrap=20)  # warm imports and caches
    t0 = time.perf_counter()
    report = fit(df, bootstrap=1000, random_state=0)
    dt = time.perf_counter() - t0
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    print(
        f"negscale fit: {len(df)} runs, {report.bootstrap} bootstrap replicates, "
        f"{len(report.groups)} n groups, {len(report.candidates)} candidate forms: {dt:.1f} s "
        f"({os.cpu_count()} CPUs, OMP_NUM_THREADS={threads})"
    )


if __name__ == "__main__":
    main()
