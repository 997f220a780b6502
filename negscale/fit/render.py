"""The fit report as text: the answer first, then what changes belief, then detail.

Plain lines wrapped to the console width (80 when piped), never cut: an n
group's answer, the n-scaling line and the prediction come first; then the
warnings; the per-level tables, the forms and the balance point only with
``verbose``.
"""

from __future__ import annotations

import textwrap

import numpy as np

from negscale.fit import levels
from negscale.fit.fmt import fmt
from negscale.fit.report import M_SAT_DEFINITION, FitReport, GroupReport


def n_text(n: float) -> str:
    """n in full (16,384; 6,000,000): it is a count the user typed."""
    return f"{int(n):,}" if float(n).is_integer() and n < 1e15 else fmt(n)


def span(lo: float | None, hi: float | None) -> str:
    """[lo, hi] of an m; an open lower end is m's own floor, 1 (one negative), and an
    open upper end ∞)."""
    return f"[{fmt(lo) if lo else '1'}, " + (f"{fmt(hi)}]" if hi else "∞)")


def _pct(x: float | None, n: float) -> str:
    if x is None:
        return ""
    r = 100.0 * x / n
    return f"{r:.2g} % of n" if r < 10 else f"{r:.0f} % of n"


def answer_text(g: GroupReport) -> str:
    """'m_sat ≈ 39 [30, 47]  0.24 % of n  reached, 7 levels, law' and the bounds' forms."""
    a = g.answer
    lo, hi = a.ci
    k = f"{a.m_levels.size} levels"
    if a.status == levels.REACHED:
        how = ", law" if a.basis != "tested levels" else ""
        return f"m_sat ≈ {fmt(a.m_sat)} {span(lo, hi)}  {_pct(a.m_sat, a.n)}  reached, {k}{how}"
    if a.status == levels.NOT_REACHED:
        bound = f"m_sat > {fmt(lo)}" if lo else "m_sat not pinned"
        return f"{bound}  not reached by m = {fmt(a.m_levels[-1])}, {k}"
    bound = f"m_sat ≤ {fmt(hi)}  {_pct(hi, a.n)}" if hi else "m_sat not pinned"
    return f"{bound}  saturated at the smallest m ({fmt(a.m_levels[0])}), {k}"


def scaling_lines(r: FitReport) -> list[str]:
    s = r.scaling
    if s is None:
        return []
    theory = f"; theory {s.theory:g} ({r.setting})" if s.theory is not None else ""
    lo, hi = s.ci
    if lo is None and hi is None:
        body = f"γ not bounded by these answers ({s.basis})"
    elif s.gamma is not None and lo is not None and hi is not None:
        body = f"m_sat ∝ n^{s.gamma:.2f} [{lo:.2f}, {hi:.2f}]"
    elif lo is not None and hi is not None:
        decades = np.log10(max(s.n) / min(s.n))
        body = f"γ not pinned: [{lo:.2f}, {hi:.2f}] all fit (n spans {decades:.2g} decades)"
    else:
        body = f"γ ≥ {lo:.2f}" if lo is not None else f"γ ≤ {hi:.2f}"
        body += " (some n give only a bound)"
    out = [f"n scaling:  {body}{theory}"]
    for p in r.predictions:
        lo_p, hi_p = p["ci"]
        value = (
            f"≈ {fmt(p['m_sat'])} {span(lo_p, hi_p)}" if p["m_sat"] else f"in {span(lo_p, hi_p)}"
        )
        out.append(
            f"at n = {n_text(p['n'])}: m_sat {value}, extrapolated "
            f"{p['decades_extrapolated']:.1f} decades"
        )
    return out


def headline(r: FitReport) -> list[str]:
    """The first lines: the metric, then one answer per n, γ, the prediction."""
    direction = "higher" if r.higher_is_better else "lower"
    name = r.label or r.metric
    lines = [
        f"negscale fit · {name} ({direction} is better, {r.scale}) · {r.setting} · {r.runs} runs"
    ]
    width = max(len(n_text(g.n)) for g in r.groups)
    lines += [f"n = {n_text(g.n):>{width}}:  {answer_text(g)}" for g in r.groups]
    lines += scaling_lines(r)
    lines.append(f"ε = {r.tolerance:.3g} ({r.tolerance_source}) · {r.confidence:.0%} intervals")
    return lines


def group_detail(g: GroupReport, metric: str) -> list[str]:
    a = g.answer
    rd = a.reading
    lo, hi = rd.interval
    out = [
        f"n = {n_text(a.n)}: tested levels say {rd.status}"
        + (f", m_sat ≈ {fmt(rd.m_sat)}" if rd.m_sat else "")
        + f" {span(lo, hi)}"
    ]
    out.append(f"    {'m':>9}  {metric + ' ± se':>22}  seeds  gain/doubling")
    for row in g.levels_table():
        gain = "" if row["gain_per_doubling"] is None else f"{row['gain_per_doubling']:+.3g}"
        seeds = f"{row['seeds']}/{row['seeds_all']}"
        centre = f"{row['centre']:>12.5g} ± {row['se']:<7.2g}"
        out.append(f"    {fmt(row['m']):>9}  {centre}  {seeds:>5}  {gain}")
    for la in a.laws:
        verdict = "passes" if la.passed else f"fails: {la.why}"
        out.append(f"    {la.form:<6} {la.formula:<22} m_sat {fmt(la.m_sat)}  {verdict}")
    if a.used:
        out.append(f"    narrowed by: {', '.join(a.used)}")
    if a.note:
        out.append(f"    {a.note}")
    if a.extrapolated:
        e = a.extrapolated
        out.append(
            f"    the law extrapolates m_sat ≈ {fmt(e['m_sat'])} [{fmt(e['ci'][0])}, "
            f"{fmt(e['ci'][1])}] beyond the data"
        )
    return out


def balance_lines(r: FitReport) -> list[str]:
    b = r.balance
    if b is None:
        return []
    law = "joint law E − A·m^(−a) − B·n^(−b)"
    if not b.supported:
        return [
            f"balance point: not supported: the {law} does not fit the runs "
            f"(lack of fit p = {b.check_p:.2g}), so no balance point and no budget table"
        ]
    theory = f" (theory: {b.theory:g})" if b.theory is not None else ""
    out = [
        f"balance point under the {law}: m_bal ∝ n^(b/a), b/a = {b.exponent:.2f} "
        f"[{b.exponent_ci[0]:.2f}, {b.exponent_ci[1]:.2f}]{theory}",
        f"    {'budget S = m·n':>16}  {'m*':>9}  {'n*':>9}  {'m*/n*':>9}  note",
    ]
    for row in b.budget:
        note = "; ".join(
            x for x in ("extrapolated" if row["extrapolated"] else "", row["constraint"] or "") if x
        )
        out.append(
            f"    {fmt(row['S']):>16}  {fmt(row['m']):>9}  {fmt(row['n']):>9}  "
            f"{fmt(row['ratio']):>9}  {note}"
        )
    return out


def render_text(r: FitReport, width: int = 80, verbose: bool = False) -> str:
    """The whole report, every line wrapped (never cut) to ``width``."""
    lines = headline(r)
    if r.warnings:
        lines += ["", "warnings"]
        lines += [f"  • {w}" for w in r.warnings]
    if verbose:
        lines += ["", "detail", f"{M_SAT_DEFINITION}; {r.unit}"]
        noise = "–" if r.noise_sd is None else f"{r.noise_sd:.3g}"
        lines.append(f"noise sd {noise} ({r.noise_source})")
        for g in r.groups:
            lines += group_detail(g, r.metric)
        lines += balance_lines(r)
    else:
        lines += ["", "(--verbose for the levels, the forms checked and the balance point)"]
    return "\n".join(wrap(line, width) for line in lines)


def wrap(line: str, width: int) -> str:
    """One line wrapped to ``width`` with a hanging indent; never cut."""
    if len(line) <= width:
        return line
    lead = len(line) - len(line.lstrip())
    indent = " " * (lead + (2 if line.lstrip().startswith("•") else 4))
    return textwrap.fill(
        line, width, subsequent_indent=indent, break_long_words=True, break_on_hyphens=False
    )


def render(r: FitReport, console, verbose: bool = False) -> None:
    """Print the report on a rich console (its width: 80 when piped, or COLUMNS),
    as plain text: nothing in it is read as markup."""
    text = render_text(r, max(console.width, 40), verbose)
    console.print(text, markup=False, highlight=False, soft_wrap=True)
