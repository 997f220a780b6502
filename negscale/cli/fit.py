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


@app.command("fit")
@user_errors
def fit_cmd(
    sources: list[Path] = typer.Argument(
        ..., help="Results directories (runs/*.parquet) and/or CSV/Parquet tables."
    ),
    metric: str | None = typer.Option(
        None,
        "--metric",
        help="Metric to fit, e.g. auc, recall_at_1, zeroshot_top1, val_loss (default: auc, or "
        "the --metric-col name). Its name sets the direction: loss/rank/error/excess_ fall.",
    ),
    setting: str = typer.Option(
        "auto", "--setting", help="auto (read from the runs) | supervised | self-supervised."
    ),
    tolerance: float | None = typer.Option(
        None,
        "--tolerance",
        help="ε in the metric's units: m_sat is where one more doubling of m gains <= ε "
        "(default: a typical cell's run-to-run sd).",
    ),
    bootstrap: int = typer.Option(
        1000, "--bootstrap", help="Parametric replicates behind a law's interval (0: none)."
    ),
    at_n: list[float] = typer.Option(
        None, "--at-n", help="Predict m_sat at this n (repeatable; default 10x the largest n)."
    ),
    plot: Path | None = typer.Option(None, "--plot", help="Write the diagnostic plots (PNG)."),
    m_col: str = typer.Option("m", "--m-col", help="Column with the negatives per anchor m."),
    n_col: str = typer.Option("n", "--n-col", help="Column with the training anchors n."),
    ratio_col: str | None = typer.Option(
        None, "--ratio-col", help="Column with m/n instead of m (m = ratio·n)."
    ),
    metric_col: str | None = typer.Option(
        None, "--metric-col", help="Column with the metric's values (default: --metric)."
    ),
    seed_col: str | None = typer.Option(None, "--seed-col", help="Column with the seed."),
    group_col: str | None = typer.Option(
        None, "--group-col", help="Fit each value of this column on its own (one report each)."
    ),
    collapsed: str = typer.Option(
        "drop",
        "--collapsed",
        help="Runs recorded as collapsed: drop (default; counted per cell) | chance (kept at "
        "the metric's chance level).",
    ),
    scale: str = typer.Option("auto", "--scale", help="auto | percent | fraction."),
    higher_flag: bool = typer.Option(
        False, "--higher-is-better", help="The metric rises as models improve (default: its name)."
    ),
    lower_flag: bool = typer.Option(
        False, "--lower-is-better", help="The metric falls as models improve (loss, rank, error)."
    ),
    verbose: bool = typer.Option(
        False,
        "--verbose",
        "-v",
        help="Also print the levels, the forms checked, the balance point.",
    ),
    suggest_k: int = typer.Option(
        0, "--suggest", help="Also list the K runs (m, n, seed) that would narrow the answer most."
    ),
    target: float = typer.Option(
        1.0, "--target", help="--suggest: an interval this many doublings wide is pinned."
    ),
    from_: str = typer.Option(
        "table",
        "--from",
        help="table: negscale results folders and CSV/Parquet tables | open_clip: open_clip "
        "log folders (params.txt, checkpoints/results.jsonl), m from the global batch.",
    ),
    epoch: int | None = typer.Option(
        None, "--epoch", help="--from open_clip: the evaluation at this epoch (default: the last)."
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Fit the saturation point m_sat per n, how it scales with n, with 95% intervals."""
    from negscale import fit as nf
    from negscale.fit.plots import plot as draw
    from negscale.fit.plots import plot_path

    if plot is not None:  # checked before any work: no report, then a failed plot
        plot = check_plot_path(plot)
    if from_ not in ("table", "open_clip"):
        raise NegscaleError(f"--from: expected table or open_clip, got {from_!r}")
    if higher_flag and lower_flag:
        raise NegscaleError("--higher-is-better and --lower-is-better: give one of them")
    higher: bool | None = True if higher_flag else (False if lower_flag else None)
    if from_ == "open_clip":
        from negscale.fit.openclip import default_metric, read_open_clip

        df = read_open_clip(sources, epoch)
        col = metric_col or metric or default_metric(df)
        label = metric or col
        if col not in df.columns:
            raise NegscaleError(f"--metric {col}: the open_clip runs have {', '.join(df.columns)}")
    else:
        col = metric_col or metric or "auc"
        label = metric or col
        df = nf.load_sources(
            sources, m_col=m_col, n_col=n_col, metric_col=col, seed_col=seed_col,
            group_col=group_col, ratio_col=ratio_col,
        )  # fmt: skip
    if higher is None and group_col != "metric":
        higher = not nf.lower_is_better(label)  # --metric, else the column's own name
    kw: dict[str, Any] = dict(
        metric=col, setting=setting, tolerance=tolerance, bootstrap=bootstrap, scale=scale,
        higher_is_better=higher, at_n=at_n or None, collapsed=collapsed,
    )  # fmt: skip
    if group_col is None and label != col:
        kw["label"] = label
    reports = nf.fit_groups(df, group_col, **kw) if group_col else [(None, nf.fit(df, **kw))]
    if suggest_k < 0 or target <= 0:
        raise NegscaleError("--suggest must be >= 0 and --target > 0")
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
    if plot is not None:
        _calibration_plot(sources, plot_path(plot, "calibration"))
    if as_json:
        print_json(docs if group_col else docs[0])


def _show_suggestions(rows: list[dict]) -> None:
    """The next runs, one a line, with the reason (plain text: wrapped, never cut)."""
    from negscale.fit.render import wrap

    if not rows:
        text = "next runs: none (every n's interval is within --target, or it is a bound the " \
               "m range cannot close)"  # fmt: skip
        out.print("\n" + wrap(text, out.width), markup=False, highlight=False, soft_wrap=True)
        return
    lines = [f"next runs ({len(rows)}):"]
    lines += [f"  m = {r['m']}, n = {r['n']}, seed {r['seed']}: {r['reason']}" for r in rows]
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
