"""Is a study budget-capped? Train its largest m with the recipe's budget and with twice as much.

A study's plateau must be set by m and n, not by the optimisation budget: at
the largest m of the grid, doubling the budget must move the metric by less
than the fit's tolerance ε. Only the largest m is trained here, so by default
ε is estimated from its seeds (their sd, pooled over the n checked; 0.005
without seeds). ``negscale fit`` takes ε from the whole grid (a typical
cell's seed sd), which this check cannot see: pass that value with
``--tolerance`` (the ``tolerance`` of ``negscale fit RESULTS --json``) to judge
against exactly the fit's ε. The budget is ``train.epochs`` when
the recipe has it (the quickstart studies: the same epochs at every n, steps =
round(epochs·n/B)), and doubling it doubles the epochs and so the steps at
every n (up to rounding); otherwise it is ``train.steps`` (the same samples
seen at every n), and doubling doubles the steps. No n is known in advance to
be the binding one (fixed samples seen over-train the small n and under-train
the large n; fixed epochs give each n its own steps), so check every n with
``--all-n``; without it only the largest n is trained. Only the budget doubles:
``train.select`` stays as the recipe says (the bundled studies keep their best
validation checkpoint, so a doubled budget can only add candidates).

    python benchmarks/bench_budget.py quickstart --all-n [--n 4096,16384] [--metric auc]
        [--seeds 0,1,2] [--tolerance EPS] [--set key=value ...] [--results FOLDER] [--json]

Each line gives delta ± its standard error (from the per-seed differences):
the verdict compares a mean of a few seeds with about one seed's sd, so where
the SE is at least half the tolerance the line says so, and more seeds at
that n (``--n N --seeds 0..9 --tolerance EPS``, EPS the study's pooled ε)
settle it.

Prints one line per n and a verdict; exits 1 when the study is budget-capped
at some n.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

from negscale.config import Recipe, validate

FALLBACK_TOL = 0.005  # as negscale fit without seeds: 0.5 points of a [0, 1] metric


@dataclass
class BudgetCheck:
    recipe: str
    metric: str
    m: int
    n: int
    epochs: float | None  # the recipe's train.epochs (None: a fixed steps budget)
    steps: int
    doubled_steps: int
    seeds: list[int]
    base: list[float]
    doubled: list[float]
    delta: float  # mean(doubled) - mean(base)
    tolerance: float
    tolerance_source: str

    @property
    def capped(self) -> bool:
        return abs(self.delta) >= self.tolerance

    @property
    def delta_se(self) -> float | None:
        """Standard error of ``delta``: sqrt(sd_base² / k + sd_doubled² / k) over k seeds.

        The verdict compares a mean of k seeds with ε, itself about one seed's
        sd, so with 3 seeds a flat curve's delta has an SE near 0.8 ε and one
        check in five fails by chance; the SE says when a verdict is that noise
        and more seeds (``--n N --seeds 0..9``) should settle it. Unpaired on
        purpose: a seed's run at twice the budget follows another schedule, and
        measured over 10 seeds (supervised-class-aware, n = 4096) the per-seed
        differences spread as much as unpaired ones (sd 0.0013 against
        sqrt(2) x 0.0010), so a paired SE of 3 seeds is luck.
        """
        k = len(self.base)
        if k < 2:
            return None
        return ((statistics.variance(self.base) + statistics.variance(self.doubled)) / k) ** 0.5

    @property
    def noisy(self) -> bool:
        """The verdict is within noise: delta's SE is at least half the tolerance."""
        return self.delta_se is not None and self.delta_se >= self.tolerance / 2

    def line(self) -> str:
        verdict = "STEP-CAPPED" if self.capped else "not step-capped"
        se = "" if self.delta_se is None else f" ± {self.delta_se:.5f}"
        warn = " (SE of delta >= tolerance / 2: add seeds to settle it)" if self.noisy else ""
        return (
            f"{self.recipe}: m={self.m} n={self.n} {self.metric}: "
            f"{_budget(self.epochs, self.steps)} {statistics.fmean(self.base):.4f}, "
            f"{_budget(self.epochs and 2 * self.epochs, self.doubled_steps)} "
            f"{statistics.fmean(self.doubled):.4f}, delta {self.delta:+.5f}{se} vs tolerance "
            f"{self.tolerance:.5f} ({self.tolerance_source}): {verdict}{warn}"
        )


def _budget(epochs: float | None, steps: int) -> str:
    return f"{steps} steps" if epochs is None else f"{epochs:g} epochs ({steps} steps)"


def largest_point(recipes: list[Recipe], n: int | None = None) -> list[Recipe]:
    """The plan's runs at ``n`` (default: the largest) and its largest m there, one per seed."""
    n = max(r.data.n for r in recipes) if n is None else n
    m = max(r.m for r in recipes if r.data.n == n)
    return sorted((r for r in recipes if r.data.n == n and r.m == m), key=lambda r: r.train.seed)


def doubled(recipe: Recipe) -> Recipe:
    """The recipe with twice its budget: twice its epochs when it has them, else twice its steps.

    Epochs decide the steps (steps = round(epochs·n/B)), so doubling only
    ``train.steps`` of such a recipe would change nothing.
    """
    raw = recipe.model_dump(mode="json")
    train = raw["train"]
    if train.get("epochs") is not None:
        train["epochs"] = 2 * train["epochs"]
    else:
        train["steps"] = 2 * train["steps"]
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
    """Train every point at its budget and at twice its budget; compare the seed means."""
    longer = [doubled(r) for r in points]
    base = [train(r) for r in points]
    more = [train(r) for r in longer]
    tol, source = tolerance(base, given_tol)
    return BudgetCheck(
        name,
        metric,
        points[0].m,
        points[0].data.n,
        points[0].train.epochs,
        points[0].train.steps,
        longer[0].train.steps,
        [r.train.seed for r in points],
        base,
        more,
        statistics.fmean(more) - statistics.fmean(base),
        tol,
        source,
    )


def pooled(results: list[BudgetCheck]) -> list[BudgetCheck]:
    """Every n judged against one tolerance for the whole study, as the fit judges it.

    The per-n sd of 2-3 seeds is itself noisy, so the n's seed sds are pooled
    (root mean variance). Only checks whose tolerance came from their own seeds
    are pooled.
    """
    own = [r for r in results if r.tolerance_source == "seed sd at the largest m"]
    if len(own) < 2:
        return results
    eps = statistics.fmean(r.tolerance**2 for r in own) ** 0.5
    source = "seed sd at the largest m, pooled over n"
    return [replace(r, tolerance=eps, tolerance_source=source) if r in own else r for r in results]


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
    parser.add_argument("--n", default=None, help="check only these n (comma list)")
    args = parser.parse_args(argv)
    plan = sw.make_plan(args.recipe, args.set_, sw.GridSpec(seeds=args.seeds))
    ns: list[int | None] = sorted({r.data.n for r in plan.recipes}) if args.all_n else [None]
    if args.n:
        ns = [int(v) for v in args.n.split(",")]
        grid = sorted({r.data.n for r in plan.recipes})
        if any(n not in grid for n in ns):
            parser.error(f"--n: the plan's n are {grid}")
    with tempfile.TemporaryDirectory(prefix="negscale-budget-") as tmp:
        train = trainer(args.metric, args.results or tmp)
        results = [
            check(plan.name, largest_point(plan.recipes, n), args.metric, train, args.tolerance)
            for n in ns
        ]
    results = pooled(results)
    for result in results:
        doc = {**asdict(result), "capped": result.capped, "delta_se": result.delta_se}
        print(json.dumps(doc) if args.json else result.line())
    return 1 if any(r.capped for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
