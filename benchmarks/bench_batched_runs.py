"""Stacked runs (negscale.cohort) against the same runs trained one at a time.

The quickstart's runs are tiny and overhead-bound, so a sweep trains the runs
of one design that differ only in seed and m as one stacked model. Here the
runs of one n (7 values of m x 3 seeds by default) are trained both ways by
negscale itself, alternated, CPU time (process_time) per way, medians over
``--repeats``:

* **one at a time**: ``negscale.train.run`` for each run, as ``--no-stack`` does;
* **stacked**: ``negscale.cohort.run.run_together`` over the groups a
  one-job sweep forms (``negscale.cohort.cohorts``).

It prints both times, the ratio, and how far the records differ (float
rounding: a batched matmul sums in another order) on AUC and train loss, and
whether every selected step agrees.

    OMP_NUM_THREADS=1 python benchmarks/bench_batched_runs.py [--n 4096] [--steps 200]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch


def _recipes(n: int, steps: int | None, seeds: int) -> list:
    from negscale.config import load_recipe

    ms = [319, 130, 50, 20, 8, 3, 1]
    extra = [f"train.steps={steps}"] if steps else []
    return [load_recipe("quickstart", [*extra, f"train.seed={s}"], m=m, n=n)
            for m in ms for s in range(seeds)]  # fmt: skip


def _one_at_a_time(recipes, data) -> tuple[float, list]:
    from negscale.train import run

    folder = tempfile.mkdtemp()
    t0 = time.process_time()
    records = [run(r, folder, progress=False, data=data, notice=lambda s: None) for r in recipes]
    return time.process_time() - t0, records


def _stacked(recipes, data) -> tuple[float, list]:
    from negscale.cohort import cohorts
    from negscale.cohort.run import run_together

    folder = tempfile.mkdtemp()
    t0 = time.process_time()
    records = []
    for group in cohorts(recipes):
        records += run_together(group, folder, data=data, notice=lambda s: None)
    return time.process_time() - t0, records


def main() -> None:
    from negscale import data as datasets

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--steps", type=int, default=None, help="train.steps (default: 40 epochs)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3, help="alternated timings of each way")
    args = ap.parse_args()
    recipes = _recipes(args.n, args.steps, args.seeds)
    data = datasets.build(recipes[0].data, recipes[0].model)
    times: dict[str, list[float]] = {"one at a time": [], "stacked": []}
    records: dict[str, list] = {}
    for _ in range(args.repeats):
        for name, way in (("one at a time", _one_at_a_time), ("stacked", _stacked)):
            seconds, records[name] = way(recipes, data)
            times[name].append(seconds)
    one, both = (statistics.median(times[k]) for k in ("one at a time", "stacked"))
    by_id = {r.run_id: r for r in records["one at a time"]}
    pairs = [(by_id[r.run_id], r) for r in records["stacked"]]
    d_auc = max(abs(a.auc - b.auc) for a, b in pairs)
    d_loss = max(abs(a.train_loss - b.train_loss) for a, b in pairs)
    same_step = all(a.selected_step == b.selected_step for a, b in pairs)
    steps = recipes[0].train.steps
    print(f"{len(recipes)} quickstart runs at n = {args.n} ({steps} steps each, selection "
          f"{recipes[0].train.select}), {torch.get_num_threads()} thread(s), "
          f"CPU-time medians of {args.repeats}")  # fmt: skip
    print(f"  one at a time: {one:7.2f} s")
    print(f"  stacked:       {both:7.2f} s  ({one / both:.2f}x)")
    print(f"  records: |d auc| <= {d_auc:.1e}, |d train_loss| <= {d_loss:.1e}, "
          f"selected steps {'all equal' if same_step else 'DIFFER'}")  # fmt: skip


if __name__ == "__main__":
    main()
