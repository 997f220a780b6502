"""Is a study step-capped? Train its largest point with the recipe's steps and with twice as many.

A study's plateau must be set by m and n, not by the optimisation budget: at
the largest m of the grid (and the largest n, where the budget is tightest in
epochs), doubling ``train.steps`` must move the metric by less than the
tolerance the fit uses (ε: by default the seed sd at the largest m, as
``negscale fit``; 0.005 without seeds). Samples seen (steps x batch) are the
same at every n of a sweep, as in the paper, so the check at the largest n is
the binding one.

    python benchmarks/bench_budget.py quickstart [--metric auc] [--seeds 0,1,2]
        [--tolerance EPS] [--set key=value ...] [--json]

Prints one line per seed and a verdict; exits 1 when the study is step-capped.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass

from negscale.recipe import Recipe, validate

FALLBACK_TOL = 0.005  # as negscale fit without seeds: 0.5 points of a [0, 1] metric


@dataclass
class BudgetCheck:
    recipe: str
    metric: str
    m: int
    n: int
    steps: int
    seeds: list[int]
    base: list[float]
    doubled: list[float]
    delta: float  # mean(doubled) - mean(base)
    tolerance: float
    tolerance_source: str

    @property
    def capped(self) -> bool:
        return abs(self.delta) >= self.tolerance

    def line(self) -> str:
        verdict = "STEP-CAPPED" if self.capped else "not step-capped"
        return (
            f"{self.recipe}: m={self.m} n={self.n} {self.metric}: {self.steps} steps "
            f"{statistics.fmean(self.base):.4f}, {2 * self.steps} steps "
            f"{statistics.fmean(self.doubled):.4f}, delta {self.delta:+.4f} vs tolerance "
            f"{self.tolerance:.4f} ({self.tolerance_source}): {verdict}"
        )


def largest_point(recipes: list[Recipe], n: int | None = None) -> list[Recipe]:
    """The plan's runs at ``n`` (default: the largest) and its largest m there, one per seed."""
    n = max(r.data.n for r in recipes) if n is None else n
    m = max(r.m for r in recipes if r.data.n == n)
    return sorted((r for r in recipes if r.data.n == n and r.m == m), key=lambda r: r.train.seed)


def with_steps(recipe: Recipe, steps: int) -> Recipe:
    raw = recipe.model_dump(mode="json")
    raw["train"]["steps"] = steps
    return validate(raw)


def tolerance(base: list[float], given: float | None) -> tuple[float, str]:
    if given is not None:
        return given, "given"
    if len(base) >= 2 and statistics.stdev(base) > 0:
        return statistics.stdev(base), "seed sd at the largest m"
    return FALLBACK_TOL, "default without seeds"


def check(
    name: str,
    points: list[Recipe],
    metric: str,
    train: Callable[[Recipe], float],
    given_tol: float | None = None,
) -> BudgetCheck:
    """Train every point at its steps and at twice its steps; compare the seed means."""
    steps = points[0].train.steps
    base = [train(r) for r in points]
    doubled = [train(with_steps(r, 2 * steps)) for r in points]
    tol, source = tolerance(base, given_tol)
    return BudgetCheck(
        name,
        metric,
        points[0].m,
        points[0].data.n,
        steps,
        [r.train.seed for r in points],
        base,
        doubled,
        statistics.fmean(doubled) - statistics.fmean(base),
        tol,
        source,
    )


def trainer(metric: str, results: str) -> Callable[[Recipe], float]:
    """Train and record a run, or read its record when ``results`` already holds it."""
    from negscale.results import read_record, record_path
    from negscale.train import run

    def train(recipe: Recipe) -> float:
        done = record_path(results, recipe.run_id())
        if done.is_file():
            value = read_record(done).iloc[0][metric]
        else:
            value = getattr(run(recipe, results, progress=False), metric)
        print(f"  seed {recipe.train.seed} steps {recipe.train.steps}: {metric} {value:.4f}",
              file=sys.stderr)  # fmt: skip
        return float(value)

    return train


def main(argv: list[str] | None = None) -> int:
    from negscale import sweep as sw

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe")
    parser.add_argument("--metric", default="auc")
    parser.add_argument("--seeds", default=None, help="seeds (default: the recipe's)")
    parser.add_argument("--tolerance", type=float, default=None)
    parser.add_argument("--set", dest="set_", action="append", default=[])
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--results",
        help="a study folder: reuse its records (e.g. the sweep's) and add the new runs",
    )
    parser.add_argument(
        "--all-n", action="store_true", help="check the largest m at every n, not only the largest"
    )
    args = parser.parse_args(argv)
    plan = sw.make_plan(args.recipe, args.set_, sw.GridSpec(seeds=args.seeds))
    ns = sorted({r.data.n for r in plan.recipes}) if args.all_n else [None]
    with tempfile.TemporaryDirectory(prefix="negscale-budget-") as tmp:
        train = trainer(args.metric, args.results or tmp)
        results = [
            check(plan.name, largest_point(plan.recipes, n), args.metric, train, args.tolerance)
            for n in ns
        ]
    for result in results:
        doc = {**asdict(result), "capped": result.capped}
        print(json.dumps(doc) if args.json else result.line())
    return 1 if any(r.capped for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
