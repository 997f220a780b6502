"""The fit's four pictures, in one PNG.

1. the metric against log m: cell centres ± 2 se, one colour per n, the law
   that narrowed the answer (if any), m_sat and its interval, declines;
2. the gain per doubling against m, with the ε line: where it crosses is m_sat;
3. m_sat against n (log–log) with γ's band and the theory's slopes;
4. observed against predicted for the laws used (on the line when they fit).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from negscale.fit import laws, levels, scaling
from negscale.fit.report import FitReport, GroupReport


def plot_path(base: Path, value: object | None) -> Path:
    """``fit.png`` → ``fit-<value>.png`` for one of several grouped reports."""
    base = Path(base)
    if value is None:
        return base
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(value))
    return base.with_name(f"{base.stem}-{safe}{base.suffix or '.png'}")


def _law_curve(g: GroupReport, m: np.ndarray) -> np.ndarray | None:
    """The metric along m under the best law that narrowed the answer."""
    a = g.answer
    used = [la for la in a.laws if la.form in a.used]
    if not used:
        return None
    la = min(used, key=lambda x: x.aicc)
    form = laws.FORMS[la.form]
    theta = np.array([[la.params[p] for p in form.params]])
    score = la.params["E"] - la.params["A"] * form.shape(theta, m)[0]
    return g.sign * score


def _metric_panel(ax, r: FitReport, colours) -> None:
    for g, col in zip(r.groups, colours, strict=True):
        c = g.curve
        y = g.sign * c.centre
        ax.errorbar(
            c.m, y, yerr=2 * c.se, fmt="o", ms=3, color=col, capsize=2, label=f"n = {g.n:,.0f}"
        )
        grid = np.geomspace(c.m[0], c.m[-1], 200)
        law = _law_curve(g, grid)
        line = law if law is not None else np.interp(np.log(grid), np.log(c.m), y)
        ax.plot(grid, line, color=col, lw=1, ls="-" if law is not None else ":")
        lo, hi = g.answer.ci
        top = float(np.max(g.sign * c.centre))
        if g.answer.m_sat is not None:
            ax.axvline(g.answer.m_sat, color=col, lw=0.8, ls="--")
        ax.hlines(top, lo or c.m[0], hi or c.m[-1], color=col, lw=4, alpha=0.35)
        d = g.answer.decline
        if d is not None:
            ax.annotate("decline", (d.to_m, float(g.sign * c.centre[c.m == d.to_m][0])),
                        color="crimson", fontsize=7)  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("m (negatives per anchor)")
    ax.set_ylabel(r.label or r.metric)
    ax.set_title("metric vs m: centres ± 2 se, m_sat (dashed) and its interval (bar)", fontsize=8)
    ax.legend(fontsize=7)


def _gain_panel(ax, r: FitReport, colours) -> None:
    for g, col in zip(r.groups, colours, strict=True):
        c = g.curve
        if len(c) < 2:
            continue
        w = np.maximum(np.diff(c.t), 1.0)
        gain = np.diff(c.centre) / w
        se = np.hypot(c.se[1:], c.se[:-1]) / w
        mid = np.sqrt(c.m[1:] * c.m[:-1])
        ax.errorbar(mid, gain, yerr=2 * se, fmt="o-", ms=3, lw=0.8, color=col, capsize=2)
    ax.axhline(r.tolerance, color="k", lw=1, ls="--", label=f"ε = {r.tolerance:.3g}")
    ax.axhline(0.0, color="grey", lw=0.5)
    ax.set_xscale("log")
    ax.set_xlabel("m")
    ax.set_ylabel("gain per doubling of m")
    ax.set_title("gain per doubling (secants between levels) against ε", fontsize=8)
    ax.legend(fontsize=7)


def _scaling_panel(ax, r: FitReport, colours) -> None:
    ns = np.array([g.n for g in r.groups])
    for g, col in zip(r.groups, colours, strict=True):
        a = g.answer
        lo, hi = a.ci
        y = a.m_sat if a.m_sat is not None else (lo or hi)
        if y is None:
            continue
        ax.plot([a.n], [y], "o", color=col)
        ax.vlines(a.n, lo or y / 4, hi or y * 4, color=col, lw=2, alpha=0.6)
        if lo is None or hi is None:
            ax.annotate("↑" if hi is None else "↓", (a.n, y), color=col)
    if r.scaling is not None and ns.size >= 2:
        grid = np.geomspace(ns.min() / 2, ns.max() * 10, 40)
        boxes = [g.answer.joint_ci for g in r.groups]
        points = [g.answer.m_sat if g.answer.status == levels.REACHED else None for g in r.groups]
        band = [scaling.predict(list(ns), boxes, points, float(x), r.scaling.widened) for x in grid]
        lo = [p["ci"][0] or np.nan for p in band]
        hi = [p["ci"][1] or np.nan for p in band]
        ax.fill_between(grid, lo, hi, color="grey", alpha=0.2, label="lines through every interval")
        ref = np.exp(np.nanmean(np.log([p for p in points if p] or [1.0])))
        for slope, name in ((0.5, "½ (supervised)"), (1.0, "1 (self-supervised)")):
            ax.plot(grid, ref * (grid / np.exp(np.mean(np.log(ns)))) ** slope, lw=0.8, ls=":",
                    label=f"slope {name}")  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("n (training anchors)")
    ax.set_ylabel("m_sat")
    ax.set_title("m_sat vs n", fontsize=8)
    if ax.get_legend_handles_labels()[0]:  # one n and no answer: nothing to name
        ax.legend(fontsize=7)


def _fit_panel(ax, r: FitReport, colours) -> None:
    shown = False
    for g, col in zip(r.groups, colours, strict=True):
        pred = _law_curve(g, g.curve.m)
        if pred is None:
            continue
        obs = g.sign * g.curve.centre
        ax.errorbar(pred, obs, yerr=2 * g.curve.se, fmt="o", ms=3, color=col, capsize=2)
        shown = True
    if shown:
        lims = ax.get_xlim()
        ax.plot(lims, lims, "k-", lw=0.6)
    else:
        ax.text(0.5, 0.5, "no law narrowed an answer", ha="center", va="center",
                transform=ax.transAxes)  # fmt: skip
    ax.set_xlabel("law's prediction")
    ax.set_ylabel("cell centre")
    ax.set_title("observed vs predicted (laws used)", fontsize=8)


def plot(r: FitReport, path: Path) -> Path:
    """Write the four panels to ``path`` (PNG) and return it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    colours = plt.cm.viridis(np.linspace(0.1, 0.85, max(len(r.groups), 1)))
    _metric_panel(axes[0, 0], r, colours)
    _gain_panel(axes[0, 1], r, colours)
    _scaling_panel(axes[1, 0], r, colours)
    _fit_panel(axes[1, 1], r, colours)
    fig.suptitle(f"negscale fit · {r.label or r.metric}", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
