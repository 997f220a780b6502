"""From a table of runs to a :class:`FitReport`, as a pipeline of named stages.

setup (validate, error transform, tolerance) → noise and Huber δ → resample
(bootstrap indices) → global form choice → per-group choice (model-free
m_sat, rejections) → common per-group form → bootstrap refits → group results
→ scaling (γ, balance point) → budget → report. Each stage hands the next a
small dataclass; the method is documented in docs/fitting.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from negscale.errors import NegscaleError
from negscale.fit import bootstrap as bs
from negscale.fit.budget import budget_table
from negscale.fit.fmt import fmt
from negscale.fit.forms import FORM_IDS, Form, make_form
from negscale.fit.inputs import (
    Prepared,
    check_sizes,
    prepare,
    resolve_setting,
    seed_sd_at_max_m,
    thin_design_warnings,
)
from negscale.fit.modelfree import ModelFree, bracket, model_free
from negscale.fit.objective import DELTA_FLOOR, Data, huber_delta
from negscale.fit.optimize import fit_form, infeasible
from negscale.fit.reject import rejection
from negscale.fit.report import FitReport, GroupResult
from negscale.fit.saturation import share_beyond, summarise
from negscale.fit.scaling import THEORY_GAMMA, default_budgets, gamma
from negscale.fit.select import Candidate, choose, evaluate

FALLBACK_TOL_BOUNDED = 0.005  # as a fraction: 0.5 percentage points
FALLBACK_TOL_REL = 0.01  # lower-is-better metrics: 1% of the value at the largest m
THIN_LEVELS = 7  # fewer m levels than this (or no seeds): m_sat is read as a bracket


# ------------------------------------------------------------------ stage data
@dataclass
class Setup:
    """Validated runs in the fitter's units, the setting and the tolerance."""

    prep: Prepared
    data: Data
    m_ref: float
    n_ref: float
    ns: np.ndarray
    setting: str
    form_ids: list[str]
    eps: float
    tol_src: str
    metric: str
    warnings: list[str]

    @property
    def multi_n(self) -> bool:
        return self.ns.size > 1

    @property
    def runs_per_cell(self) -> float:
        return len(self.data) / (self.prep.cells.max() + 1)


@dataclass
class Noise:
    """σ of log y (run-to-run noise) and the Huber δ built on it."""

    sigma: float
    delta: float
    source: str


@dataclass
class Resample:
    """Bootstrap row indices (R, N) and, for the stratified kind, re-spread log y."""

    B: int
    kind: str
    idx: np.ndarray | None = None
    logy: np.ndarray | None = None

    def take(self, data: Data, sel: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Resampled (m, y) of the runs ``sel`` (scaled m), or (None, None)."""
        if self.idx is None:
            return None, None
        ix = self.idx[:, sel]
        Y = data.y[ix] if self.logy is None else np.exp(self.logy[:, sel])
        return data.m[ix], Y


@dataclass
class GlobalChoice:
    cands: list[Candidate]
    chosen: Candidate
    why: str

    @property
    def near(self) -> list[Candidate]:
        """Candidates within 2 AICc of the best (their m_sat is bootstrapped too)."""
        best = min(c.aicc for c in self.cands if c.fit is not None)
        return [c for c in self.cands if c.fit is not None and c.aicc - best <= 2.0]


@dataclass
class GroupFit:
    """One n group's own model choice, model-free m_sat and rejections."""

    n: float
    sel: np.ndarray
    cands: list[Candidate]
    chosen: Candidate | None
    why: str
    wide: bool
    mf: ModelFree | None = None
    rejected: dict[str, str] = field(default_factory=dict)

    def cand(self, form_id: str) -> Candidate | None:
        return next((c for c in self.cands if c.form.id == form_id and c.fit is not None), None)


@dataclass
class Refits:
    """Bootstrap parameters (scaled units, NaN rows = failed replicates)."""

    global_reps: np.ndarray | None = None
    rivals: dict[str, np.ndarray] = field(default_factory=dict)
    groups: dict[tuple[int, str], np.ndarray] = field(default_factory=dict)
    failed: int = 0


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


# ------------------------------------------------------------------ helpers
def m_sat_samples(form: Form, reps: np.ndarray | None, eps: float, m_ref: float) -> np.ndarray:
    """m_sat of every replicate in user units; NaN where the replicate failed."""
    if reps is None:
        return np.array([])
    s = form.m_sat(reps, eps) * m_ref
    return np.where(np.isnan(reps[:, 0]), np.nan, s)


def _m_sat(c: Candidate, eps: float, m_ref: float) -> float:
    return float(c.form.m_sat(c.fit.params, eps)[0]) * m_ref


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


# ------------------------------------------------------------------ stages
def setup_stage(
    df: pd.DataFrame,
    *,
    metric,
    m_col,
    n_col,
    seed_col,
    setting,
    tolerance,
    scale,
    higher_is_better,
    forms,
) -> Setup:
    """Validate the table, transform to the error y, resolve setting and ε."""
    form_ids = list(forms) if forms else list(FORM_IDS)
    unknown = [f for f in form_ids if f not in FORM_IDS]
    if unknown:
        raise NegscaleError(f"unknown form(s) {unknown}: choose from {', '.join(FORM_IDS)}")
    if metric == "train_loss":
        raise NegscaleError(
            "--metric train_loss: the training loss is not fitted, its chance level ln(m+1) "
            "grows with m, so more negatives look worse; fit val_loss (or a retrieval metric)"
        )
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
    eps, tol_src = _tolerance(prep, tolerance, metric)
    return Setup(prep, data, m_ref, n_ref, ns, setting, form_ids, eps, tol_src, metric, warnings)


def noise_stage(s: Setup) -> Noise:
    """σ from within-cell residuals (seeds), else from per-group flexible fits."""
    sigma = huber_delta(s.data.logy, s.prep.cells)
    src = "1.4826·MAD of within-cell log residuals"
    if sigma is None:
        sigma = _noise_without_seeds(s.data, s.prep.groups)
        src = "residual sd of per-n-group free/exp fits (no seeds)"
    delta = sigma
    if delta < DELTA_FLOOR:
        src += f", floored at {DELTA_FLOOR}"
        delta = DELTA_FLOOR
    return Noise(sigma, delta, src)


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


def resample_stage(s: Setup, bootstrap: int, random_state: int) -> Resample:
    """Draw the bootstrap once; every later stage reads the same replicates."""
    if bootstrap <= 0:
        s.warnings.append("bootstrap off: no intervals")
        return Resample(0, "off")
    rng = np.random.default_rng(random_state)
    cells = s.prep.cells
    strata, kind = bs.strata_for(cells, s.prep.groups)
    idx = bs.resample_indices(strata, int(bootstrap), rng)
    ly = bs.inflate(s.data.logy, strata, idx) if strata is cells else None
    return Resample(int(bootstrap), kind, idx, ly)


def global_stage(s: Setup, noise: Noise) -> GlobalChoice:
    """Every candidate on all runs (with an n term when there are several n)."""
    forms = [make_form(f, s.multi_n) for f in s.form_ids]
    cands = evaluate(forms, s.data, noise.delta)
    chosen, why = choose(cands, s.setting, noise.sigma, s.runs_per_cell)
    return GlobalChoice(cands, chosen, why)


def group_stage(
    s: Setup, noise: Noise, res: Resample, gi: int, cands: list[Candidate] | None
) -> GroupFit:
    """One n group: its candidates (m-only forms), its model-free m_sat, the forms
    its data contradict, and its choice among the rest."""
    g = float(s.ns[gi])
    sel = np.nonzero(s.prep.groups == gi)[0]
    sub = s.data.subset(sel)
    if cands is None:
        cands = evaluate([make_form(f, False) for f in s.form_ids], sub, noise.delta, wide=True)
    M, Y = res.take(s.data, sel)
    M = None if M is None else M * s.m_ref
    mf = model_free(s.prep.m[sel], s.prep.y[sel], s.eps, M, Y, noise.sigma)
    rejected = {}
    for c in cands:
        if c.fit is None:
            continue
        why = rejection(
            c,
            _m_sat(c, s.eps, s.m_ref),
            s.prep.m[sel],
            s.prep.y[sel],
            g / s.n_ref,
            s.m_ref,
            noise.sigma,
            mf,
            fmt,
        )
        if why:
            rejected[c.form.id] = why
    try:
        chosen, why = choose(cands, s.setting, noise.sigma, s.runs_per_cell, rejected)
    except NegscaleError as exc:
        s.warnings.append(f"n={fmt(g)}: no form could be fitted on its own ({exc})")
        return GroupFit(g, sel, cands, None, str(exc), True, mf, rejected)
    return GroupFit(g, sel, cands, chosen, why, s.multi_n, mf, rejected)


def common_form(groups: list[GroupFit]) -> tuple[str | None, list[str]]:
    """One per-group form for every n (the γ must compare like with like).

    Among forms fitted in every group, those no group rejects are eligible
    (all fitted ones when none is); the pick has the lowest mean held-out
    error over the groups (mean RMS log residual where a held-out error is
    missing). Returns (the pick, every eligible form).
    """
    if any(g.chosen is None for g in groups):
        return None, []
    ids = [c.form.id for c in groups[0].cands]
    fitted = [f for f in ids if all(g.cand(f) is not None for g in groups)]
    elig = [f for f in fitted if not any(f in g.rejected for g in groups)] or fitted
    if not elig:
        return None, []

    def score(f: str) -> tuple[float, float]:
        loo = [g.cand(f).loo_error for g in groups]
        rms = float(np.mean([g.cand(f).rms for g in groups]))
        return (float(np.mean(loo)) if np.all(np.isfinite(loo)) else np.inf, rms)

    return min(elig, key=score), elig


def refit_stage(
    s: Setup,
    noise: Noise,
    res: Resample,
    glob: GlobalChoice,
    groups: list[GroupFit],
    common: str | None,
) -> Refits:
    """Refit, on every replicate, the global pick, its rivals within 2 AICc, the
    free form (for the balance point), and each group's pick and common form."""
    out = Refits()
    if res.idx is None:
        return out
    idx, ly, d = res.idx, res.logy, noise.delta
    out.global_reps, info = bs.refit(glob.chosen.fit, s.data, idx, d, logy=ly)
    out.failed = info["failed"]
    free = next((c for c in glob.cands if c.form.id == "free" and c.fit is not None), None)
    extra = glob.near + ([free] if free is not None and s.multi_n else [])
    for c in extra:
        if c is not glob.chosen and c.form.id not in out.rivals:
            out.rivals[c.form.id] = bs.refit(c.fit, s.data, idx, d, logy=ly)[0]
    for gi, gf in enumerate(groups):
        if gf.chosen is None:
            continue
        if not s.multi_n:
            out.groups[(gi, gf.chosen.form.id)] = out.global_reps
            continue
        for fid in {gf.chosen.form.id, common} - {None}:
            c = gf.cand(fid)
            sub_ly = None if ly is None else ly[:, gf.sel]
            reps, ginfo = bs.refit(c.fit, s.data, idx[:, gf.sel], d, wide=True, logy=sub_ly)
            out.groups[(gi, fid)] = reps
            out.failed = max(out.failed, ginfo["failed"])
    if out.failed > 0.05 * res.B:
        s.warnings.append(
            f"{out.failed} of {res.B} bootstrap replicates could not be refitted "
            "(a resample lost m levels): intervals rest on the rest"
        )
    return out


def _trust(gf: GroupFit, med: float, m_max: float, thin: bool) -> tuple[str, str, bool]:
    """Which m_sat estimate the report trusts for a group, why, and whether the
    parametric and model-free answers agree."""
    lo, hi = gf.mf.consistent()
    agree = bool(lo <= med <= hi)
    if gf.chosen.form.id in gf.rejected:
        return "model-free", "every candidate form is contradicted by the data", agree
    if not agree:
        return "model-free", "the parametric m_sat lies outside the model-free range", agree
    if thin:
        return (
            "model-free",
            "thin design (few m levels or no seeds): read between two tested levels",
            agree,
        )
    if med >= m_max:
        return (
            "parametric",
            "inside the model-free range; beyond the data: a lower bound",
            agree,
        )
    return "parametric", "inside the model-free range", agree


def group_result_stage(
    s: Setup, res: Resample, refits: Refits, gf: GroupFit, gi: int
) -> GroupResult:
    """The answers for one n group: parametric m_sat, model-free m_sat, bracket."""
    sub_m = s.prep.m[gf.sel]
    levels = np.unique(sub_m)
    m_max = float(sub_m.max())
    mf = gf.mf
    base = dict(
        n=gf.n,
        points=int(gf.sel.size),
        m_levels=int(levels.size),
        m_max=m_max,
        form_reason=gf.why,
        m_sat_model_free=mf.point,
        m_sat_model_free_ci=mf.ci,
        model_free_status=mf.status,
    )
    cands = [_cand_dict(c, gf.chosen, s, refits.groups.get((gi, c.form.id))) for c in gf.cands]
    for d in cands:
        d["rejected"] = gf.rejected.get(d["form"])
    if gf.chosen is None:
        nan2 = [float("nan")] * 2
        return GroupResult(
            **base,
            form="–",
            m_sat=np.nan,
            m_sat_ci=nan2,
            m_sat_fit=np.nan,
            beyond_m_max=np.nan,
            ratio=np.nan,
            ratio_ci=nan2,
            candidates=cands,
            bracket=bracket(levels, mf.point),
            trusted="model-free",
            trust_reason="no form could be fitted",
        )
    form = gf.chosen.form
    point = _m_sat(gf.chosen, s.eps, s.m_ref)
    reps = refits.groups.get((gi, form.id))
    samples = m_sat_samples(form, reps, s.eps, s.m_ref)
    med, ci = summarise(samples, point)
    rmed, rci = summarise(samples / gf.n, point / gf.n)
    beyond = share_beyond(samples, m_max) if samples.size else float(point >= m_max)
    params, pci = _params_summary(form, gf.chosen.fit.params, reps, s.m_ref, s.n_ref)
    thin = levels.size < THIN_LEVELS or s.runs_per_cell < 2
    trusted, reason, agree = _trust(gf, med, m_max, thin)
    value = med if trusted == "parametric" else mf.point
    _group_warnings(s, gf, med, beyond, sub_m, trusted, agree)
    return GroupResult(
        **base,
        form=form.id,
        m_sat=med,
        m_sat_ci=ci,
        m_sat_fit=point,
        beyond_m_max=beyond,
        ratio=rmed,
        ratio_ci=rci,
        params=params,
        params_ci=pci,
        candidates=cands,
        bracket=bracket(levels, value),
        trusted=trusted,
        trust_reason=reason,
        agree=agree,
    )


def _group_warnings(s, gf, med, beyond, sub_m, trusted, agree) -> None:
    where = f"n={fmt(gf.n)}" if s.multi_n else "m_sat"
    m_max = float(sub_m.max())
    if beyond >= 0.5:
        s.warnings.append(
            f"{where}: m_sat lies beyond the largest m tested ({fmt(m_max)}) in "
            f"{beyond:.0%} of replicates: it is an extrapolation, only a lower bound "
            f"(≥ {fmt(m_max)}); test larger m"
        )
    elif med < sub_m.min():
        s.warnings.append(
            f"{where}: m_sat ({fmt(med)}) lies below the smallest m tested "
            f"({fmt(float(sub_m.min()))}): the metric is already flat across the sweep"
        )
    else:
        above = int(np.sum(np.unique(sub_m) > med))
        if above < 2:
            s.warnings.append(
                f"{where}: only {above} m level(s) beyond m_sat (want >= 2 to confirm the plateau)"
            )
    if not agree:
        s.warnings.append(
            f"{where}: the parametric m_sat ({gf.chosen.form.id}: {fmt(med)}) and the "
            f"model-free one ({fmt(gf.mf.point)}; {gf.mf.status}) disagree: trusting {trusted}"
        )
    for fid, why in gf.rejected.items():
        s.warnings.append(f"{where}: {fid} rejected: {why}")
    if gf.chosen is not None:
        s.warnings.extend(_bound_warnings(where, gf.chosen))


def scaling_stage(
    s: Setup,
    groups: list[GroupFit],
    refits: Refits,
    common: str | None,
    elig: list[str],
    gresults: list[GroupResult],
) -> dict | None:
    """γ under one common per-group form (form choice carried into the interval),
    and the model-free γ; withheld when it rests on extrapolated m_sat."""
    if not s.multi_n:
        return None
    ns = s.ns
    out: dict = {"theory": THEORY_GAMMA.get(s.setting), "groups": int(ns.size), "form": common}
    if common is None:
        out.update(
            gamma=None,
            gamma_ci=[None, None],
            gamma_fit=None,
            withheld="no form fitted in every n group",
        )
        return out
    points = np.array([_m_sat(g.cand(common), s.eps, s.m_ref) for g in groups])
    by_form = {
        f: float(gamma(np.array([[_m_sat(g.cand(f), s.eps, s.m_ref) for g in groups]]), ns)[0])
        for f in elig
    }
    gpoint = by_form[common]
    reps = [
        m_sat_samples(g.cand(common).form, refits.groups.get((i, common)), s.eps, s.m_ref)
        for i, g in enumerate(groups)
    ]
    gam = gamma(np.stack(reps, axis=1), ns) if reps[0].size else np.array([])
    gmed, gci = summarise(gam, gpoint)
    fin = [v for v in by_form.values() if np.isfinite(v)]
    hull = [min(gci[0], *fin), max(gci[1], *fin)] if np.all(np.isfinite(gci)) else gci
    beyond = [fmt(g.n) for g, p in zip(gresults, points, strict=True) if p >= g.m_max]
    withheld = (
        f"rests on m_sat extrapolated beyond the data at n = {', '.join(beyond)}"
        if beyond
        else None
    )
    out.update(
        gamma=gmed,
        gamma_ci=hull,
        gamma_ci_common_form=gci,
        gamma_fit=gpoint,
        gamma_by_form=by_form,
        withheld=withheld,
        m_sat_common_form=points.tolist(),
    )
    out.update(_model_free_gamma(groups, ns))
    if withheld:
        s.warnings.append(f"gamma withheld: it {withheld} (under {common})")
    if ns.size == 2:
        s.warnings.append("gamma from two values of n is a line through two points")
    return out


def _model_free_gamma(groups: list[GroupFit], ns: np.ndarray) -> dict:
    """γ of the model-free m_sat, when every group reached it inside its data;
    ``gamma_model_free_open`` marks it when some group's interval is open above
    (its tail may still rise: the slope is then only indicative)."""
    pts = np.array([g.mf.point for g in groups])
    lo = np.array([g.mf.levels[0] for g in groups])
    hi = np.array([g.mf.ci[1] for g in groups])  # NaN without a bootstrap
    if not (np.all(np.isfinite(pts)) and np.all(pts > lo)):
        return {"gamma_model_free": None, "gamma_model_free_ci": [None, None]}
    point = float(gamma(pts[None, :], ns)[0])
    S = [g.mf.samples for g in groups]
    gam = gamma(np.stack(S, axis=1), ns) if S[0].size else np.array([])
    med, ci = summarise(gam, point)
    return {
        "gamma_model_free": med,
        "gamma_model_free_ci": ci,
        "gamma_model_free_open": bool(np.any(np.isinf(hi))),
    }


MISFIT_FACTOR = 2.0  # joint-law log-residual rms over max(noise, per-n rms): misfit above


def balance_stage(
    s: Setup, glob: GlobalChoice, refits: Refits, groups: list[GroupFit], noise: Noise
) -> dict | None:
    """The balance point m_bal(n) = (A·n^b/B)^(1/a) of the joint free law, where
    its m term equals its n term: exponent b/a (theory ½ supervised, 1 self-sup.).

    The exponent means something only if the additive law describes the data:
    when its log-residual rms exceeds twice the larger of the noise σ and the
    per-n fits' pooled rms, the n and m effects interact and b/a is flagged
    ``supported: False`` with a warning (it is still reported)."""
    if not s.multi_n:
        return None
    theory = THEORY_GAMMA.get(s.setting)
    free = next((c for c in glob.cands if c.form.id == "free" and c.fit is not None), None)
    if free is None:
        return {
            "exponent": None,
            "exponent_ci": [None, None],
            "theory": theory,
            "form": "free",
            "note": "the free joint law could not be fitted (needs >= 3 values of n)",
        }
    f = free.form
    point = float(free.fit.params[f.idx("b")] / free.fit.params[f.idx("a")])
    reps = refits.global_reps if glob.chosen is free else refits.rivals.get("free")
    ratio = reps[:, f.idx("b")] / reps[:, f.idx("a")] if reps is not None else np.array([])
    med, ci = summarise(ratio, point)
    per_n = _pooled_rms(groups)
    supported = bool(free.rms <= MISFIT_FACTOR * max(noise.sigma, per_n))
    if not supported:
        s.warnings.append(
            f"balance point: the joint additive law misfits (log-residual rms {free.rms:.3g} "
            f"against {per_n:.3g} for the per-n fits and noise {noise.sigma:.3g}); the m and n "
            "effects interact, so the exponent b/a is not supported by these data"
        )
    return {
        "exponent": med,
        "exponent_ci": ci,
        "theory": theory,
        "form": "free",
        "exponent_fit": point,
        "supported": supported,
        "joint_rms": free.rms,
        "per_n_rms": per_n,
    }


def _pooled_rms(groups: list[GroupFit]) -> float:
    """Log-residual rms of every group's chosen fit, pooled over their runs."""
    res = [g.chosen.fit.residuals for g in groups if g.chosen is not None and g.chosen.fit]
    return float(np.sqrt(np.mean(np.concatenate(res) ** 2))) if res else float("nan")


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


def _params_summary(form: Form, point: np.ndarray, reps: np.ndarray | None, m_ref, n_ref):
    po = form.to_original(point, m_ref, n_ref)[0]
    params = {k: float(v) for k, v in zip(form.names, po, strict=True)}
    if reps is None:
        return params, {k: [float("nan"), float("nan")] for k in form.names}
    ro = form.to_original(reps, m_ref, n_ref)
    return params, {k: summarise(ro[:, i])[1] for i, k in enumerate(form.names)}


def _cand_dict(c: Candidate, chosen, s: Setup, reps) -> dict:
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
        d["m_sat"] = _m_sat(c, s.eps, s.m_ref)
        if reps is not None:
            d["m_sat_ci"] = summarise(m_sat_samples(c.form, reps, s.eps, s.m_ref))[1]
    return d


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
    """Fit a negative-count study (the method: docs/fitting.md).

    ``df`` holds one row per run (``load_sources`` builds it from results
    directories and tables). ``metric`` names the value column; its direction
    comes from its name (loss/rank/error/excess_: lower is better) unless
    ``higher_is_better`` is given. ``tolerance`` is ε in metric units (None:
    the seed sd at the largest m, else the documented fallback). ``forms``
    restricts the candidates, ``budgets`` sets the S = m·n values of the
    budget table, ``label`` names the metric in the report. Bad input raises
    :class:`negscale.errors.NegscaleError`; doubtful input adds warnings.
    """
    if bootstrap < 0:
        raise NegscaleError(f"--bootstrap must be >= 0, got {bootstrap}")
    s = setup_stage(
        df,
        metric=metric,
        m_col=m_col,
        n_col=n_col,
        seed_col=seed_col,
        setting=setting,
        tolerance=tolerance,
        scale=scale,
        higher_is_better=higher_is_better,
        forms=forms,
    )
    noise = noise_stage(s)
    res = resample_stage(s, bootstrap, random_state)
    glob = global_stage(s, noise)
    if s.multi_n:
        groups = [group_stage(s, noise, res, gi, None) for gi in range(s.ns.size)]
    else:  # one n: the all-runs fit is the group's fit
        groups = [group_stage(s, noise, res, 0, glob.cands)]
        glob.chosen, glob.why = groups[0].chosen, groups[0].why
    if s.multi_n:
        s.warnings.extend(_bound_warnings("all runs", glob.chosen))
    common, elig = common_form(groups) if s.multi_n else (None, [])
    refits = refit_stage(s, noise, res, glob, groups, common)
    gresults = [group_result_stage(s, res, refits, gf, gi) for gi, gf in enumerate(groups)]
    scaling = scaling_stage(s, groups, refits, common, elig, gresults)
    balance = balance_stage(s, glob, refits, groups, noise)
    budgets = (
        list(budgets) if budgets else (default_budgets(s.prep.m, s.prep.n) if s.multi_n else [])
    )
    budget, bwarn = budget_table(
        glob.chosen, refits.global_reps, budgets, s.prep, s.setting, s.m_ref, s.n_ref
    )
    s.warnings.extend(bwarn)
    return _report(s, noise, res, glob, groups, refits, gresults, scaling, balance, budget, label)


def _report(s, noise, res, glob, groups, refits, gresults, scaling, balance, budget, label):
    """Assemble the :class:`FitReport` from the stages' outputs."""
    gform = glob.chosen.form
    gpoint = _m_sat(glob.chosen, s.eps, s.m_ref)
    gmed, gci = summarise(m_sat_samples(gform, refits.global_reps, s.eps, s.m_ref), gpoint)
    params, pci = _params_summary(
        gform, glob.chosen.fit.params, refits.global_reps, s.m_ref, s.n_ref
    )
    near = glob.near
    cand_dicts = []
    for c in glob.cands:
        reps = refits.global_reps if c is glob.chosen else refits.rivals.get(c.form.id)
        d = _cand_dict(c, glob.chosen, s, reps if c in near else None)
        d["within_2_aicc"] = c in near
        cand_dicts.append(d)
    prep = s.prep
    if prep.dropped:
        s.warnings.append("dropped before fitting: " + "; ".join(prep.dropped))
    err_def = (
        f"y = {prep.top:g} − {s.metric}"
        if prep.higher_is_better
        else f"y = {s.metric} (lower is better)"
    )
    group_reps = [
        refits.groups.get((i, g.chosen.form.id)) if g.chosen else None for i, g in enumerate(groups)
    ]
    plot = PlotData(
        prep, s.m_ref, s.n_ref, groups, group_reps, glob.chosen, refits.global_reps, s.eps
    )
    return FitReport(
        metric=label or s.metric,
        higher_is_better=prep.higher_is_better,
        setting=s.setting,
        tolerance=s.eps,
        tolerance_source=s.tol_src,
        scale=prep.scale,
        form=gform.id,
        formula=gform.formula,
        form_reason=glob.why,
        params=params,
        params_ci=pci,
        groups=gresults,
        scaling=scaling,
        candidates=cand_dicts,
        budget=budget,
        m_sat_form=gmed,
        m_sat_form_ci=gci,
        warnings=s.warnings,
        dropped=prep.dropped,
        runs=len(s.data),
        bootstrap=res.B,
        bootstrap_kind=res.kind,
        bootstrap_failed=refits.failed,
        huber_delta=noise.delta,
        huber_delta_source=noise.source,
        error_definition=err_def,
        balance=balance,
        plot_data=plot,
    )


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
