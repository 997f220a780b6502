"""Fit a negative-count study: the saturation point m_sat and how it moves with n.

The method, exactly as this package computes it, is written up in
docs/fitting.md (forms, objective, bounds, bootstrap, the model-free m_sat,
brackets, rejection rules, the choice rule, γ under one common form, the
balance point, the budget table and the warnings). In short: an error
y = top − metric (or the metric itself when lower is better) is fitted per
n group and jointly with the candidate forms

======================== ================================ ===
id                       y(m, n)                         k
======================== ================================ ===
free                     E + A·m^(−a) + B·n^(−b)         5
theory-supervised        E + A/m + B/√n                  3
theory-self-supervised   E + A/√m + B/√n                 3
exp                      E + A·exp(−m/s) + B·n^(−b)      5
hill                     E + A/(1 + (m/m0)^h) + B·n^(−b) 6
======================== ================================ ===

(per group without the n term), by a Huber loss on log residuals; m_sat(ε)
is the smallest m past which every doubling of m gains at most ε; a
model-free m_sat read off the tested levels checks every parametric answer.
"""

from __future__ import annotations

from negscale.fit.inputs import load_sources, lower_is_better
from negscale.fit.pipeline import fit, fit_groups
from negscale.fit.plots import plot, plot_path
from negscale.fit.report import M_SAT_DEFINITION, FitReport, GroupResult, render, render_text

__all__ = [
    "M_SAT_DEFINITION",
    "FitReport",
    "GroupResult",
    "fit",
    "fit_groups",
    "load_sources",
    "lower_is_better",
    "plot",
    "plot_path",
    "render",
    "render_text",
]
