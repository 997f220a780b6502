"""A form the data contradict is flagged, never chosen (per n group).

Two checks against the tested levels, both in metric units:

1. **Tail gain.** Past the form's own m_sat (or, when that lies beyond the
   data, past the model-free m_sat) the form predicts a gain
   ŷ(m₁) − ŷ(m_max) between the first tested level m₁ at or above that point
   and the largest. The seed means show ȳ(m₁) − ȳ(m_max). The form is
   rejected when its prediction exceeds the observation by more than twice
   the noise of that difference, 2σ·√(ȳ₁²/k₁ + ȳ_max²/k_max) (σ the noise of
   log y, k the runs per level): a curve that keeps falling where the data
   are flat.
2. **Outside the model-free range.** The form's m_sat lies outside the
   model-free interval widened to the tested levels that enclose it
   (:meth:`negscale.fit.modelfree.ModelFree.consistent`).
"""

from __future__ import annotations

import numpy as np

from negscale.fit.modelfree import ModelFree
from negscale.fit.select import Candidate

TAIL_SIGMAS = 2.0


def tail_gain(
    cand: Candidate, m: np.ndarray, y: np.ndarray, n_scaled: float, m_ref: float, start: float
) -> tuple[float, float, float] | None:
    """(predicted, observed, noise-free margin base) gain from the first tested
    level ≥ ``start`` to the largest, or None when fewer than two levels remain."""
    levels, inv = np.unique(m, return_inverse=True)
    past = levels[levels >= start * (1 - 1e-9)]
    if past.size < 2:
        return None
    m1, mx = past[0], levels[-1]
    cnt = np.bincount(inv)
    ybar = np.bincount(inv, weights=y) / cnt
    i1, ix = int(np.searchsorted(levels, m1)), levels.size - 1
    pred = cand.form.predict(cand.fit.params, np.array([m1, mx]) / m_ref, np.full(2, n_scaled))[0]
    base = float(np.sqrt(ybar[i1] ** 2 / cnt[i1] + ybar[ix] ** 2 / cnt[ix]))
    return float(pred[0] - pred[1]), float(ybar[i1] - ybar[ix]), base


def rejection(
    cand: Candidate,
    m_sat: float,
    m: np.ndarray,
    y: np.ndarray,
    n_scaled: float,
    m_ref: float,
    noise: float,
    mf: ModelFree,
    fmt,
) -> str | None:
    """Why the data contradict ``cand`` (its m_sat ``m_sat`` in user units), or None."""
    m_max = float(m.max())
    start = m_sat if m_sat < m_max else mf.point
    if np.isfinite(start) and start < m_max:
        tg = tail_gain(cand, m, y, n_scaled, m_ref, start)
        if tg is not None:
            pred, obs, base = tg
            margin = TAIL_SIGMAS * noise * base
            if pred - obs > margin:
                return (
                    f"predicts a gain of {fmt(pred)} past m = {fmt(start)} where the runs "
                    f"gain {fmt(obs)} (noise margin {fmt(margin)})"
                )
    lo, hi = mf.consistent()
    if not lo <= m_sat <= hi:
        rng = f"[{fmt(lo)}, {fmt(hi)}]" if np.isfinite(hi) else f"[{fmt(lo)}, ∞)"
        return f"m_sat {fmt(m_sat)} outside the model-free range {rng}"
    return None
