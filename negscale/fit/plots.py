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
    prep, m_ref, n_ref = pd_.prep, pd_.m_ref, pd_.n_ref
    eps = pd_.tolerance
    unit = "%" if prep.scale == "percent" else ""
    colors = plt.get_cmap("tab10").colors
    fig, axes = plt.subplots(2, 3, figsize=(16, 9.5))
    ax1, ax2, ax3, ax4, ax5, ax6 = axes.ravel()

    top = prep.top if prep.higher_is_better else None

    def clip(v: np.ndarray) -> np.ndarray:
        """Keep bounded metrics inside [0, top] where a fit extrapolates past them."""
        return np.clip(v, 0.0, top) if top else v

    red_pts: list[np.ndarray] = []
    for gi, (gf, gr) in enumerate(zip(pd_.groups, report.groups, strict=True)):
        col = colors[gi % len(colors)]
        sel = gf.sel
        m, v, y = prep.m[sel], prep.value[sel], prep.y[sel]
        ms, mean, sd = _cell_stats(m, v)
        lab = f"n = {fmt(gf.n)}"
        ax1.errorbar(ms, mean, yerr=sd, fmt="o", color=col, ms=4, capsize=2, label=lab)
        if gf.chosen is None:
            continue
        form, P = gf.chosen.form, gf.chosen.fit.params
        grid = np.geomspace(ms.min() / 1.2, ms.max() * 1.5, 200)
        gt, nt = grid / m_ref, np.full_like(grid, gf.n / n_ref)
        fit_y = form.predict(P, gt, nt)[0]
        ax1.plot(grid, clip(prep.to_metric(fit_y)), color=col, lw=1.6)
        reps = pd_.group_reps[gi]
        if reps is not None:
            ok = ~np.isnan(reps[:, 0])
            if ok.sum() > 10:
                Y = form.predict(reps[ok], gt[None, :], nt[None, :])
                lo, hi = np.percentile(clip(prep.to_metric(Y)), [2.5, 97.5], axis=0)
                ax1.fill_between(grid, lo, hi, color=col, alpha=0.18, lw=0)
        # 4: observed vs predicted by this group's own fit; held-out runs from
        # the refit without the group's top m level(s)
        pred = form.predict(P, m / m_ref, np.full_like(m, gf.n / n_ref))[0]
        ax4.plot(
            clip(prep.to_metric(y)),
            clip(prep.to_metric(pred)),
            "o",
            ms=4,
            color=col,
            alpha=0.6,
            label=f"{lab} ({form.id})",
        )
        if gf.chosen.heldout_idx is not None:
            hidx = sel[gf.chosen.heldout_idx]
            ax4.plot(
                clip(prep.value[hidx]),
                clip(prep.to_metric(gf.chosen.heldout_pred)),
                "*",
                ms=11,
                color=col,
                mec="k",
                mew=0.7,
                label="held out (refit without top m)" if gi == 0 else None,
            )
        if np.isfinite(gr.m_sat) and gr.m_sat > 0:
            for ax in (ax1, ax3):
                ax.axvline(gr.m_sat, color=col, ls="--", lw=1)
                if np.all(np.isfinite(gr.m_sat_ci)) and gr.m_sat_ci[0] > 0:
                    ax.axvspan(gr.m_sat_ci[0], gr.m_sat_ci[1], color=col, alpha=0.08)
        # 2: reducible error
        E = P[0]
        _, ymean, _ = _cell_stats(m, y)
        red = ymean - E
        pos = red > 0
        ax2.loglog(ms[pos], red[pos], "o", color=col, ms=4, label=lab)
        red_pts.append(red[pos])
        ax2.loglog(grid, form.m_term(P, gt)[0], color=col, lw=1.4)
        # 3: gain per doubling (metric units)
        ax3.plot(grid, form.gain(P, gt)[0], color=col, lw=1.6, label=lab)
        if ms.size > 1:
            emp = (ymean[:-1] - ymean[1:]) / np.log2(ms[1:] / ms[:-1])
            ax3.plot(np.sqrt(ms[:-1] * ms[1:]), emp, "o", color=col, ms=4, alpha=0.8)

    # panel 2: axes from the data (a fitted exp tail would run to 1e-10), then
    # reference slopes through the middle of the data
    pts = np.concatenate(red_pts) if red_pts else np.array([1.0])
    xl = np.array([prep.m.min() / 1.5, prep.m.max() * 1.5])
    ylim = (pts.min() / 5, pts.max() * 3)
    x0, y0 = np.sqrt(prep.m.min() * prep.m.max()), float(np.exp(np.median(np.log(pts))))
    for slope, ls in ((-1.0, ":"), (-0.5, "-.")):
        ax2.loglog(xl, y0 * (xl / x0) ** slope, color="gray", ls=ls, lw=1, label=f"slope {slope:g}")
    ax2.set_xlim(xl)
    ax2.set_ylim(ylim)

    ax1.set_xscale("log")
    ax1.set(
        xlabel="negatives m (log)",
        ylabel=f"{report.metric} {unit}".strip(),
        title="1. metric vs m: mean ± sd, fit, 95% band, m_sat",
    )
    ax1.legend(fontsize=8, title="dashed: m_sat, shade: CI", title_fontsize=7)
    ax2.set(
        xlabel="negatives m (log)",
        ylabel="reducible error y − E (log)",
        title="2. reducible error vs m (log–log)",
    )
    ax2.legend(fontsize=8)
    ax3.axhline(eps, color="k", lw=1, ls="--", label=f"ε = {fmt(eps)}")
    ax3.set_xscale("log")
    ax3.set(
        xlabel="negatives m (log)",
        ylabel=f"gain per doubling of m ({unit or 'metric units'})",
        title="3. gain per doubling (dots: data)",
    )
    ax3.legend(fontsize=8)

    # 4: the all-runs form, for comparison with the per-group fits
    ch = pd_.chosen
    pred = ch.form.predict(ch.fit.params, prep.m / m_ref, prep.n / n_ref)[0]
    ax4.plot(
        clip(prep.value),
        clip(prep.to_metric(pred)),
        "x",
        ms=4,
        color="0.55",
        label=f"all-runs form ({ch.form.id})",
    )
    lim = [min(ax4.get_xlim()[0], ax4.get_ylim()[0]), max(ax4.get_xlim()[1], ax4.get_ylim()[1])]
    ax4.plot(lim, lim, color="gray", lw=1)
    ax4.set(
        xlim=lim,
        ylim=lim,
        xlabel=f"observed {report.metric}",
        ylabel=f"predicted {report.metric}",
        title="4. observed vs predicted (each n by its own fit)",
    )
    ax4.legend(fontsize=8)

    # 5: m_sat vs n
    ns = np.array([g.n for g in report.groups])
    med = np.array([g.m_sat for g in report.groups])
    ok = np.isfinite(med) & (med > 0)
    if report.scaling and ok.sum() >= 2:
        lo = np.array(
            [g.m_sat_ci[0] if g.m_sat_ci[0] is not None else np.nan for g in report.groups]
        )
        hi = np.array(
            [g.m_sat_ci[1] if g.m_sat_ci[1] is not None else np.nan for g in report.groups]
        )
        yerr = np.vstack([np.clip(med - lo, 0, None), np.clip(hi - med, 0, None)])
        yerr = np.where(np.isfinite(yerr), yerr, 0.0)
        ax5.errorbar(
            ns[ok], med[ok], yerr=yerr[:, ok], fmt="o", color="k", capsize=3, label="m_sat (95% CI)"
        )
        xs = np.geomspace(ns.min() / 1.3, ns.max() * 1.3, 50)
        lx, ly = np.log(ns[ok]).mean(), np.log(med[ok]).mean()
        g = report.scaling["gamma"]
        if g is not None and np.isfinite(g):
            ax5.plot(
                xs,
                np.exp(ly + g * (np.log(xs) - lx)),
                "k-",
                lw=1.4,
                label=f"fit γ = {fmt(g)} {fmt_ci(report.scaling['gamma_ci'])}",
            )
        for th, ls in ((0.5, ":"), (1.0, "--")):
            ax5.plot(
                xs,
                np.exp(ly + th * (np.log(xs) - lx)),
                color="gray",
                ls=ls,
                lw=1,
                label=f"theory γ = {th:g} ({'supervised' if th == 0.5 else 'self-sup.'})",
            )
        ax5.set_xscale("log")
        ax5.set_yscale("log")
        ax5.legend(fontsize=8)
    else:
        ax5.text(
            0.5,
            0.5,
            "one value of n:\nno scaling of m_sat",
            ha="center",
            va="center",
            transform=ax5.transAxes,
        )
    ax5.set(xlabel="training anchors n (log)", ylabel="m_sat (log)", title="5. m_sat vs n")

    ax6.axis("off")
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
    if report.scaling:
        s = report.scaling
        lines.append(f"γ = {fmt(s['gamma'])} {fmt_ci(s['gamma_ci'])} (theory {s['theory']:g})")
    if report.warnings:
        lines.append(f"{len(report.warnings)} warning(s): see the text report")
    ax6.text(
        0.0,
        1.0,
        "\n".join(lines),
        va="top",
        ha="left",
        family="monospace",
        fontsize=9,
        transform=ax6.transAxes,
    )
    for ax in (ax1, ax2, ax3, ax4, ax5):
        ax.grid(alpha=0.3, which="both", lw=0.5)
    fig.suptitle(f"negscale fit — {report.metric}", fontsize=13)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
