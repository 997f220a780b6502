"""Choosing the form: AICc, BIC, held-out extrapolation error, residual pattern.

Rule (documented in the package docstring and printed with the report):

1. Fit every identifiable candidate; AICc and BIC from its log residuals.
2. Refit each without the largest m level(s) of every n group (the top
   ⌊L/6⌋ levels, at least one, of L) and score the mean absolute relative
   error of the predicted error y on the held-out cell means.
3. A candidate that is both more than 10 AICc units behind the best and
   fits visibly worse in sample (RMS log residual > 1.5× the best's) is not
   eligible: a lucky extrapolation must not rescue a wrong shape. (AICc alone
   is not used to exclude: with 5 points per group its small-sample penalty
   would veto every 3-parameter form, knee-shaped ones included.)
4. Among the eligible, the best held-out error wins; errors within
   max(25% of the best, 0.8·σ/√k — the typical error of a held-out cell mean
   of k runs with noise σ in log y) are a tie. A tie prefers, in order:
   residuals without a systematic pattern (runs test p ≥ 0.01), the theory
   form of the setting — only when its runs test could run and found no
   pattern —, fewer parameters, lower AICc.
5. A form the data contradict (:mod:`negscale.fit.reject`) is not chosen
   while any eligible form is left; when all are, the pick is flagged and
   the model-free estimate is the one the report trusts.
6. The knee form (hill) is a fallback: it competes only where every smooth
   form left is rejected or has patterned residuals (4 parameters can follow
   noise; a power law that fits should not lose to it by chance).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from negscale.errors import NegscaleError
from negscale.fit.forms import Form
from negscale.fit.objective import Data, information, runs_test_p
from negscale.fit.optimize import FitResult, fit_form, infeasible

AICC_SUPPORT = 10.0
RMS_SUPPORT = 1.5
TIE_REL = 0.25
KNEE_FORMS = ("hill",)  # chosen only where every smooth form is rejected or patterned


@dataclass
class Candidate:
    """One form's fit on one data set, with its model-choice scores."""

    form: Form
    fit: FitResult | None
    aicc: float = float("nan")
    bic: float = float("nan")
    loo_error: float = float("nan")
    runs_p: float = float("nan")
    skipped: str | None = None
    heldout_idx: np.ndarray | None = None
    heldout_pred: np.ndarray | None = None  # y-hat on held-out runs from the reduced fit

    @property
    def rms(self) -> float:
        """Root mean square log residual of the fit on all runs."""
        if self.fit is None:
            return float("nan")
        return float(np.sqrt(np.mean(self.fit.residuals**2)))


def heldout_mask(m: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Runs at the top ⌊L/6⌋ (≥ 1) m levels of each n group."""
    out = np.zeros(m.size, bool)
    for g in np.unique(n):
        sel = n == g
        levels = np.unique(m[sel])
        h = max(1, levels.size // 6)
        if levels.size - h < 2:
            continue
        out |= sel & (m >= levels[-h])
    return out


def _cell_means(data: Data, values: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Means of ``values`` (aligned with ``idx``) per (n, m) cell, cells sorted by n then m."""
    key = np.stack([data.n[idx], data.m[idx]], 1)
    _, inv = np.unique(key, axis=0, return_inverse=True)
    inv = inv.ravel()
    cnt = np.bincount(inv)
    return np.bincount(inv, weights=values) / cnt, inv


def evaluate(forms: list[Form], data: Data, delta: float, wide: bool = False) -> list[Candidate]:
    """Fit each form on all runs and on the runs without the top m levels."""
    hold = heldout_mask(data.m, data.n)
    train, test = np.nonzero(~hold)[0], np.nonzero(hold)[0]
    out = []
    for form in forms:
        why = infeasible(form, data)
        if why:
            out.append(Candidate(form, None, skipped=why))
            continue
        fit = fit_form(form, data, delta, wide)
        if fit is None:
            out.append(Candidate(form, None, skipped="fit failed"))
            continue
        c = Candidate(form, fit)
        c.aicc, c.bic = information(fit.residuals, form.k)
        # residual pattern on cell means ordered by (n, m)
        means, _ = _cell_means(data, fit.residuals, np.arange(len(data)))
        c.runs_p = runs_test_p(np.sign(means))
        if test.size:
            sub = data.subset(train)
            red = fit_form(form, sub, delta, wide) if not infeasible(form, sub) else None
            if red is not None:
                pred = form.predict(red.params, data.m[test], data.n[test])[0]
                y_mean, inv_t = _cell_means(data, data.y[test], test)
                p_mean = np.bincount(inv_t, weights=pred) / np.bincount(inv_t)
                c.loo_error = float(np.mean(np.abs(p_mean - y_mean) / y_mean))
                c.heldout_idx, c.heldout_pred = test, pred
        out.append(c)
    return out


def choose(
    cands: list[Candidate],
    setting: str,
    noise: float,
    runs_per_cell: float,
    rejected: dict[str, str] | None = None,
) -> tuple[Candidate, str]:
    """Pick the form by the rule in the module docstring; say why in words.

    ``rejected`` maps form ids the data contradict (:mod:`negscale.fit.reject`)
    to the reason: they are never chosen while another eligible form is left.
    """
    rejected = rejected or {}
    ok = [c for c in cands if c.fit is not None]
    if not ok:
        reasons = "; ".join(f"{c.form.id}: {c.skipped}" for c in cands)
        raise NegscaleError(f"no candidate form could be fitted ({reasons})")
    if not any(np.isfinite(c.aicc) for c in ok):
        for c in ok:  # AICc undefined (N <= k+1): rank by BIC instead
            c.aicc = c.bic
    fin = [c.aicc for c in ok if np.isfinite(c.aicc)]
    best_aicc = min(fin) if fin else float("inf")
    best_rms = min(c.rms for c in ok)
    elig = [c for c in ok if c.aicc - best_aicc <= AICC_SUPPORT or c.rms <= RMS_SUPPORT * best_rms]
    allowed = [c for c in elig if c.form.id not in rejected]
    note = ""
    if not allowed:
        allowed = elig
        note = "; every eligible form is contradicted by the data (see rejected)"
    smooth = [c for c in allowed if c.form.id not in KNEE_FORMS]
    if any(not (np.isfinite(c.runs_p) and c.runs_p < 0.01) for c in smooth):
        allowed = smooth  # the knee form is the fallback: only where no smooth form fits
    pick, why = _pick(allowed, ok, setting, noise, runs_per_cell)
    dropped = [c.form.id for c in ok if c not in elig]
    if dropped:
        why += f"; not eligible (far behind on AICc and in-sample fit): {', '.join(dropped)}"
    gone = [f for f in rejected if any(c.form.id == f for c in elig) and f != pick.form.id]
    if gone:
        why += f"; rejected (contradicted by the data): {', '.join(gone)}"
    return pick, why + note


def _theory_pref(c: Candidate, theory_id: str) -> bool:
    """The setting's theory form, preferred in a tie only with pattern-free
    residuals (a runs test that could run and found no pattern)."""
    return c.form.id == theory_id and np.isfinite(c.runs_p) and c.runs_p >= 0.01


def _pick(
    allowed: list[Candidate], ok: list[Candidate], setting: str, noise: float, runs_per_cell: float
) -> tuple[Candidate, str]:
    theory_id = f"theory-{setting}"

    def pref(c: Candidate) -> tuple:
        bad_pattern = np.isfinite(c.runs_p) and c.runs_p < 0.01
        return (bad_pattern, not _theory_pref(c, theory_id), c.form.k, c.aicc)

    scored = [c for c in allowed if np.isfinite(c.loo_error)]
    if not scored:
        ic = [c.aicc if np.isfinite(c.aicc) else np.inf for c in allowed]
        if not np.isfinite(min(ic)):  # AICc undefined for some: BIC for all
            ic = [c.bic for c in allowed]
        best = min(ic)
        tied = [c for c, v in zip(allowed, ic, strict=True) if v - best <= 2.0]
        pick = min(tied, key=pref)
        why = "no held-out check possible (too few m levels); best information criterion" + (
            ""
            if len(tied) == 1
            else f" within 2 units, preferred as {_pref_words(pick, tied, theory_id)}"
        )
        return pick, why
    best = min(c.loo_error for c in scored)
    tol = max(TIE_REL * best, 0.8 * noise / np.sqrt(max(runs_per_cell, 1.0)))
    tied = [c for c in scored if c.loo_error <= best + tol]
    pick = min(tied, key=pref)
    lead = min(scored, key=lambda c: c.loo_error)
    lower = [c for c in ok if np.isfinite(c.loo_error) and c.loo_error < lead.loo_error]
    among = " among the eligible forms" if lower else ""
    if len(tied) == 1:
        why = f"lowest held-out error{among} ({pick.loo_error:.1%})"
    else:
        others = ", ".join(c.form.id for c in tied if c is not pick)
        why = (
            f"held-out error {pick.loo_error:.1%} ties the best{among} ({lead.form.id} "
            f"{lead.loo_error:.1%}; tie = within {tol:.1%}) with {others}; preferred as "
            + _pref_words(pick, tied, theory_id)
        )
    if lower:
        why += (
            " (lower but not eligible: "
            + ", ".join(f"{c.form.id} {c.loo_error:.1%}" for c in lower)
            + ")"
        )
    return pick, why


def _pref_words(pick: Candidate, tied: list[Candidate], theory_id: str) -> str:
    if _theory_pref(pick, theory_id):
        return "the theory form of the setting (residuals without a pattern)"
    if all(pick.form.k <= c.form.k for c in tied):
        return "the smaller model" if any(c.form.k > pick.form.k for c in tied) else "best AICc"
    return "the form without a systematic residual pattern"
