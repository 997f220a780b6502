"""``negscale fit``: the saturation point from runs or tables, rendered, suggested runs, plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from negscale.cli.app import app
from negscale.cli.common import (
    JsonOpt,
    check_plot_path,
    err,
    out,
    print_json,
    user_errors,
)
from negscale.errors import NegscaleError

_Sources = typer.Argument(
    ...,
    metavar="SOURCE",
    help="Results directories (runs/*.parquet) and/or CSV/Parquet tables.",
)
_Metric = typer.Option(
    None,
    "--metric",
    help="Metric to fit, e.g. auc, recall_at_1, zeroshot_top1, val_loss (default: auc, or "
    "the --metric-col name). Its name sets the direction: loss/rank/error/excess_ fall.",
)
_Setting = typer.Option(
    "auto", "--setting", help="auto (read from the runs) | supervised | self-supervised."
)
_Tolerance = typer.Option(
    None,
    "--tolerance",
    help="ε in the metric's units: m_sat is where one more doubling of m gains <= ε "
    "(default: a typical cell's run-to-run sd).",
)
_Bootstrap = typer.Option(
    1000, "--bootstrap", help="Parametric replicates behind a law's interval (0: none)."
)
_AtN = typer.Option(
    None,
    "--at-n",
    metavar="N",
    help="Predict m_sat at this n (repeatable; default 10x the largest n).",
)
_Plot = typer.Option(None, "--plot", help="Write the diagnostic plots (PNG).")
_MCol = typer.Option("m", "--m-col", help="Column with the negatives per anchor m.")
_NCol = typer.Option("n", "--n-col", help="Column with the training anchors n.")
_RatioCol = typer.Option(None, "--ratio-col", help="Column with m/n instead of m (m = ratio·n).")
_MetricCol = typer.Option(
    None, "--metric-col", help="Column with the metric's values (default: --metric)."
)
_SeedCol = typer.Option(None, "--seed-col", help="Column with the seed.")
_GroupCol = typer.Option(
    None, "--group-col", help="Fit each value of this column on its own (one report each)."
)
_Collapsed = typer.Option(
    "drop",
    "--collapsed",
    help="Runs recorded as collapsed: drop (default; counted per cell) | chance (kept at "
    "the metric's chance level).",
)
_Scale = typer.Option("auto", "--scale", help="auto | percent | fraction.")
_Higher = typer.Option(
    False, "--higher-is-better", help="The metric rises as models improve (default: its name)."
)
_Lower = typer.Option(
    False, "--lower-is-better", help="The metric falls as models improve (loss, rank, error)."
)
_Verbose = typer.Option(
    False,
    "--verbose",
    "-v",
    help="Also print the levels, the forms checked, the balance point.",
)
_Suggest = typer.Option(
    0, "--suggest", help="Also list the K runs (m, n, seed) that would narrow the answer most."
)
_Target = typer.Option(
    1.0, "--target", help="--suggest: an interval this many doublings wide is pinned."
)
_From = typer.Option(
    "table",
    "--from",
    help="table: negscale results folders and CSV/Parquet tables | open_clip: open_clip "
    "log folders (params.txt, checkpoints/results.jsonl), m from the global batch.",
)
_Epoch = typer.Option(
    None, "--epoch", help="--from open_clip: the evaluation at this epoch (default: the last)."
)


@app.command("fit")
@user_errors
def fit_cmd(
    sources: list[Path] = _Sources,
    metric: str | None = _Metric,
    setting: str = _Setting,
    tolerance: float | None = _Tolerance,
    bootstrap: int = _Bootstrap,
    at_n: list[float] = _AtN,
    plot: Path | None = _Plot,
    m_col: str = _MCol,
    n_col: str = _NCol,
    ratio_col: str | None = _RatioCol,
    metric_col: str | None = _MetricCol,
    seed_col: str | None = _SeedCol,
    group_col: str | None = _GroupCol,
    collapsed: str = _Collapsed,
    scale: str = _Scale,
    higher_flag: bool = _Higher,
    lower_flag: bool = _Lower,
    verbose: bool = _Verbose,
    suggest_k: int = _Suggest,
    target: float = _Target,
    from_: str = _From,
    epoch: int | None = _Epoch,
    as_json: bool = JsonOpt,
) -> None:
    """Fit the saturation point m_sat per n, how it scales with n, with 95% intervals."""
    if plot is not None:  # checked before any work: no report, then a failed plot
        plot = check_plot_path(plot)
    higher = _direction(from_, higher_flag, lower_flag)
    columns = dict(m_col=m_col, n_col=n_col, seed_col=seed_col, group_col=group_col,
                   ratio_col=ratio_col)  # fmt: skip
    df, col, label = _load(sources, from_, epoch, metric, metric_col, columns)
    reports = _fit(
        df, col, label, group_col, higher, setting=setting, tolerance=tolerance,
        bootstrap=bootstrap, scale=scale, at_n=at_n or None, collapsed=collapsed,
    )  # fmt: skip
    if suggest_k < 0 or target <= 0:
        raise NegscaleError("--suggest must be >= 0 and --target > 0")
    docs = _show_reports(reports, suggest_k, target, verbose, plot, as_json)
    if plot is not None:
        from negscale.fit.plots import plot_path

        _calibration_plot(sources, plot_path(plot, "calibration"))
    if as_json:
        print_json(docs if group_col else docs[0])


def _direction(from_: str, higher_flag: bool, lower_flag: bool) -> bool | None:
    """Check --from and the direction flags; the direction they give (None: from the name)."""
    if from_ not in ("table", "open_clip"):
        raise NegscaleError(f"--from: expected table or open_clip, got {from_!r}")
    if higher_flag and lower_flag:
        raise NegscaleError("--higher-is-better and --lower-is-better: give one of them")
    return True if higher_flag else (False if lower_flag else None)


def _load(sources: list[Path], from_: str, epoch: int | None, metric: str | None,
          metric_col: str | None, columns: dict[str, Any]) -> tuple[Any, str, str]:  # fmt: skip
    """The runs as one table, the column to fit, and the metric's name in the report."""
    if from_ == "open_clip":
        from negscale.fit.openclip import default_metric, read_open_clip

        df = read_open_clip(sources, epoch)
        col = metric_col or metric or default_metric(df)
        label = metric or col
        if col not in df.columns:
            raise NegscaleError(f"--metric {col}: the open_clip runs have {', '.join(df.columns)}")
        return df, col, label
    from negscale.fit import load_sources

    col = metric_col or metric or "auc"
    return load_sources(sources, metric_col=col, **columns), col, metric or col


def _fit(df: Any, col: str, label: str, group_col: str | None, higher: bool | None,
         **options: Any) -> list[tuple[Any, Any]]:  # fmt: skip
    """(value, report) for each value of --group-col, else one report (value None)."""
    from negscale import fit as nf

    if higher is None and group_col != "metric":
        higher = not nf.lower_is_better(label)  # --metric, else the column's own name
    kw: dict[str, Any] = dict(metric=col, higher_is_better=higher, **options)
    if group_col is None and label != col:
        kw["label"] = label
    return nf.fit_groups(df, group_col, **kw) if group_col else [(None, nf.fit(df, **kw))]


def _show_reports(reports: list[tuple[Any, Any]], suggest_k: int, target: float,
                  verbose: bool, plot: Path | None, as_json: bool) -> list[dict]:  # fmt: skip
    """Each report's JSON document (with --suggest's runs), rendered unless --json, plotted."""
    from negscale import fit as nf
    from negscale.fit.plots import plot as draw
    from negscale.fit.plots import plot_path

    docs = []
    for value, rep in reports:
        doc = rep.to_dict()
        if suggest_k:
            runs = nf.suggest(rep, suggest_k, rep.tested, target=target)
            doc["suggestions"] = [s.to_dict() for s in runs]
        docs.append(doc)
        if not as_json:
            nf.render(rep, out, verbose=verbose)
            if suggest_k:
                _show_suggestions(doc["suggestions"])
        if plot is not None:
            err.print(f"plot: {draw(rep, plot_path(plot, value))}", highlight=False, markup=False)
    return docs


def _show_suggestions(rows: list[dict]) -> None:
    """The next runs, one a line, as an adaptive round lists them: the seed, then the
    reason, which names m and n (plain text: wrapped, never cut)."""
    from negscale.fit.render import wrap

    if not rows:
        text = "next runs: none (every n's interval is within --target, or it is a bound the " \
               "m range cannot close)"  # fmt: skip
        out.print("\n" + wrap(text, out.width), markup=False, highlight=False, soft_wrap=True)
        return
    lines = [f"next runs ({len(rows)}):"]
    later = " (worth it once the runs above are in)"
    lines += [f"  seed {r['seed']}: {r['reason']}"
              f"{later if r.get('deferred') else ''}" for r in rows]  # fmt: skip
    text = "\n".join(wrap(line, out.width) for line in lines)
    out.print("\n" + text, markup=False, highlight=False, soft_wrap=True)


def _calibration_plot(sources: list[Path], path: Path) -> None:
    """Beside the fit's plot: excess AUC against the calibration bound, when runs carry them."""
    folders = [s for s in sources if s.is_dir()]
    if not folders:
        return
    from negscale.oracle import plot_calibration
    from negscale.results import load

    df = load(folders)
    if {"excess_auc", "calibration_bound"} <= set(df.columns) and (
        df[["excess_auc", "calibration_bound"]].notna().all(axis=1).any()
    ):
        err.print(f"plot: {plot_calibration(df, path)}", highlight=False, markup=False)
