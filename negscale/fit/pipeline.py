"""From a table of runs to a :class:`FitReport`: inputs → cells → per-n answer
→ scaling → report. Each stage is its own module; this one only wires them
and words the warnings that change what a user should believe."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

from negscale.errors import NegscaleError
from negscale.fit import cells as cells_mod
from negscale.fit import laws, levels, scaling
from negscale.fit.answer import Started, finish_group, start_group
from negscale.fit.balance import Balance, balance
from negscale.fit.fmt import fmt
from negscale.fit.inputs import (
    Prepared,
    check_sizes,
    prepare,
    resolve_setting,
    thin_design_warnings,
)
from negscale.fit.laws import LawAnswer, finish_check
from negscale.fit.report import FitReport, GroupReport


def fit(
    df: pd.DataFrame,
    *,
    metric: str = "auc",
    m_col: str = "m",
    n_col: str = "n",
    seed_col: str | None = "seed",
    setting: str = "auto",
    tolerance: float | None = None,
    scale: str = "auto",
    higher_is_better: bool | None = None,
    bootstrap: int = 1000,
    random_state: int = 0,
    at_n: list[float] | None = None,
    collapsed: str = "drop",
    confidence: float = 0.95,
    label: str | None = None,
) -> FitReport:
    """Fit a negative-count study: one m_sat answer per n, γ, predictions.

    ``tolerance`` is ε in the metric's units (default: the run-to-run sd
    pooled over all cells); ``bootstrap`` the parametric replicates behind a
    law's interval; ``at_n`` the n to predict m_sat at (default: ten times
    the largest n tested).
    """
    if bootstrap < 0:
        raise NegscaleError(f"--bootstrap must be >= 0, got {bootstrap}")
    if not 0.5 <= confidence < 1.0:
        raise NegscaleError(f"confidence must lie in [0.5, 1), got {confidence}")
    prep = prepare(
        df, metric=metric, m_col=m_col, n_col=n_col, seed_col=seed_col, scale=scale,
        higher_is_better=higher_is_better, collapsed=collapsed,
    )  # fmt: skip
    check_sizes(prep)
    setting, notes = resolve_setting(df, setting)
    warnings = list(prep.dropped) + list(prep.warnings) + notes + thin_design_warnings(prep)
    cells = cells_mod.build(prep.m, prep.n, prep.sign * prep.value, prep.run_id, prep.sign)
    cells, noise_note = _noise(cells, tolerance)
    eps, tol_src = _tolerance(tolerance, cells, prep)
    if noise_note:
        warnings.append(noise_note)
    usable = [c for c in cells.curves if len(c) >= 3 and c.t[-1] - c.t[0] >= 1.0]
    for c in cells.curves:
        if c not in usable:
            warnings.append(f"n={fmt(c.n)}: fewer than 3 levels of m over a doubling: no answer")
    if not usable:
        raise NegscaleError("no n group has 3 levels of m spanning a doubling: nothing to fit")
    rng = np.random.default_rng(random_state)
    alpha = 1.0 - confidence
    started = [start_group(c, eps, seeded=cells.seeded, reps=bootstrap, rng=rng) for c in usable]
    checked, bal = _finish_checks(started, lambda: balance(usable, setting, cells.sigma_dof, rng)
                                  if cells.seeded else None)  # fmt: skip
    answers = [
        finish_group(s, checks, eps, alpha=alpha, joint_alpha=alpha / len(usable))
        for s, checks in zip(started, checked, strict=True)
    ]
    groups = [
        GroupReport(a, c, prep.sign, [lo for lo in prep.left_out if lo["n"] == c.n])
        for a, c in zip(answers, usable, strict=True)
    ]
    warnings += _answer_warnings(groups, cells, prep)
    scal, predictions = _scaling(answers, setting, at_n)
    if scal is not None and scal.widened > 1.0:
        warnings.append(
            f"no single power law m_sat ∝ n^γ passes through every n's interval: they were "
            f"widened {scal.widened:.2g}× to read γ"
        )
    return FitReport(
        metric, prep.higher_is_better, prep.scale, setting, eps, tol_src, cells.sigma,
        cells.sigma_source, int(prep.m.size), int(bootstrap), confidence, groups, scal,
        predictions, bal, cells.outliers, warnings, prep.dropped, label, tested=_tested(prep),
    )  # fmt: skip


def _finish_checks(
    started: list[Started], joint: Callable[[], Balance | None]
) -> tuple[list[list[LawAnswer]], Balance | None]:
    """Every group's law refits, and the joint law (``joint``: the generator's last user), on
    threads. Each check's random numbers were drawn before (:func:`start_group`), so the
    answers do not depend on the order the threads finish in; numpy releases the GIL in
    the refits' array work, which makes the fit ~1.3x faster on 2 cores (a process of a
    pool, as in the coverage benchmark, keeps to one thread: the pool has the cores)."""
    jobs = [c for s in started for c in s.checkings]
    threads = min(len(jobs) + 1, os.cpu_count() or 1)
    if multiprocessing.parent_process() is not None:  # fits in a pool of processes: one each
        threads = 1
    with ThreadPoolExecutor(max_workers=threads) as pool:
        bal = pool.submit(joint)
        done = iter(pool.map(finish_check, jobs))
        checked = [[next(done) for _ in s.checkings] for s in started]
        return checked, bal.result()


def _tested(prep: Prepared) -> set[tuple[int, float, int]]:
    """(m, n, seed) of every run fitted (a run without a seed column counts as seed 0)."""
    seeds = prep.seed if prep.seed is not None else np.zeros(prep.m.size)
    out = set()
    for m, n, s in zip(prep.m, prep.n, seeds, strict=True):
        try:
            seed = int(s)
        except (TypeError, ValueError):
            seed = 0
        out.add((round(m), float(n), seed))
    return out


def _noise(cells: cells_mod.Cells, tolerance: float | None) -> tuple[cells_mod.Cells, str]:
    """Without seeds: the noise from the residuals of one smooth form over every n."""
    if cells.seeded:
        return cells, ""
    found = laws.residual_sigma(cells.curves)
    if found is None:
        if tolerance is None:
            raise NegscaleError(
                "no seeds and too few levels to estimate the noise: give --tolerance "
                "(ε, in the metric's units), or run seeds"
            )
        sigma, dof, src = tolerance, 1.0, "assumed equal to ε (no seeds, no spare levels)"
    else:
        sigma, dof, form = found
        src = f"residual sd of the {form} form fitted to every n (no seeds)"
    note = (
        f"no seeds: the noise sd {sigma:.3g} is the {src.split(' (')[0]}; "
        "the answers are the tested levels' brackets (a law cannot be checked without seeds)"
    )
    if tolerance is None:
        note += "; ε is assumed, give it with --tolerance"
    return cells_mod.with_sigma(cells, sigma, dof, src), note


FALLBACK_TOL_BOUNDED = 0.005  # without seeds: half a point of a [0, 1] metric (0.5 in percent)
FALLBACK_TOL_REL = 0.01  # without seeds, for an unbounded metric: 1 % of it at the largest m


def _tolerance(
    tolerance: float | None, cells: cells_mod.Cells, prep: Prepared
) -> tuple[float, str]:
    """ε: given; with seeds, the pooled run-to-run sd; without, a stated assumption."""
    unit = "percentage points" if prep.scale == "percent" else f"{prep.scale} units"
    if tolerance is not None:
        if not np.isfinite(tolerance) or tolerance <= 0:
            raise NegscaleError(f"--tolerance must be a positive number, got {tolerance}")
        return float(tolerance), "given"
    if cells.seeded:
        count = sum(len(c) for c in cells.curves)
        return float(cells.sigma), f"default: a typical cell's seed sd, of {count}"
    if prep.higher_is_better:
        eps = FALLBACK_TOL_BOUNDED * (100.0 if prep.scale == "percent" else 1.0)
        return eps, f"assumed without seeds: 0.5 % of the metric's range ({eps:g} {unit})"
    top = np.median([np.abs(c.centre[-1]) for c in cells.curves])
    return FALLBACK_TOL_REL * float(
        top
    ), "assumed without seeds: 1 % of the metric at the largest m"


def _answer_warnings(
    groups: list[GroupReport], cells: cells_mod.Cells, prep: Prepared
) -> list[str]:
    """Outlier seeds, declines, cells read from fewer seeds, answers beyond the data."""
    out = []
    for o in cells.outliers:
        rid = f"run {o.run_id} " if o.run_id else "a run "
        out.append(
            f"{rid}(n={fmt(o.n)}, m={fmt(o.m)}, value {o.value:.4g}) lies {o.z:.0f} sd from "
            "the other seeds of its cell: left out of the cell"
        )
    for g in groups:
        a = g.answer
        d = a.decline
        if d is not None:
            out.append(
                f"n={fmt(a.n)}: the metric falls past m={fmt(d.from_m)} by {d.drop:.3g} "
                f"({d.drop_sd:.1f} sd) at m={fmt(d.to_m)}: more negatives hurt here; m_sat "
                "is read on the rise before the fall"
            )
        if a.scatter > 1.0:
            out.append(
                f"n={fmt(a.n)}: the cell centres scatter {np.sqrt(a.scatter):.2g}× more than "
                "their seeds' noise (no form fits within it): the intervals allow for that"
            )
        if a.status == levels.NOT_REACHED:
            out.append(
                f"n={fmt(a.n)}: not reached: a doubling still gains more than ε at the largest "
                f"m ({fmt(a.m_levels[-1])}); test larger m to find m_sat"
            )
        for lo in g.left_out:
            out.append(
                f"n={fmt(lo['n'])}, m={fmt(lo['m'])}: {lo['left_out']} seed(s) left out "
                f"({', '.join(lo['statuses'])}); the cell is read from the rest"
            )
    return out


def _scaling(
    answers: list, setting: str, at_n: list[float] | None
) -> tuple[scaling.Scaling | None, list[dict]]:
    """γ from the per-n intervals at the joint level, and predictions at ``at_n``."""
    if len(answers) < 2:
        return None, []
    ns = [a.n for a in answers]
    boxes = [a.joint_ci for a in answers]
    points = [a.m_sat if a.status == levels.REACHED else None for a in answers]
    scal = scaling.gamma(ns, boxes, points, setting)
    if not at_n and not scal.pinned:
        return scal, []  # γ not pinned: a default prediction would span decades
    targets = at_n if at_n else [10.0 * max(ns)]
    preds = [scaling.predict(ns, boxes, points, float(t), scal.widened) for t in targets]
    return scal, preds


def fit_groups(df: pd.DataFrame, group_col: str, **kwargs) -> list[tuple[object, FitReport]]:
    """One report per value of ``group_col`` (e.g. per metric of a published table)."""
    from negscale.fit.inputs import DROPPED_ATTR, lower_is_better

    if group_col not in df.columns:
        raise NegscaleError(f"no column {group_col!r} to group by")
    out = []
    metric = kwargs.get("metric", "auc")
    for value, sub in df.groupby(group_col, sort=True, dropna=True):
        sub = sub.copy()
        sub.attrs[DROPPED_ATTR] = list(df.attrs.get(DROPPED_ATTR, []))
        kw = dict(kwargs)
        kw.setdefault(
            "label", str(value) if group_col == "metric" else f"{metric} [{group_col}={value}]"
        )
        if kw.get("higher_is_better") is None and group_col == "metric":
            kw["higher_is_better"] = not lower_is_better(str(value))
        try:
            rep = fit(sub, **kw)
        except NegscaleError as exc:
            raise NegscaleError(f"{group_col}={value}: {exc}") from None
        rep.group = {"column": group_col, "value": value}
        out.append((value, rep))
    if not out:
        raise NegscaleError(f"column {group_col!r} has no values to group by")
    return out
