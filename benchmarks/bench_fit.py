"""Time `negscale fit` with 1000 bootstrap replicates on two study shapes.

* the quickstart's shape: 7 values of m (1 … 319) × 3 values of n × 3 seeds = 63 runs;
* a larger one: 10 values of m (doubling) × 5 values of n × 2 seeds = 100 runs.

Every stage runs: cells, the tested levels, three forms checked (lack of fit,
leave-one-level-out with its own replicates) and bootstrapped per n, γ, the
prediction, and the joint law's balance point. Prints one line a shape; the
README quotes them (the issue's budget: a 63-run fit under 10 s).

    OMP_NUM_THREADS=2 python benchmarks/bench_fit.py
"""

from __future__ import annotations

import os
import time

import numpy as np
import pandas as pd

from negscale.fit import fit


def quickstart_shaped(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for n in (1024, 4096, 16384):
        for m in (1, 3, 8, 20, 50, 130, 319):
            for s in range(3):
                knee = 5.0 * np.sqrt(n / 1024)
                auc = 0.97 - 0.05 * (1 + m / knee) ** -1.2 + 5e-4 * rng.standard_normal()
                rows.append({"m": m, "n": n, "seed": s, "auc": auc, "setting": "self-supervised"})
    return pd.DataFrame(rows)


def larger(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for n in (2_000, 4_000, 8_000, 16_000, 32_000):
        for m in 2 ** np.arange(3, 13):
            for s in range(2):
                y = (0.03 + 1.5 / np.sqrt(n) + 0.002 * np.sqrt(n / m)) * np.exp(rng.normal(0, 0.02))
                rows.append({"m": m, "n": n, "seed": s, "auc": 1 - y, "setting": "self-supervised"})
    return pd.DataFrame(rows)


def main() -> None:
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    for name, df in (("quickstart-shaped", quickstart_shaped()), ("larger", larger())):
        fit(df, bootstrap=20)  # warm imports and caches
        t0 = time.perf_counter()
        report = fit(df, bootstrap=1000, random_state=0)
        dt = time.perf_counter() - t0
        print(
            f"negscale fit, {name}: {len(df)} runs, {len(report.groups)} n groups, "
            f"{report.bootstrap} replicates: {dt:.1f} s "
            f"({os.cpu_count()} CPUs, OMP_NUM_THREADS={threads})"
        )


if __name__ == "__main__":
    main()
