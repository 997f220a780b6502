"""Fit a negative-count study: the saturation point m_sat per n and how it moves with n.

The flow, one module a stage (docs/fitting.md has the method):

    inputs   runs from folders and tables, direction, scale   inputs.py
    cells    a robust centre and se per (n, m), the noise     cells.py
    per n    tested levels, narrowed by a checked law          levels.py, laws.py, answer.py
    scaling  γ from the per-n intervals, predictions           scaling.py
    balance  the joint law's balance point and budget split    balance.py
    report   FitReport (JSON), text, plots                     report.py, render.py, plots.py

:mod:`negscale.fit.simulate` draws studies with known answers, the yardstick
the method is judged by (benchmarks/bench_fit_coverage.py).
"""

from __future__ import annotations

from negscale.fit.inputs import load_sources, lower_is_better
from negscale.fit.pipeline import fit, fit_groups
from negscale.fit.plots import plot, plot_path
from negscale.fit.render import render, render_text
from negscale.fit.report import M_SAT_DEFINITION, FitReport, GroupReport
from negscale.fit.suggest import Suggestion, suggest

__all__ = [
    "M_SAT_DEFINITION",
    "FitReport",
    "GroupReport",
    "Suggestion",
    "fit",
    "fit_groups",
    "load_sources",
    "lower_is_better",
    "plot",
    "plot_path",
    "render",
    "render_text",
    "suggest",
]
