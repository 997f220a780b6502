"""The diagnostic plots of docs/fitting.md as panels of one PNG (matplotlib, Agg backend).

1. metric vs m: seed means ± sd per n, each group's fit with its 95% band,
   m_sat and its interval marked;
2. reducible error y − E vs m, log–log, with reference slopes −1 and −½;
3. gain per doubling vs m with the tolerance ε;
4. observed vs predicted, held-out points highlighted;
5. m_sat vs n, log–log, with the fitted γ and the theory lines;
6. a text summary.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from negscale.errors import NegscaleError
from negscale.fit.fmt import fmt, fmt_ci
from negscale.fit.report import FitReport


def _cell_stats(m: np.ndarray, v: np.ndarray):
    ms = np.unique(m)
    mean = np.array([v[m == x].mean() for x in ms])
    sd = np.array([v[m == x].std(ddof=1) if (m == x).sum() > 1 else 0.0 for x in ms])
    return ms, mean, sd


def plot_path(path: str | Path, group: object | None = None) -> Path:
    """Where a group's plot goes: ``fit.png`` → ``fit-<group>.png`` (safe characters only)."""
    path = Path(path)
    if group is None:
        return path
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(group))
    return path.with_name(f"{path.stem}-{safe}{path.suffix or '.png'}")


def plot(report: FitReport, path: str | Path, dpi: int = 110) -> Path:
    """Write the panel figure for ``report`` to ``path`` (PNG) and return the path."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    pd_ = report.plot_data
    if pd_ is None:
        raise NegscaleError("this report carries no plot data (was it loaded from JSON?)")
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise NegscaleError(f"{path.parent}: no such directory for the plot")
    fig, axes = plt.subplots(2, 3, figsize=(16, 9.5))
    ax1, ax2, ax3, ax4, ax5, ax6 = axes.ravel()
    colors = plt.get_cmap("tab10").colors
    red_pts: list[np.ndarray] = []
    for gi, (gf, gr) in enumerate(zip(pd_.groups, report.groups, strict=True)):
        col = colors[gi % len(colors)]
        _panel_curve(ax1, pd_, gf, gr, gi, col)
        if gf.chosen is None:
            continue
        red_pts.append(_panel_reducible(ax2, pd_, gf, col))
        _panel_gain(ax3, pd_, gf, gr, col)
        _panel_observed(ax4, pd_, gf, gi, col)
    _finish_curve(ax1, report)
    _finish_reducible(ax2, pd_, red_pts, at_or_below_floor(report))
    _finish_gain(ax3, pd_)
    _finish_observed(ax4, report)
    _panel_scaling(ax5, report)
    _panel_summary(ax6, report)
    for ax in (ax1, ax2, ax3, ax4, ax5):
        ax.grid(alpha=0.3, which="both", lw=0.5)
    fig.suptitle(f"negscale fit — {report.metric}", fontsize=13)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def _clip(pd_, v: np.ndarray) -> np.ndarray:
    """Keep bounded metrics inside [0, top] where a fit extrapolates past them."""
    top = pd_.prep.top if pd_.prep.higher_is_better else None
    return np.clip(v, 0.0, top) if top else v


def _grid(pd_, gf) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A fine m grid over the group's range, and it and n in the fitter's units."""
    m = pd_.prep.m[gf.sel]
    grid = np.geomspace(m.min() / 1.2, m.max() * 1.5, 200)
    return grid, grid / pd_.m_ref, np.full_like(grid, gf.n / pd_.n_ref)


def _panel_curve(ax, pd_, gf, gr, gi: int, col) -> None:
    """1: seed means ± sd, the group's fit with its 95% band, m_sat (dashed) and
    the model-free m_sat (dotted)."""
    prep = pd_.prep
    ms, mean, sd = _cell_stats(prep.m[gf.sel], prep.value[gf.sel])
    ax.errorbar(ms, mean, yerr=sd, fmt="o", color=col, ms=4, capsize=2, label=f"n = {fmt(gf.n)}")
    if gf.chosen is not None:
        form, P = gf.chosen.form, gf.chosen.fit.params
        grid, gt, nt = _grid(pd_, gf)
        ax.plot(grid, _clip(pd_, prep.to_metric(form.predict(P, gt, nt)[0])), color=col, lw=1.6)
        reps = pd_.group_reps[gi]
        ok = ~np.isnan(reps[:, 0]) if reps is not None else np.array([False])
        if ok.sum() > 10:
            Y = form.predict(reps[ok], gt[None, :], nt[None, :])
            lo, hi = np.percentile(_clip(pd_, prep.to_metric(Y)), [2.5, 97.5], axis=0)
            ax.fill_between(grid, lo, hi, color=col, alpha=0.18, lw=0)
    _mark_m_sat(ax, gr, col)
    if np.isfinite(gr.m_sat_model_free) and gr.m_sat_model_free > 0:
        ax.axvline(gr.m_sat_model_free, color=col, ls=":", lw=1.2)


def _mark_m_sat(ax, gr, col) -> None:
    if np.isfinite(gr.m_sat) and gr.m_sat > 0:
        ax.axvline(gr.m_sat, color=col, ls="--", lw=1)
        if np.all(np.isfinite(gr.m_sat_ci)) and gr.m_sat_ci[0] > 0:
            ax.axvspan(gr.m_sat_ci[0], gr.m_sat_ci[1], color=col, alpha=0.08)


def _finish_curve(ax, report: FitReport) -> None:
    unit = "%" if report.scale == "percent" else ""
    ax.set_xscale("log")
    ax.set(
        xlabel="negatives m (log)",
        ylabel=f"{report.metric} {unit}".strip(),
        title="1. metric vs m: mean ± sd, fit, 95% band, m_sat",
    )
    ax.legend(fontsize=8, title="dashed: m_sat (shade: CI); dotted: model-free", title_fontsize=7)


def _reducible(pd_, gf) -> tuple[np.ndarray, np.ndarray]:
    """Cell-mean m levels and reducible error y − E under the group's own fit."""
    prep = pd_.prep
    ms, ymean, _ = _cell_stats(prep.m[gf.sel], prep.y[gf.sel])
    return ms, ymean - gf.chosen.fit.params[0]


def at_or_below_floor(report: FitReport) -> int:
    """Cell means with y − E ≤ 0 (panel 2's log axis cannot show them; its title
    counts them)."""
    pd_ = report.plot_data
    return sum(int((_reducible(pd_, g)[1] <= 0).sum()) for g in pd_.groups if g.chosen is not None)


def _panel_reducible(ax, pd_, gf, col) -> np.ndarray:
    """2: reducible error y − E on log–log axes; returns the points shown."""
    form, P = gf.chosen.form, gf.chosen.fit.params
    ms, red = _reducible(pd_, gf)
    pos = red > 0
    ax.loglog(ms[pos], red[pos], "o", color=col, ms=4, label=f"n = {fmt(gf.n)}")
    grid, gt, _ = _grid(pd_, gf)
    ax.loglog(grid, form.m_term(P, gt)[0], color=col, lw=1.4)
    return red[pos]


def _finish_reducible(ax, pd_, red_pts: list[np.ndarray], hidden: int) -> None:
    """Axes from the data (a fitted exp tail would run to 1e-10), reference
    slopes through the middle of the data, and the count of hidden points."""
    prep = pd_.prep
    pts = np.concatenate(red_pts) if red_pts else np.array([])
    pts = pts if pts.size else np.array([1.0])
    xl = np.array([prep.m.min() / 1.5, prep.m.max() * 1.5])
    x0, y0 = np.sqrt(prep.m.min() * prep.m.max()), float(np.exp(np.median(np.log(pts))))
    for slope, ls in ((-1.0, ":"), (-0.5, "-.")):
        ax.loglog(xl, y0 * (xl / x0) ** slope, color="gray", ls=ls, lw=1, label=f"slope {slope:g}")
    ax.set_xlim(xl)
    ax.set_ylim(pts.min() / 5, pts.max() * 3)
    title = "2. reducible error vs m (log–log)"
    if hidden:
        title += f"\n{hidden} cell mean(s) with y − E ≤ 0 not shown"
    ax.set(xlabel="negatives m (log)", ylabel="reducible error y − E (log)", title=title)
    ax.legend(fontsize=8)


def _panel_gain(ax, pd_, gf, gr, col) -> None:
    """3: gain per doubling of the fit, and of the data (dots)."""
    prep = pd_.prep
    form, P = gf.chosen.form, gf.chosen.fit.params
    grid, gt, _ = _grid(pd_, gf)
    ax.plot(grid, form.gain(P, gt)[0], color=col, lw=1.6, label=f"n = {fmt(gf.n)}")
    ms, ymean, _ = _cell_stats(prep.m[gf.sel], prep.y[gf.sel])
    if ms.size > 1:
        emp = (ymean[:-1] - ymean[1:]) / np.log2(ms[1:] / ms[:-1])
        ax.plot(np.sqrt(ms[:-1] * ms[1:]), emp, "o", color=col, ms=4, alpha=0.8)
    _mark_m_sat(ax, gr, col)


def _finish_gain(ax, pd_) -> None:
    unit = "%" if pd_.prep.scale == "percent" else ""
    ax.axhline(pd_.tolerance, color="k", lw=1, ls="--", label=f"ε = {fmt(pd_.tolerance)}")
    ax.set_xscale("log")
    ax.set(
        xlabel="negatives m (log)",
        ylabel=f"gain per doubling of m ({unit or 'metric units'})",
        title="3. gain per doubling (dots: data)",
    )
    ax.legend(fontsize=8)


def _panel_observed(ax, pd_, gf, gi: int, col) -> None:
    """4: observed vs predicted by the group's own fit; held-out runs (stars)
    from the refit without the group's top m level(s)."""
    prep = pd_.prep
    form, P = gf.chosen.form, gf.chosen.fit.params
    m, y = prep.m[gf.sel], prep.y[gf.sel]
    pred = form.predict(P, m / pd_.m_ref, np.full_like(m, gf.n / pd_.n_ref))[0]
    obs, fit_ = _clip(pd_, prep.to_metric(y)), _clip(pd_, prep.to_metric(pred))
    ax.plot(obs, fit_, "o", ms=4, color=col, alpha=0.6, label=f"n = {fmt(gf.n)} ({form.id})")
    if gf.chosen.heldout_idx is not None:
        hidx = gf.sel[gf.chosen.heldout_idx]
        ax.plot(
            _clip(pd_, prep.value[hidx]),
            _clip(pd_, prep.to_metric(gf.chosen.heldout_pred)),
            "*",
            ms=11,
            color=col,
            mec="k",
            mew=0.7,
            label="held out (refit without top m)" if gi == 0 else None,
        )


def _finish_observed(ax, report: FitReport) -> None:
    """The all-runs form for comparison, the diagonal, labels."""
    pd_ = report.plot_data
    prep, ch = pd_.prep, pd_.chosen
    pred = ch.form.predict(ch.fit.params, prep.m / pd_.m_ref, prep.n / pd_.n_ref)[0]
    ax.plot(
        _clip(pd_, prep.value),
        _clip(pd_, prep.to_metric(pred)),
        "x",
        ms=4,
        color="0.55",
        label=f"all-runs form ({ch.form.id})",
    )
    lim = [min(ax.get_xlim()[0], ax.get_ylim()[0]), max(ax.get_xlim()[1], ax.get_ylim()[1])]
    ax.plot(lim, lim, color="gray", lw=1)
    ax.set(
        xlim=lim,
        ylim=lim,
        xlabel=f"observed {report.metric}",
        ylabel=f"predicted {report.metric}",
        title="4. observed vs predicted (each n by its own fit)",
    )
    ax.legend(fontsize=8)


def _panel_scaling(ax, report: FitReport) -> None:
    """5: m_sat vs n (log–log) with the fitted γ and the theory lines."""
    ns = np.array([g.n for g in report.groups])
    med = np.array([g.m_sat for g in report.groups])
    ok = np.isfinite(med) & (med > 0)
    ax.set(xlabel="training anchors n (log)", ylabel="m_sat (log)", title="5. m_sat vs n")
    if not (report.scaling and ok.sum() >= 2):
        ax.text(
            0.5,
            0.5,
            "one value of n:\nno scaling of m_sat",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
        return
    ci = np.array([[np.nan if v is None else v for v in g.m_sat_ci] for g in report.groups])
    yerr = np.vstack([np.clip(med - ci[:, 0], 0, None), np.clip(ci[:, 1] - med, 0, None)])
    yerr = np.where(np.isfinite(yerr), yerr, 0.0)
    ax.errorbar(
        ns[ok], med[ok], yerr=yerr[:, ok], fmt="o", color="k", capsize=3, label="m_sat (95% CI)"
    )
    xs = np.geomspace(ns.min() / 1.3, ns.max() * 1.3, 50)
    lx, ly = np.log(ns[ok]).mean(), np.log(med[ok]).mean()
    g = report.scaling["gamma"]
    if g is not None and np.isfinite(g):
        word = "withheld: " if report.scaling.get("withheld") else ""
        ax.plot(
            xs,
            np.exp(ly + g * (np.log(xs) - lx)),
            "k-",
            lw=1.4,
            label=f"{word}γ = {fmt(g)} {fmt_ci(report.scaling['gamma_ci'])}",
        )
    for th, ls in ((0.5, ":"), (1.0, "--")):
        name = "supervised" if th == 0.5 else "self-sup."
        ax.plot(
            xs,
            np.exp(ly + th * (np.log(xs) - lx)),
            color="gray",
            ls=ls,
            lw=1,
            label=f"theory γ = {th:g} ({name})",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.legend(fontsize=8)


def _panel_summary(ax, report: FitReport) -> None:
    """6: the answer in a few lines of text."""
    ax.axis("off")
    lines = [
        f"metric: {report.metric} ({report.scale})",
        f"setting: {report.setting}",
        f"form (all runs): {report.form}",
        f"  y = {report.formula}",
        f"tolerance ε = {fmt(report.tolerance)}",
        f"bootstrap: {report.bootstrap} ({report.bootstrap_kind.split(' ')[0]})",
    ]
    for g in report.groups:
        lines.append(f"n={fmt(g.n)}: m_sat {fmt(g.m_sat)} {fmt_ci(g.m_sat_ci)} [{g.form}]")
        lines.append(f"   model-free {fmt(g.m_sat_model_free)}; trusting {g.trusted}")
    if report.scaling:
        s = report.scaling
        th = "none" if s.get("theory") is None else f"{s['theory']:g}"
        word = " (withheld)" if s.get("withheld") else ""
        lines.append(f"γ = {fmt(s['gamma'])} {fmt_ci(s['gamma_ci'])}{word} (theory {th})")
    if report.warnings:
        lines.append(f"{len(report.warnings)} warning(s): see the text report")
    ax.text(
        0.0,
        1.0,
        "\n".join(lines),
        va="top",
        ha="left",
        family="monospace",
        fontsize=9,
        transform=ax.transAxes,
    )
