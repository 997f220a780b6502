"""The plan: every point of the grid resolved into a validated :class:`Recipe` before anything runs.

An infeasible point is one error up front, not a crash an hour in. Shards are a
split of the plan's sorted run_ids, which depend only on the plan (never on
what is done), so concurrent shards never overlap and together cover it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from negscale.config import (
    Recipe,
    apply_overrides,
    read_recipe_file,
    switch_dataset,
    validate,
    with_design,
)
from negscale.errors import NegscaleError
from negscale.sweep.grid import m_from_ratio, parse_ints, parse_seeds, parse_values, resolve_samples
from negscale.sweep.state import plan_states


@dataclass(frozen=True)
class GridSpec:
    """The grid as typed on the command line; None falls back to the recipe's [sweep]."""

    negatives: str | None = None
    ratios: str | None = None
    samples: str | None = None
    seeds: str | None = None


@dataclass
class Plan:
    """The resolved, validated runs of a study, in a deterministic (n, m, seed) order."""

    name: str
    setting: str
    recipes: list[Recipe]

    @property
    def run_ids(self) -> list[str]:
        return [r.run_id() for r in self.recipes]

    def shard(self, shard: tuple[int, int] | None) -> list[Recipe]:
        """Shard I of N: every N-th of the sorted run_ids, starting at the (I-1)-th.

        The split depends only on the plan, never on what is done, so shards
        started at different times never overlap and always cover the plan.
        """
        if shard is None:
            return list(self.recipes)
        i, count = shard
        ids = sorted(self.run_ids)
        mine = set(ids[i - 1 :: count])
        return [r for r in self.recipes if r.run_id() in mine]


def _axes(
    raw: dict[str, Any], grid: GridSpec
) -> tuple[Recipe, list[int] | None, list[float] | None, list[int], list[int]]:
    """Read the base recipe and the grid axes (command line over the recipe's [sweep])."""
    sweep_raw = raw.get("sweep") if isinstance(raw.get("sweep"), dict) else {}
    if grid.negatives is not None and grid.ratios is not None:
        raise NegscaleError("give --negatives or --ratios, not both")
    # A source like pool needs m, which the grid will supply: validate the base
    # recipe with a placeholder m when the grid has an m axis.
    keys = (grid.negatives, grid.ratios, sweep_raw.get("negatives"), sweep_raw.get("ratios"))
    base = validate(with_design(raw, m=1) if any(keys) else raw)
    cfg = base.sweep
    negatives: list[int] | None = None
    ratios: list[float] | None = None
    if grid.negatives is not None:
        negatives = parse_ints(grid.negatives, "--negatives")
    elif grid.ratios is not None:
        ratios = parse_values(grid.ratios, "--ratios", integer=False)
    elif cfg.negatives and cfg.ratios:
        raise NegscaleError("recipe [sweep]: set negatives or ratios, not both")
    elif cfg.negatives:
        negatives = sorted(set(cfg.negatives))
    elif cfg.ratios:
        ratios = sorted(set(cfg.ratios))
        if min(ratios) <= 0:
            raise NegscaleError("recipe [sweep].ratios: values must be positive")
    if grid.samples is not None:
        ns = resolve_samples(parse_values(grid.samples, "--samples", integer=False), base.data.n)
    else:
        ns = sorted(set(cfg.samples)) or [base.data.n]
    seeds = parse_seeds(grid.seeds) if grid.seeds is not None else sorted(set(cfg.seeds))
    return base, negatives, ratios, ns, seeds


def read_raw(source: str, overrides: Sequence[str] | None = None) -> dict[str, Any]:
    """The recipe mapping with ``--set`` overrides applied and its name filled in."""
    name, raw = read_recipe_file(source)
    overrides = list(overrides or [])
    raw = apply_overrides(switch_dataset(raw, overrides), overrides)  # as load_recipe does
    raw["name"] = raw.get("name", name)
    return raw


def resolve_points(
    raw: dict[str, Any], points: Sequence[tuple[int | None, int, int]]
) -> list[Recipe]:
    """Every (m, n, seed) validated into a recipe, deduplicated, in (n, m, seed) order.

    An infeasible point (m > n for a pool, m > B-1 for in-batch negatives) is
    one NegscaleError naming the point and how many others share the problem.
    """
    recipes: list[Recipe] = []
    problems: list[str] = []
    for m, n, seed in points:
        try:
            r = validate(with_design(raw, m=m, n=n, seed=seed))  # the schema knows the sources
        except NegscaleError as exc:
            shown = m if m is not None else validate(with_design(raw, n=n)).m
            problems.append(f"m={shown}, n={n}: {exc}")
            continue
        recipes.append(r)
    if problems:
        raise NegscaleError(
            f"sweep: {len(problems)} of {len(points)} planned runs are invalid, e.g. {problems[0]}"
        )
    unique = {r.run_id(): r for r in recipes}
    return sorted(unique.values(), key=lambda r: (r.data.n, r.m, r.train.seed, r.run_id()))


def _check_axes(
    overrides: Sequence[str], grid: GridSpec, raw: dict[str, Any], m_axis: bool
) -> None:
    """A grid flag and ``--set`` of the same field (``--negatives 8 --set negatives.m=20``)
    is an error, and so is a "study" with no axis at all: that is one run."""
    from negscale.config import check_axis_overrides

    # (data.n with --samples is no conflict: a --samples value <= 1 is a fraction of it)
    m_flag = "--negatives" if grid.negatives else "--ratios"
    given = {
        "negatives.m": (grid.negatives or grid.ratios, m_flag),
        "train.seed": (grid.seeds, "--seeds"),
    }
    check_axis_overrides(list(overrides), given)
    sweep_raw = raw.get("sweep") if isinstance(raw.get("sweep"), dict) else {}
    seeds = grid.seeds is not None or len(sweep_raw.get("seeds") or []) > 1
    samples = grid.samples is not None or bool(sweep_raw.get("samples"))
    if not (m_axis or samples or seeds):
        raise NegscaleError(
            "sweep: no axis to sweep (no m, n or seeds in the recipe's [sweep] or on the command "
            "line): that is one run, `negscale train`; or give --negatives/--samples/--seeds"
        )


def make_plan(
    source: str, overrides: Sequence[str] | None = None, grid: GridSpec | None = None
) -> Plan:
    """Resolve and validate every point of the grid before anything runs."""
    grid = grid or GridSpec()
    raw = read_raw(source, overrides)
    base, negatives, ratios, ns, seeds = _axes(raw, grid)
    _check_axes(overrides or [], grid, raw, m_axis=negatives is not None or ratios is not None)
    points: list[tuple[int | None, int, int]] = []
    for n in ns:
        if ratios is not None:
            ms: list[int | None] = sorted({m_from_ratio(r, n) for r in ratios})
        else:
            ms = list(negatives) if negatives is not None else [None]
        points += [(m, n, seed) for m in ms for seed in seeds]
    return Plan(name=base.name, setting=base.setting, recipes=resolve_points(raw, points))


def plan_points(raw: dict[str, Any], points: Sequence[tuple[int, int, int]]) -> Plan:
    """A plan of explicit (m, n, seed) points (an adaptive round): the same recipes,
    hence the same run_ids, as a grid holding those points."""
    recipes = resolve_points(raw, points)
    base = recipes[0] if recipes else validate(with_design(raw, m=1))
    return Plan(name=base.name, setting=base.setting, recipes=recipes)


def largest_m(raw: dict[str, Any], n: int) -> int | None:
    """The most negatives the recipe's source can supply at n (None: no limit found),
    by bisection on the same validation a plan uses."""

    def ok(m: int) -> bool:
        try:
            validate(with_design(raw, m=m, n=n, seed=0))
        except NegscaleError:
            return False
        return True

    if not ok(1):
        return None
    hi = 2
    while ok(hi):
        if hi > 2**40:
            return None
        hi *= 2
    lo = hi // 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo


def plan_document(
    plan: Plan, results: str | Path, shard: tuple[int, int] | None = None
) -> dict[str, Any]:
    """What ``sweep --dry-run`` shows: this shard's runs and the state of each on disk."""
    mine = plan.shard(shard)
    states = plan_states(mine, results)
    rows = [
        {"run_id": r.run_id(), "m": r.m, "n": r.data.n, "seed": r.train.seed,
         "state": states[r.run_id()]}
        for r in mine
    ]  # fmt: skip
    return {"study": plan.name, "results": str(results), "planned": len(plan.recipes),
            "shard": list(shard) if shard else None, "runs": rows}  # fmt: skip
