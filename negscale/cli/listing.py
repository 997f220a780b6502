"""``negscale list``: what is available (datasets, encoders, recipes, negative sources)."""

from __future__ import annotations

import typer
from rich.markup import escape
from rich.table import Table

from negscale.cli.app import app
from negscale.cli.common import (
    JsonOpt,
    out,
    print_json,
    user_errors,
)


@app.command("list")
@user_errors
def list_(
    what: str = typer.Argument(..., help="datasets | encoders | recipes | negatives"),
    as_json: bool = JsonOpt,
) -> None:
    """List what is available: datasets, encoders, bundled recipes, negative sources."""
    from negscale.catalogue import catalogue

    rows = catalogue(what)
    if as_json:
        print_json(rows)
        return
    table = Table(title=what)
    for col in rows[0] if rows else ["name"]:
        table.add_column(col)
    for row in rows:
        table.add_row(*(escape(str(v)) for v in row.values()))  # text from recipes: no markup
    out.print(table)
