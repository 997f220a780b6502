"""``negscale results``: the recorded runs of results folders as a table, CSV or JSON."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich import box
from rich.table import Table

from negscale.cli.app import app
from negscale.cli.common import (
    JsonOpt,
    _count,
    _fmt,
    out,
    print_json,
    user_errors,
)
from negscale.errors import NegscaleError


@app.command("results")
@user_errors
def results_cmd(
    folders: list[Path] = typer.Argument(..., help="Results folders (with runs/*.parquet)."),
    status: str | None = typer.Option(
        None, "--status", help="Only these statuses: ok, diverged, collapsed (comma-separated)."
    ),
    design: str | None = typer.Option(
        None, "--design", help="Only this study design (its id, or a prefix of it)."
    ),
    as_csv: bool = typer.Option(False, "--csv", help="Print every column as CSV on stdout."),
    as_json: bool = JsonOpt,
) -> None:
    """List recorded runs as a table, filtered by status and design."""
    from negscale.results import LIST_COLUMNS, load, select

    if as_csv and as_json:
        raise NegscaleError("--csv and --json: choose one output format")
    rows = select(load(folders), status=status, design=design)
    if as_csv:
        sys.stdout.write(rows.to_csv(index=False))
        return
    from negscale.jsonsafe import clean

    records = [clean(r) for r in rows.to_dict("records")]
    if as_json:
        print_json(records)
        return
    designs = rows["design"].nunique() if len(rows) else 0
    table = Table(
        title=f"{_count(len(rows), 'run')}, {_count(designs, 'design')}",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,  # one space between columns: the table fits 80 columns
    )
    for col in LIST_COLUMNS:
        left = col in ("run_id", "design", "status")
        table.add_column(col, justify="left" if left else "right", no_wrap=True)
    for r in records:
        style = {"diverged": "red", "collapsed": "yellow"}.get(str(r["status"]), "")
        cells = [_fmt(r.get(c)) for c in LIST_COLUMNS]
        cells[1] = str(r.get("design") or "—")[:8]
        table.add_row(*cells, style=style)
    table.caption = "design: its first 8 characters (--design takes a prefix)"
    table.caption_justify = "left"
    out.print(table)
