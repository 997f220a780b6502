"""What every command shares: the consoles, one-line user errors, JSON output,
number formatting and the options and checks used by more than one command."""

from __future__ import annotations

import functools
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from negscale.errors import NegscaleError

err = Console(stderr=True)
out = Console()

F = TypeVar("F", bound=Callable[..., Any])


def user_errors(fn: F) -> F:
    """Turn NegscaleError into 'error: ...' on stderr and exit 2, with no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            from negscale.plugins import load_plugins

            load_plugins()  # NEGSCALE_PLUGINS: the user's own registered parts
            return fn(*args, **kwargs)
        except NegscaleError as exc:
            err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def _count(k: int, noun: str) -> str:
    return f"{k} {noun}" + ("" if k == 1 else "s")


def print_json(document: Any) -> None:
    from negscale.jsonsafe import clean

    sys.stdout.write(json.dumps(clean(document), indent=2, default=str) + "\n")
    sys.stdout.flush()


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


SetOpt = typer.Option(
    None,
    "--set",
    metavar="KEY=VALUE",
    help="Override a recipe field: key.path=value (repeatable).",
)
ResultsOpt = typer.Option(
    None, "--results", help="Results folder \\[default: results/<recipe name>]."
)
JsonOpt = typer.Option(False, "--json", help="Print one JSON document on stdout, nothing else.")


def results_dir(results: Path | None, study: str) -> Path:
    return results if results is not None else Path("results") / study


ReportOpt = typer.Option(
    None, "--report-to", help="Also log each run to: tensorboard (<results>/tensorboard)."
)
DeviceOpt = typer.Option(
    None, "--device", help="auto | cpu | cuda \\[default: the recipe's train.device]."
)


def check_device(device: str | None) -> None:
    if device is not None and device not in ("auto", "cpu", "cuda"):
        raise NegscaleError(f"--device: expected auto, cpu or cuda, got {device!r}")


def check_plot_path(path: Path) -> Path:
    """The one rule for ``--plot`` (sweep and fit), checked before any work: no
    suffix means .png; the suffix must be .png, .pdf or .svg; the folder must
    exist and be writable."""
    import os

    path = path if path.suffix else path.with_suffix(".png")
    if path.suffix.lower() not in (".png", ".pdf", ".svg"):
        raise NegscaleError(f"--plot: {path} should end in .png, .pdf or .svg")
    folder = path.parent
    if not folder.is_dir():
        raise NegscaleError(f"--plot: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise NegscaleError(f"--plot: cannot write to folder {folder}")
    if path.is_dir():
        raise NegscaleError(f"--plot: {path} is a folder, not a file")
    return path
