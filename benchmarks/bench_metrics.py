"""Class-level retrieval AUC: negscale's counting against sklearn's roc_auc_score, same scores.

A class-aware run (``eval.retrieval = "class"``) ranks every same-class key as
a positive, and ``train.select = "best"`` evaluates it about 50 times, so the
per-row AUC with many positives is on the training path. Both sides score the
same (1024 x 1024) matrix of one direction, 16 classes; they are timed in
turn (CPU-time medians), and their AUCs must agree to 1e-12.

    OMP_NUM_THREADS=1 python benchmarks/bench_metrics.py [--pairs 1024] [--repeats 9] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from negscale.metrics import auc_by_counting


def _negscale(scores: torch.Tensor, pos: torch.Tensor) -> float:
    return float(auc_by_counting(scores, pos).mean())


def _sklearn(scores: torch.Tensor, pos: torch.Tensor) -> float:
    s, p = scores.numpy(), pos.numpy()
    return float(np.mean([roc_auc_score(p[i], s[i]) for i in range(len(s))]))


def measure(pairs: int, classes: int, repeats: int, ties: bool) -> dict:
    """CPU-time medians of both sides, alternated, on one score matrix."""
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, classes, (pairs,), generator=g)
    scores = torch.randn(pairs, pairs, generator=g) + 2.0 * (labels[:, None] == labels[None, :])
    if ties:
        scores = (scores * 4).round() / 4  # many exact ties: the midrank path
    pos = labels[:, None] == labels[None, :]
    sides: dict[str, Callable] = {"negscale": _negscale, "sklearn": _sklearn}
    times: dict[str, list[float]] = {name: [] for name in sides}
    values = {name: f(scores, pos) for name, f in sides.items()}  # warm-up, and the check
    for _ in range(repeats):
        for name, f in sides.items():
            start = time.process_time()
            f(scores, pos)
            times[name].append(time.process_time() - start)
    med = {name: statistics.median(t) * 1000 for name, t in times.items()}
    return {
        "pairs": pairs,
        "ties": ties,
        "negscale_ms": med["negscale"],
        "sklearn_ms": med["sklearn"],
        "ratio": med["negscale"] / med["sklearn"],
        "agree": abs(values["negscale"] - values["sklearn"]) < 1e-12,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=1024)
    parser.add_argument("--classes", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = [measure(args.pairs, args.classes, args.repeats, ties) for ties in (False, True)]
    if args.json:
        print(json.dumps(rows))
        return
    print("| scores | negscale ms | sklearn ms | × sklearn | same AUC |")
    print("|---|---:|---:|---:|---|")
    for r in rows:
        kind = "with ties" if r["ties"] else "float"
        print(f"| {kind} | {r['negscale_ms']:.1f} | {r['sklearn_ms']:.1f} | {r['ratio']:.3f} "
              f"| {r['agree']} |")  # fmt: skip


if __name__ == "__main__":
    main()
