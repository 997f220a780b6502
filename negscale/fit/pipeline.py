"""From a table of runs to a :class:`FitReport`: the order of operations.

prepare (validate, error transform) → Huber δ → fit every candidate on all
runs and choose → fit every n group on its own and choose → tolerance →
bootstrap (all derived quantities per replicate) → warnings → report.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from negscale.errors import NegscaleError
from negscale.fit import bootstrap as bs
from negscale.fit.forms import FORM_IDS, Form, budget_bounds, make_form
from negscale.fit.inputs import (
    Prepared,
    check_sizes,
    prepare,
    resolve_setting,
    seed_sd_at_max_m,
    thin_design_warnings,
)
from negscale.fit.objective import DELTA_FLOOR, Data, huber_delta
from negscale.fit.optimize import fit_form, infeasible
from negscale.fit.report import FitReport, GroupResult, fmt
from negscale.fit.saturation import share_beyond, summarise
from negscale.fit.scaling import THEORY_GAMMA, budget_optima, default_budgets, gamma
from negscale.fit.select import Candidate, choose, evaluate

FALLBACK_TOL_BOUNDED = 0.005  # as a fraction: 0.5 percentage points
FALLBACK_TOL_REL = 0.01  # lower-is-better metrics: 1% of the value at the largest m


@dataclass
class GroupFit:
    """One n group's own model choice (internal)."""

    n: float
    sel: np.ndarray
    cands: list[Candidate]
    chosen: Candidate | None
    why: str
    wide: bool


@dataclass
class PlotData:
    """What the plots need beyond the JSON (internal)."""

    prep: Prepared
    m_ref: float
    n_ref: float
    groups: list[GroupFit]
    group_reps: list[np.ndarray | None]
    chosen: Candidate
    global_reps: np.ndarray | None
    tolerance: float


def _tolerance(prep: Prepared, tolerance: float | None, metric: str) -> tuple[float, str]:
    unit = "percentage points" if prep.scale == "percent" else f"{metric} units"
    if tolerance is not None:
        if not np.isfinite(tolerance) or tolerance <= 0:
            raise NegscaleError(f"--tolerance must be a positive number, got {tolerance}")
        return float(tolerance), f"{unit}; given"
    sd = seed_sd_at_max_m(prep)
    if sd is not None:
        return sd, f"{unit}; default: run-to-run (seed) sd at the largest m, pooled over n groups"
    if prep.higher_is_better:
        tol = FALLBACK_TOL_BOUNDED * (100.0 if prep.scale == "percent" else 1.0)
        return tol, (f"{unit}; default without seeds: 0.5 percentage points (0.005 as a fraction)")
    at_max = [
        np.median(prep.value[(prep.n == g) & (prep.m == prep.m[prep.n == g].max())])
        for g in np.unique(prep.n)
    ]
    return FALLBACK_TOL_REL * float(np.median(at_max)), (
        f"{unit}; default without seeds: 1% of the metric at the largest m"
    )


def _noise_without_seeds(data: Data, groups: np.ndarray) -> float:
    """σ of log y from the residuals of each n group's better flexible m-only
    fit (free power law or exp), pooled: sqrt(ΣRSS / Σ(N − k)).

    Per group rather than one global fit, so that an additive law that cannot
    follow n-dependent curves does not pass its misfit off as noise.
    """
    rss, dof = 0.0, 0
    for g in np.unique(groups):
        sub = data.subset(np.nonzero(groups == g)[0])
        best = None
        for fid in ("free", "exp"):
            f = make_form(fid, False)
            if infeasible(f, sub) or len(sub) <= f.k:
                continue
            r = fit_form(f, sub, 0.05, wide=True, polish=1)
            if r is not None:
                cand = (float(np.sum(r.residuals**2)), len(sub) - f.k)
                if best is None or cand[0] / cand[1] < best[0] / best[1]:
                    best = cand
        if best is not None:
            rss, dof = rss + best[0], dof + best[1]
    return float(np.sqrt(rss / dof)) if dof > 0 else DELTA_FLOOR


def _orig_params(form: Form, P: np.ndarray, m_ref: float, n_ref: float) -> np.ndarray:
    return form.to_original(P, m_ref, n_ref)


def _params_summary(form: Form, point: np.ndarray, reps: np.ndarray | None, m_ref, n_ref):
    po = _orig_params(form, point, m_ref, n_ref)[0]
    params = {k: float(v) for k, v in zip(form.names, po, strict=True)}
    ci: dict[str, list[float]] = {}
    if reps is not None:
        ro = _orig_params(form, reps, m_ref, n_ref)
        for i, k in enumerate(form.names):
            ci[k] = summarise(ro[:, i])[1]
    else:
        ci = {k: [float("nan"), float("nan")] for k in form.names}
    return params, ci


def _bound_warnings(where: str, cand: Candidate) -> list[str]:
    out = []
    fit = cand.fit
    if fit is None:
        return out
    worrying = [b for b in fit.on_bound if not b.startswith(("E=lower", "A=", "B="))]
    if worrying:
        out.append(
            f"{where}: {cand.form.id} estimate on a bound ({', '.join(worrying)}); "
            "the data do not pin it down inside the allowed range"
        )
    if "A=lower" in fit.on_bound:
        out.append(
            f"{where}: {cand.form.id} finds no measurable dependence on m (A = 0): "
            "m_sat is 0 under it"
        )
    if not fit.converged:
        out.append(f"{where}: the optimiser did not report convergence for {cand.form.id}")
    if fit.rivals:
        out.append(
            f"{where}: {len(fit.rivals)} rival optimum/optima of {cand.form.id} within 1% of the "
            "best objective with different exponents: the fit is weakly identified"
        )
    if np.isfinite(cand.runs_p) and cand.runs_p < 0.01:
        out.append(
            f"{where}: residuals of {cand.form.id} follow a systematic pattern (runs test "
            f"p = {cand.runs_p:.2g}): the form misses the curve's shape (a sharp knee, or "
            "an m_sat that moves with n: see the per-n fits)"
        )
    return out


def fit(
    df: pd.DataFrame,
    *,
    metric: str = "auc",
    m_col: str = "m",
    n_col: str = "n",
    seed_col: str | None = "seed",
    setting: str = "auto",
    tolerance: float | None = None,
    bootstrap: int = 1000,
    scale: str = "auto",
    random_state: int = 0,
    higher_is_better: bool | None = None,
    forms: list[str] | None = None,
    budgets: list[float] | None = None,
    label: str | None = None,
) -> FitReport:
    """Fit a negative-count study (the method: the :mod:`negscale.fit` docstring).

    ``df`` holds one row per run (``load_sources`` builds it from results
    directories and tables). ``metric`` names the value column; its direction
    comes from its name (loss/rank/error: lower is better) unless
    ``higher_is_better`` is given. ``tolerance`` is ε in metric units (None:
    the seed sd at the largest m, else the documented fallback). ``forms``
    restricts the candidates, ``budgets`` sets the S = m·n values of the
    budget table, ``label`` names the metric in the report. Bad input raises
    :class:`negscale.errors.NegscaleError`; doubtful input adds warnings.
    """
    if bootstrap < 0:
        raise NegscaleError(f"--bootstrap must be >= 0, got {bootstrap}")
    form_ids = list(forms) if forms else list(FORM_IDS)
    unknown = [f for f in form_ids if f not in FORM_IDS]
    if unknown:
        raise NegscaleError(f"unknown form(s) {unknown}: choose from {', '.join(FORM_IDS)}")
    prep = prepare(
        df,
        metric=metric,
        m_col=m_col,
        n_col=n_col,
        seed_col=seed_col,
        scale=scale,
        higher_is_better=higher_is_better,
    )
    check_sizes(prep)
    setting, notes = resolve_setting(df, setting)
    warnings = list(prep.warnings) + notes + thin_design_warnings(prep)

    ms, ns = np.unique(prep.m), np.unique(prep.n)
    m_ref = float(np.sqrt(ms.min() * ms.max()))
    n_ref = float(np.sqrt(ns.min() * ns.max()))
    data = Data(prep.m / m_ref, prep.n / n_ref, prep.y)
    cells, groups = prep.cells, prep.groups
    multi_n = ns.size > 1

    # --- noise σ in log y, and the Huber δ built on it
    noise = huber_delta(data.logy, cells)
    delta_src = "1.4826·MAD of within-cell log residuals"
    if noise is None:
        noise = _noise_without_seeds(data, groups)
        delta_src = "residual sd of per-n-group free/exp fits (no seeds)"
    delta = noise
    if delta < DELTA_FLOOR:
        delta_src += f", floored at {DELTA_FLOOR}"
        delta = DELTA_FLOOR

    # --- candidates on all runs
    global_forms = [make_form(f, multi_n) for f in form_ids]
    cands = evaluate(global_forms, data, delta)
    runs_per_cell = len(data) / (cells.max() + 1)
    chosen, why = choose(cands, setting, noise, runs_per_cell)
    warnings += _bound_warnings("all runs", chosen)

    # --- each n group on its own
    gfits: list[GroupFit] = []
    for gi, g in enumerate(ns):
        sel = np.nonzero(groups == gi)[0]
        if not multi_n:
            gfits.append(GroupFit(float(g), sel, cands, chosen, why, False))
            continue
        sub = data.subset(sel)
        gc = evaluate([make_form(f, False) for f in form_ids], sub, delta, wide=True)
        try:
            gch, gwhy = choose(gc, setting, noise, runs_per_cell)
        except NegscaleError as exc:
            warnings.append(f"n={fmt(g)}: no form could be fitted on its own ({exc})")
            gfits.append(GroupFit(float(g), sel, gc, None, str(exc), True))
            continue
        gfits.append(GroupFit(float(g), sel, gc, gch, gwhy, True))
        warnings += _bound_warnings(f"n={fmt(g)}", gch)

    tol, tol_src = _tolerance(prep, tolerance, metric)
    eps = tol  # gains in error units equal gains in metric units
    budgets = list(budgets) if budgets else (default_budgets(prep.m, prep.n) if multi_n else [])

    # --- bootstrap: every derived quantity inside each replicate
    B = int(bootstrap)
    fails = 0
    kind = "off"
    global_reps = None
    group_reps: list[np.ndarray | None] = [None] * len(gfits)
    rival_reps: dict[str, np.ndarray] = {}
    best_aicc = min(c.aicc for c in cands if c.fit is not None)
    near = [c for c in cands if c.fit is not None and c.aicc - best_aicc <= 2.0]
    if B > 0:
        rng = np.random.default_rng(random_state)
        strata, kind = bs.strata_for(cells, groups)
        idx = bs.resample_indices(strata, B, rng)
        ly = bs.inflate(data.logy, strata, idx) if strata is cells else None
        global_reps, info = bs.refit(chosen.fit, data, idx, delta, logy=ly)
        fails = info["failed"]
        for c in near:
            if c is not chosen:
                rival_reps[c.form.id] = bs.refit(c.fit, data, idx, delta, logy=ly)[0]
        for gi, gf in enumerate(gfits):
            if gf.chosen is None:
                continue
            if not multi_n:
                group_reps[gi] = global_reps
                continue
            group_reps[gi], ginfo = bs.refit(
                gf.chosen.fit,
                data,
                idx[:, gf.sel],
                delta,
                wide=True,
                logy=None if ly is None else ly[:, gf.sel],
            )
            fails = max(fails, ginfo["failed"])
        if fails > 0.05 * B:
            warnings.append(
                f"{fails} of {B} bootstrap replicates could not be refitted "
                "(a resample lost m levels): intervals rest on the rest"
            )
    else:
        warnings.append("bootstrap off: no intervals")

    # --- answers per group
    gresults: list[GroupResult] = []
    msat_reps = []
    for gi, gf in enumerate(gfits):
        sub_m = prep.m[gf.sel]
        m_max = float(sub_m.max())
        gcands = [_cand_dict(c, gf.chosen, eps, m_ref, n_ref, None) for c in gf.cands]
        if gf.chosen is None:
            gresults.append(
                GroupResult(
                    gf.n,
                    int(gf.sel.size),
                    int(np.unique(sub_m).size),
                    m_max,
                    "–",
                    gf.why,
                    float("nan"),
                    [float("nan")] * 2,
                    float("nan"),
                    float("nan"),
                    float("nan"),
                    [float("nan")] * 2,
                    candidates=gcands,
                )
            )
            msat_reps.append(np.full(max(B, 1), np.nan))
            continue
        form = gf.chosen.form
        point = float(form.m_sat(gf.chosen.fit.params, eps)[0]) * m_ref
        reps = group_reps[gi]
        samples = form.m_sat(reps, eps) * m_ref if reps is not None else np.array([])
        samples = np.where(np.isnan(reps[:, 0]), np.nan, samples) if reps is not None else samples
        med, ci = summarise(samples, point)
        rmed, rci = summarise(samples / gf.n, point / gf.n)
        beyond = share_beyond(samples, m_max) if samples.size else float(point >= m_max)
        params, pci = _params_summary(form, gf.chosen.fit.params, reps, m_ref, n_ref)
        gresults.append(
            GroupResult(
                gf.n,
                int(gf.sel.size),
                int(np.unique(sub_m).size),
                m_max,
                form.id,
                gf.why,
                med,
                ci,
                point,
                beyond,
                rmed,
                rci,
                params,
                pci,
                gcands,
            )
        )
        msat_reps.append(samples if samples.size else np.array([point]))
        where = f"n={fmt(gf.n)}" if multi_n else "m_sat"
        if beyond >= 0.5:
            warnings.append(
                f"{where}: m_sat lies beyond the largest m tested ({fmt(m_max)}) in "
                f"{beyond:.0%} of replicates: it is an extrapolation; test larger m"
            )
        elif med < sub_m.min():
            warnings.append(
                f"{where}: m_sat ({fmt(med)}) lies below the smallest m tested "
                f"({fmt(float(sub_m.min()))}): the metric is already flat across the sweep"
            )
        else:
            above = int(np.sum(np.unique(sub_m) > med))
            if above < 2:
                warnings.append(
                    f"{where}: only {above} m level(s) beyond m_sat "
                    "(want >= 2 to confirm the plateau)"
                )

    # --- scaling across n
    scaling = None
    if multi_n:
        point_ms = np.array([g.m_sat_fit for g in gresults])
        gam_point = float(gamma(point_ms[None, :], ns)[0])
        gam = gamma(np.stack(msat_reps, axis=1), ns) if B > 0 else np.array([])
        gmed, gci = summarise(gam, gam_point)
        scaling = {
            "gamma": gmed,
            "gamma_ci": gci,
            "theory": THEORY_GAMMA[setting],
            "gamma_fit": gam_point,
            "groups": int(ns.size),
        }
        if any(g.beyond_m_max >= 0.5 for g in gresults):
            warnings.append("gamma rests on m_sat values extrapolated beyond the data")
        if ns.size == 2:
            warnings.append("gamma from two values of n is a line through two points")

    # --- chosen global form: m_sat under it, parameters, budget
    gform = chosen.form
    gpoint = float(gform.m_sat(chosen.fit.params, eps)[0]) * m_ref
    gsamples = gform.m_sat(global_reps, eps) * m_ref if global_reps is not None else np.array([])
    if global_reps is not None:
        gsamples = np.where(np.isnan(global_reps[:, 0]), np.nan, gsamples)
    gmed, gci = summarise(gsamples, gpoint)
    params, pci = _params_summary(gform, chosen.fit.params, global_reps, m_ref, n_ref)
    budget, bwarn = _budget_table(gform, chosen, global_reps, budgets, prep, setting, m_ref, n_ref)
    warnings += bwarn

    cand_dicts = []
    for c in cands:
        reps = global_reps if c is chosen else rival_reps.get(c.form.id)
        d = _cand_dict(c, chosen, eps, m_ref, n_ref, reps)
        d["within_2_aicc"] = c in near
        cand_dicts.append(d)

    if prep.dropped:
        warnings.append("dropped before fitting: " + "; ".join(prep.dropped))
    err_def = (
        f"y = {prep.top:g} − {metric}"
        if prep.higher_is_better
        else f"y = {metric} (lower is better)"
    )
    plot = PlotData(prep, m_ref, n_ref, gfits, group_reps, chosen, global_reps, eps)
    return FitReport(
        metric=label or metric,
        higher_is_better=prep.higher_is_better,
        setting=setting,
        tolerance=tol,
        tolerance_source=tol_src,
        scale=prep.scale,
        form=gform.id,
        formula=gform.formula,
        form_reason=why,
        params=params,
        params_ci=pci,
        groups=gresults,
        scaling=scaling,
        candidates=cand_dicts,
        budget=budget,
        m_sat_form=gmed,
        m_sat_form_ci=gci,
        warnings=warnings,
        dropped=prep.dropped,
        runs=len(data),
        bootstrap=B,
        bootstrap_kind=kind,
        bootstrap_failed=fails,
        huber_delta=delta,
        huber_delta_source=delta_src,
        error_definition=err_def,
        plot_data=plot,
    )


_PINNED = {
    "m >=": "m* = 1, the law would put the whole budget into n",
    "n >=": "n* = 1, the law would put the whole budget into m",
    "m <=": "m* at the pool cap m = n, the law would put more into m",
}


def budget_max_ratio(setting: str, m: np.ndarray, n: np.ndarray) -> float | None:
    """The cap on m/n for the budget optimum: self-supervised anchors share one
    pool of m negatives drawn from the n training items, so m ≤ n (widened to
    the largest m/n actually run, should the data exceed it); supervised
    anchors draw their own negatives, so only n ≥ 1 (None)."""
    if setting != "self-supervised":
        return None
    return max(1.0, float(np.max(np.asarray(m, float) / np.asarray(n, float))))


def _budget_table(
    form: Form,
    chosen: Candidate,
    reps: np.ndarray | None,
    budgets: list[float],
    prep: Prepared,
    setting: str,
    m_ref: float,
    n_ref: float,
) -> tuple[list[dict], list[str]]:
    """Rows of the budget-optimal ratio table, and the warnings they need.

    The optimum of the fitted law on m·n = S is constrained (m ≥ 1, n ≥ 1, and
    m ≤ n under a shared pool: :func:`budget_max_ratio`); the point estimate
    and every bootstrap replicate go through the same solver. A row is
    ``extrapolated`` when its (point) m* or n* lies outside the tested m or n
    range; ``constraint`` names the bound the point optimum sits on (None:
    interior) and ``constraint_share`` is the share of replicates whose optimum
    sits on a bound (it explains interval ends such as m*/n* = 1/S).
    """
    if not form.has_n or not budgets:
        return [], []
    max_ratio = budget_max_ratio(setting, prep.m, prep.n)
    kw = {"m_min": 1.0, "max_ratio": max_ratio}
    pm, pn = budget_optima(form, chosen.fit.params, budgets, m_ref, n_ref, **kw)
    rm = rn = None
    if reps is not None:
        rm, rn = budget_optima(form, reps, budgets, m_ref, n_ref, **kw)
    m_lo, m_hi = float(prep.m.min()), float(prep.m.max())
    n_lo, n_hi = float(prep.n.min()), float(prep.n.max())
    tol = 1e-9
    rows, extra, pinned, unsolved = [], [], [], []
    for j, S in enumerate(budgets):
        mo, no = float(pm[0, j]), float(pn[0, j])
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = mo / no
            rr = rm[:, j] / rn[:, j] if rm is not None else None
        med, ci = summarise(rr, ratio) if rr is not None else (ratio, [np.nan] * 2)
        finite = np.isfinite(mo) and np.isfinite(no)
        outside = finite and not (
            m_lo * (1 - tol) <= mo <= m_hi * (1 + tol)
            and n_lo * (1 - tol) <= no <= n_hi * (1 + tol)
        )
        lo_b, hi_b = budget_bounds(S, 1.0, max_ratio)
        constraint = None
        if finite and mo <= lo_b * (1 + tol):
            constraint = "m >= 1"
        elif finite and mo >= hi_b * (1 - tol):
            constraint = (
                "n >= 1"
                if hi_b >= S * (1 - tol)
                else ("m <= n" if max_ratio == 1.0 else f"m <= {max_ratio:.3g}·n")
            )
        row = {
            "S": S,
            "ratio": med,
            "ratio_ci": ci,
            "m": mo,
            "n": no,
            "ratio_fit": ratio,
            "extrapolated": bool(outside),
            "constraint": constraint,
        }
        if rm is not None:
            row["m_ci"] = summarise(rm[:, j])[1]
            row["n_ci"] = summarise(rn[:, j])[1]
            r = rm[:, j][np.isfinite(rm[:, j])]
            on = (r <= lo_b * (1 + tol)) | (r >= hi_b * (1 - tol))
            row["constraint_share"] = float(on.mean()) if r.size else float("nan")
        rows.append(row)
        if not finite:
            unsolved.append(fmt(S))
        if row["extrapolated"]:
            extra.append(fmt(S))
        if constraint is not None:
            pinned.append(f"S={fmt(S)}: {_PINNED[constraint[:4]]}")
    warnings = []
    if unsolved:
        warnings.append(
            f"budget table: no optimal split at S = {', '.join(unsolved)} (no feasible m, or "
            "a law that depends on neither m nor n): left blank"
        )
    if extra:
        w = (
            f"budget table: at S = {', '.join(extra)} the optimal m* or n* lies outside the "
            f"tested range (m {fmt(m_lo)}–{fmt(m_hi)}, n {fmt(n_lo)}–{fmt(n_hi)}): those rows "
            "extrapolate the fitted law and are marked"
        )
        if pinned:
            w += (
                "; the optimum sits on a constraint, not at a balance of the two terms ("
                + "; ".join(pinned)
                + ")"
            )
        warnings.append(w)
    elif pinned:
        warnings.append(
            "budget table: the optimum sits on a constraint, not at a balance of the two "
            "terms (" + "; ".join(pinned) + ")"
        )
    return rows, warnings


def _cand_dict(c: Candidate, chosen, eps, m_ref, n_ref, reps) -> dict:
    d = {
        "form": c.form.id,
        "k": c.form.k,
        "formula": c.form.formula,
        "aic": c.aicc,
        "aicc": c.aicc,
        "bic": c.bic,
        "loo_error": c.loo_error,
        "runs_p": c.runs_p,
        "chosen": c is chosen,
        "skipped": c.skipped,
        "fit_ok": c.fit is not None,
    }
    if c.fit is not None:
        d["m_sat"] = float(c.form.m_sat(c.fit.params, eps)[0]) * m_ref
        if reps is not None:
            s = c.form.m_sat(reps, eps) * m_ref
            s = np.where(np.isnan(reps[:, 0]), np.nan, s)
            d["m_sat_ci"] = summarise(s)[1]
    return d


def fit_groups(df: pd.DataFrame, group_col: str, **kwargs) -> list[tuple[object, FitReport]]:
    """One report per value of ``group_col`` (e.g. per metric of a published table)."""
    if group_col not in df.columns:
        raise NegscaleError(f"no column {group_col!r} to group by")
    out = []
    metric = kwargs.get("metric", "auc")
    from negscale.fit.inputs import DROPPED_ATTR, lower_is_better

    for value, sub in df.groupby(group_col, sort=True, dropna=True):
        sub = sub.copy()
        sub.attrs[DROPPED_ATTR] = list(df.attrs.get(DROPPED_ATTR, []))
        kw = dict(kwargs)
        kw.setdefault(
            "label", str(value) if group_col == "metric" else f"{metric} [{group_col}={value}]"
        )
        if kw.get("higher_is_better") is None and lower_is_better(str(value)):
            kw["higher_is_better"] = False
        try:
            rep = fit(sub, **kw)
        except NegscaleError as exc:
            raise NegscaleError(f"{group_col}={value}: {exc}") from None
        rep.group = {"column": group_col, "value": value}
        out.append((value, rep))
    if not out:
        raise NegscaleError(f"column {group_col!r} has no values to group by")
    return out
