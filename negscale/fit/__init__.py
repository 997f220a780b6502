"""Fit a negative-count study: the saturation point m_sat and the optimal m/n.

What is fitted
--------------
An *error* y that falls with the number of negatives m: ``y = 1 − metric``
(``100 − metric`` on a percent scale) for metrics that rise (recall, AUC,
accuracy), ``y = metric`` for those that fall (validation loss, mean rank —
never the raw training loss, whose chance level log(m+1) grows with m).

Candidate forms (k = free parameters; with a single n the n term is dropped):

======================== ============================== ===
id                       y(m, n)                        k
======================== ============================== ===
free                     E + A·m^(−a) + B·n^(−b)        5
theory-supervised        E + A/m + B/√n                 3
theory-self-supervised   E + A/√m + B/√n                3
exp                      E + A·exp(−m/s) + B·n^(−b)     5
======================== ============================== ===

Additive forms make m_sat the same at every n, so each n group is also fitted
on its own with the same forms minus the n term (E + A·m^(−a), E + A/m,
E + A/√m, E + A·exp(−m/s)), chosen per group by the same rule; the per-group
m_sat values are the ones reported per n and regressed on n.

Objective: the sum over runs of Huber_δ(log y − log ŷ), δ = 1.4826·MAD of the
within-cell log residuals (of a first fit's residuals without seeds), floored
at 0.01. Bounds: 0 ≤ E < min(y)·exp(3δ) (E < min(y), with room
for noise: on a plateau the smallest noisy error sits below the true floor, and
pinning E under it biases the exponent); A, B ≥ 0; exponents in [0.05, 3]
([0.02, 5] per group); s within [m_min/4, 4·m_max] ([/10, ×10] per group).
Optimiser: a grid of starts over the nonlinear parameters with E, A, B solved
linearly for each, refined by a vectorised Levenberg–Marquardt/IRLS, the best
distinct optima polished with ``scipy.optimize.least_squares(method="trf",
loss="huber")``. Estimates on a bound, non-converged exits and rival optima
within 1% of the best objective are flagged.

Saturation point (the primary definition)
-----------------------------------------
m_sat(ε) = the smallest m such that for every m' ≥ m, f(m') − f(2m') ≤ ε:
past m_sat each further doubling of the negatives gains at most ε in the
metric (ε = ``tolerance``, in the metric's own units). Closed forms:

* power law A·m^(−a): the gain per doubling A(1 − 2^(−a))·m^(−a) falls
  monotonically, so m_sat = [A·(1 − 2^(−a)) / ε]^(1/a);
* exponential A·exp(−m/s): the gain A·u(1 − u), u = exp(−m/s), first rises
  then falls; solving from the top down (a curve that has not started rising
  is not saturated) gives u = (1 − √(1 − 4ε/A))/2 and m_sat = −s·ln u, and
  m_sat = 0 when even the largest gain A/4 is ≤ ε.

The default ε is the run-to-run (seed) standard deviation of the metric at
each n group's largest m, pooled over groups; without seeds it is 0.5
percentage points (0.005 as a fraction) for bounded metrics and 1% of the
metric at the largest m for losses/ranks. The report states which was used.

Uncertainty, scaling, budget, model choice
------------------------------------------
Stratified bootstrap (seeds resampled within each (m, n) cell; runs within
each n group when there is one seed per cell), 1000 replicates by default,
each refitted; every derived quantity is computed inside each replicate and
reported as the median with the 2.5–97.5 percentile interval, plus the share
of replicates with m_sat beyond the largest m tested. Across n groups,
gamma = the OLS slope of log m_sat on log n (theory: 0.5 supervised, 1
self-supervised) and the ratio m_sat/n per group. For the chosen form with
an n term, the budget-optimal split of S = m·n minimises the fitted y on
m·n = S subject to m ≥ 1 (at least one negative), n ≥ 1 and, in the
self-supervised setting, m ≤ n (a shared pool is drawn from the n training
items; widened to the largest m/n run if the data exceed it; supervised
anchors draw their own negatives, so no cap). Power-law m term: the
unconstrained G = (aA/(bB))^(1/(a+b)), m* = G·S^(b/(a+b)), clipped to the
allowed range (y is convex in log m along the line), n* = S/m*. Exp m term:
y can have two local minima (m at its lower bound and one past the knee), so
it is minimised on a log-m grid over the allowed range, refined by bisection.
The same solver runs in every bootstrap replicate. The budgets shown span the
tested m·n (four values, log-spaced); a row whose m* or n* lies outside the
tested m or n range is marked ``extrapolated`` (and warned about), and
``constraint`` names the bound a point optimum sits on. The form is chosen
by held-out extrapolation error (refit without the largest m level(s) of each
n group), among forms within 10 AICc of the best; ties prefer residuals
without a pattern, the setting's theory form, any theory form, then fewer
parameters (see :mod:`negscale.fit.select`); m_sat is reported under every
form within 2 AICc of the best.
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
