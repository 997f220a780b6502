"""The fit's answer as data (:class:`FitReport`, JSON per the fit contract in
docs/fitting.md) and as a rich report a researcher can read at a glance: one
function per table."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from negscale.fit.fmt import fmt, fmt_ci
from negscale.fit.modelfree import bracket_text
from negscale.jsonsafe import clean as _clean

M_SAT_DEFINITION = (
    "m_sat(ε) = the smallest m such that for every m' ≥ m the metric gains at most ε "
    "from doubling the negatives, f(m') − f(2m') ≤ ε"
)


@dataclass
class GroupResult:
    """The saturation answer for one n group (from that group's own fit)."""

    n: float
    points: int
    m_levels: int
    m_max: float
    form: str
    form_reason: str
    m_sat: float
    m_sat_ci: list[float]
    m_sat_fit: float
    beyond_m_max: float
    ratio: float
    ratio_ci: list[float]
    params: dict[str, float] = field(default_factory=dict)
    params_ci: dict[str, list[float]] = field(default_factory=dict)
    candidates: list[dict] = field(default_factory=list)
    m_sat_model_free: float = float("nan")  # inf: not reached
    m_sat_model_free_ci: list[float] = field(default_factory=lambda: [float("nan")] * 2)
    model_free_status: str = ""
    bracket: list[float | None] = field(default_factory=lambda: [None, None])
    trusted: str = "parametric"
    trust_reason: str = ""
    agree: bool | None = None

    def to_dict(self) -> dict:
        n_out: float | int = int(self.n) if float(self.n).is_integer() else self.n
        return _clean(
            {
                "n": n_out,
                "points": self.points,
                "m_sat": self.m_sat,
                "m_sat_ci": self.m_sat_ci,
                "ratio": self.ratio,
                "ratio_ci": self.ratio_ci,
                "m_levels": self.m_levels,
                "m_max": self.m_max,
                "m_sat_beyond_m_max": self.beyond_m_max,
                "m_sat_fit": self.m_sat_fit,
                "form": self.form,
                "form_reason": self.form_reason,
                "params": self.params,
                "params_ci": self.params_ci,
                "candidates": self.candidates,
                "m_sat_model_free": self.m_sat_model_free,
                "m_sat_model_free_ci": self.m_sat_model_free_ci,
                "model_free_status": self.model_free_status,
                "bracket": self.bracket,
                "trusted": self.trusted,
                "trust_reason": self.trust_reason,
                "agree": self.agree,
            }
        )


@dataclass
class FitReport:
    """Everything ``negscale fit`` reports. ``to_dict()`` is the JSON contract
    (docs/fitting.md "JSON") plus extra keys; ``plot_data`` feeds the plots."""

    metric: str
    higher_is_better: bool
    setting: str
    tolerance: float
    tolerance_source: str
    scale: str
    form: str
    formula: str
    form_reason: str
    params: dict[str, float]
    params_ci: dict[str, list[float]]
    groups: list[GroupResult]
    scaling: dict | None
    candidates: list[dict]
    budget: list[dict]
    m_sat_form: float
    m_sat_form_ci: list[float]
    warnings: list[str]
    dropped: list[str]
    runs: int
    bootstrap: int
    bootstrap_kind: str
    bootstrap_failed: int
    huber_delta: float
    huber_delta_source: str
    error_definition: str
    balance: dict | None = None  # {"exponent", "exponent_ci", "theory", ...}; None with one n
    group: dict | None = None  # {"column", "value"} when fitted by fit_groups
    plot_data: Any = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        return _clean(
            {
                "metric": self.metric,
                "higher_is_better": self.higher_is_better,
                "setting": self.setting,
                "tolerance": self.tolerance,
                "form": self.form,
                "params": self.params,
                "params_ci": self.params_ci,
                "groups": [g.to_dict() for g in self.groups],
                "scaling": self.scaling,
                "candidates": self.candidates,
                "warnings": self.warnings,
                # extras (compatible additions to the contract)
                "tolerance_source": self.tolerance_source,
                "scale": self.scale,
                "formula": self.formula,
                "form_reason": self.form_reason,
                "error_definition": self.error_definition,
                "m_sat_definition": M_SAT_DEFINITION,
                "m_sat_form": self.m_sat_form,
                "m_sat_form_ci": self.m_sat_form_ci,
                "budget": self.budget,
                "dropped": self.dropped,
                "runs": self.runs,
                "bootstrap": self.bootstrap,
                "bootstrap_kind": self.bootstrap_kind,
                "bootstrap_failed": self.bootstrap_failed,
                "huber_delta": self.huber_delta,
                "huber_delta_source": self.huber_delta_source,
                "group": self.group,
                "balance": self.balance,
            }
        )


SHORT = {"theory-supervised": "theory-sup", "theory-self-supervised": "theory-self"}
SHORT_NOTE = "theory-sup/-self: theory-supervised/-self-supervised"


def render(report: FitReport, console: Any = None) -> None:
    """Print the report with rich: header, then one table per section."""
    from rich.console import Console

    con = console if console is not None else Console()
    _header(report, con)
    _params_table(report, con)
    _groups_table(report, con)
    _scaling_lines(report, con)
    _budget_table(report, con)
    _models_table(report, con)
    _warnings(report, con)


def _theory_words(setting: str) -> str:
    return "no theory preference" if setting == "none" else setting


def _header(r: FitReport, con) -> None:
    from rich.markup import escape

    direction = "higher is better" if r.higher_is_better else "lower is better"
    con.print(
        f"[bold]negscale fit[/bold] — [bold]{escape(r.metric)}[/bold] "
        f"({direction}, {r.scale} scale) · setting: {_theory_words(r.setting)} · {r.runs} runs"
    )
    con.print(f"fitted error: {escape(r.error_definition)}", highlight=False)
    con.print(f"form: [bold]{r.form}[/bold]  y = {r.formula}  — {escape(r.form_reason)}")
    con.print(f"tolerance ε = {fmt(r.tolerance)} ({escape(r.tolerance_source)})")
    con.print(f"{M_SAT_DEFINITION}.")
    bs = (
        f"{r.bootstrap} replicates, {r.bootstrap_kind}"
        + (f", {r.bootstrap_failed} failed" if r.bootstrap_failed else "")
        if r.bootstrap
        else "off (no intervals)"
    )
    con.print(f"bootstrap: {bs}; intervals are 2.5–97.5 percentiles, values medians")
    con.print(f"Huber δ = {r.huber_delta:.3g} on log y ({r.huber_delta_source})")


def _params_table(r: FitReport, con) -> None:
    from rich.table import Table

    con.print(f"\n[bold]parameters of {r.form}[/bold] (m, n in your units)")
    t = Table()
    for c in ("param", "estimate", "95% CI"):
        t.add_column(c, justify="right" if c != "param" else "left")
    for k, v in r.params.items():
        t.add_row(k, fmt(v), fmt_ci(r.params_ci.get(k)))
    con.print(t)


def _m_sat_cell(g: GroupResult) -> str:
    """The parametric m_sat; past the largest m tested only a lower bound."""
    if np.isfinite(g.m_sat) and g.m_sat >= g.m_max:
        return f"≥ {fmt(g.m_max)} (fit {fmt(g.m_sat)})"
    return f"{fmt(g.m_sat)} {fmt_ci(g.m_sat_ci)}"


def _model_free_cell(g: GroupResult) -> str:
    v = g.m_sat_model_free
    if np.isinf(v):
        return f"not reached (≥ {fmt(g.m_max)})"
    if np.isnan(v):
        return "–"
    return f"{fmt(v)} {fmt_ci(g.m_sat_model_free_ci)}"


def _groups_table(r: FitReport, con) -> None:
    from rich.table import Table

    con.print("\n[bold]saturation point per n[/bold] (each n group fitted on its own)")
    t = Table()
    cols = (
        "n",
        "runs",
        "levels",
        "form",
        "m_sat [95% CI]",
        "beyond",
        "model-free [95% CI]",
        "trusted",
    )
    for c in cols:
        t.add_column(c, justify="left" if c in ("form", "trusted") else "right", no_wrap=True)
    for g in r.groups:
        beyond = "–" if not np.isfinite(g.beyond_m_max) else f"{g.beyond_m_max:.0%}"
        t.add_row(
            fmt(g.n),
            str(g.points),
            str(g.m_levels),
            SHORT.get(g.form, g.form),
            _m_sat_cell(g),
            beyond,
            _model_free_cell(g),
            g.trusted,
        )
    con.print(t)
    con.print(
        "beyond: share of replicates with m_sat ≥ the largest m tested; model-free: from the "
        "seed means of the tested levels (no law); " + SHORT_NOTE,
        highlight=False,
    )
    for g in r.groups:
        agree = (
            ""
            if g.agree is None or g.trusted == "parametric"
            else (
                "; the parametric m_sat agrees" if g.agree else "; the parametric m_sat disagrees"
            )
        )
        con.print(
            f"  n={fmt(g.n)}: m_sat {bracket_text(g.bracket, fmt, g.n)}; trusting "
            f"{g.trusted} ({g.trust_reason}){agree}",
            highlight=False,
        )
    if r.form and np.isfinite(r.m_sat_form):
        con.print(
            f"under the {r.form} form alone (m_sat the same at every n): m_sat = "
            f"{fmt(r.m_sat_form)} {fmt_ci(r.m_sat_form_ci)}"
        )


def _scaling_lines(r: FitReport, con) -> None:
    s = r.scaling
    if not s:
        con.print("scaling: one value of n, no γ")
        return
    theory = "none" if s.get("theory") is None else f"{s['theory']:g}"
    g = f"γ = [bold]{fmt(s['gamma'])}[/bold] {fmt_ci(s['gamma_ci'])}"
    if s.get("withheld"):
        g = f"γ withheld ({s['withheld']}; it would be {fmt(s['gamma'])})"
    con.print(
        f"scaling: m_sat ∝ n^γ under one common per-n form ({s.get('form')}), {g}  "
        f"(theory for {_theory_words(r.setting)}: {theory}; γ = 0.5 supervised, 1 self-supervised)"
    )
    byf = s.get("gamma_by_form") or {}
    if len(byf) > 1:
        con.print(
            "  γ under each eligible form: "
            + ", ".join(f"{k} {fmt(v)}" for k, v in byf.items())
            + " (the interval spans them)",
            highlight=False,
        )
    if s.get("gamma_model_free") is not None:
        mark = (
            " (indicative only: some n's model-free interval is open above)"
            if s.get("gamma_model_free_open")
            else ""
        )
        con.print(
            f"  model-free γ = {fmt(s['gamma_model_free'])} "
            f"{fmt_ci(s['gamma_model_free_ci'])}{mark}",
            highlight=False,
        )
    b = r.balance
    if b and b.get("exponent") is not None:
        th = "none" if b.get("theory") is None else f"{b['theory']:g}"
        con.print(
            f"balance point m_bal(n) = (A·n^b/B)^(1/a) under the free joint law: exponent b/a = "
            f"[bold]{fmt(b['exponent'])}[/bold] {fmt_ci(b['exponent_ci'])} (theory: {th}; "
            "½ supervised, 1 self-supervised)"
            + ("" if b.get("supported", True) else " — not supported: the joint law misfits")
        )
    elif b:
        con.print(f"balance point: {b.get('note', 'not available')}", highlight=False)


def _budget_table(r: FitReport, con) -> None:
    from rich.table import Table

    if not r.budget:
        return
    con.print(
        f"\n[bold]budget-optimal ratio[/bold] m*/n* under {r.form} for a budget S = m·n "
        "(negative comparisons)"
    )
    t = Table()
    for c in ("S", "m*/n*", "95% CI", "m*", "n*", "bound"):
        t.add_column(c, justify="right")
    t.add_column("note", min_width=12)
    for b in r.budget:
        note = []
        if b.get("extrapolated"):
            note.append("extrapolated")
        if b.get("constraint"):
            note.append(f"m* on {_sym(b['constraint'])}")
        t.add_row(
            fmt(b["S"]),
            fmt(b["ratio"]),
            fmt_ci(b["ratio_ci"]),
            fmt(b["m"]),
            fmt(b["n"]),
            _pct0(b.get("constraint_share")),
            "\n".join(note),
        )
    con.print(t)
    con.print(
        "constrained to m ≥ 1, n ≥ 1"
        + (", m ≤ n (shared pool)" if r.setting == "self-supervised" else "")
        + "; bound: share of replicates whose optimum sits on a constraint; "
        "extrapolated: m* or n* outside the tested range",
        highlight=False,
    )


def _models_table(r: FitReport, con) -> None:
    from rich.table import Table

    con.print("\n[bold]model choice[/bold] (all runs)")
    wide = con.width >= 110  # on narrow terminals BIC and the runs test stay in --json
    cols = ["k", "AICc", "ΔAICc"] + (["BIC"] if wide else []) + ["held-out err"]
    cols += ["runs p"] if wide else []
    t = Table()
    t.add_column("form", no_wrap=True)
    for c in cols:
        t.add_column(c, justify="right", no_wrap=True)
    t.add_column("m_sat [95% CI]", justify="right")
    t.add_column("note")
    fin = [c["aicc"] for c in r.candidates if c.get("fit_ok") and np.isfinite(c["aicc"])]
    best = min(fin) if fin else float("nan")
    for c in r.candidates:
        name = c["form"] if wide else SHORT.get(c["form"], c["form"])
        if not c.get("fit_ok"):
            t.add_row(name, str(c["k"]), *["–"] * len(cols), f"skipped: {c['skipped']}")
            continue
        note = "chosen" if c["chosen"] else ("≤ 2 AICc" if c["within_2_aicc"] else "")
        msat = fmt(c.get("m_sat")) + (f" {fmt_ci(c['m_sat_ci'])}" if c.get("m_sat_ci") else "")
        vals = {
            "k": str(c["k"]),
            "AICc": fmt(c["aicc"], 4),
            "ΔAICc": fmt(c["aicc"] - best, 3),
            "BIC": fmt(c["bic"], 4),
            "held-out err": _pct(c.get("loo_error")),
            "runs p": fmt(c.get("runs_p"), 2),
        }
        t.add_row(name, *[vals[k] for k in cols], msat, note)
    con.print(t)
    if not wide:
        con.print(SHORT_NOTE, highlight=False)


def _warnings(r: FitReport, con) -> None:
    from rich.markup import escape

    if r.warnings:
        con.print("\n[bold yellow]warnings[/bold yellow]")
        for w in r.warnings:
            con.print(f"  • {escape(w)}", highlight=False)


def _sym(s: str) -> str:
    return s.replace(">=", "≥").replace("<=", "≤")


def _pct0(v: float | None) -> str:
    return "–" if v is None or not np.isfinite(v) else f"{v:.0%}"


def _pct(v: float | None) -> str:
    return "–" if v is None or not np.isfinite(v) else f"{v:.1%}"


def render_text(report: FitReport, width: int = 110) -> str:
    """The rich report as plain text (for files and docs)."""
    import io

    from rich.console import Console

    con = Console(record=True, width=width, file=io.StringIO(), color_system=None)
    render(report, con)
    return con.export_text()
