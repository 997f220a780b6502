"""The ``negscale`` command: a thin Typer layer that parses, calls and renders.

Errors on bad input are one ``error: ...`` line on stderr with exit code 2 and
no traceback; ``--json`` puts exactly one JSON document on stdout, while logs
and progress bars go to stderr.
"""

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
from rich.table import Table

from negscale.errors import NegscaleError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode="rich",
    help="Negative-count scaling studies for contrastive learning: train, sweep, fit.",
)
err = Console(stderr=True)
out = Console()

F = TypeVar("F", bound=Callable[..., Any])


def user_errors(fn: F) -> F:
    """Turn NegscaleError into 'error: ...' on stderr and exit 2, with no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except NegscaleError as exc:
            err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf become null, numpy scalars become Python numbers."""
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def print_json(document: Any) -> None:
    sys.stdout.write(json.dumps(_clean(document), indent=2, default=str) + "\n")
    sys.stdout.flush()


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


# ------------------------------------------------------------------ train

SetOpt = typer.Option(None, "--set", help="Override a recipe field: key.path=value (repeatable).")
ResultsOpt = typer.Option(
    None, "--results", help="Results folder [default: results/<recipe name>]."
)
JsonOpt = typer.Option(False, "--json", help="Print one JSON document on stdout, nothing else.")


def results_dir(results: Path | None, study: str) -> Path:
    return results if results is not None else Path("results") / study


@app.command()
@user_errors
def train(
    recipe: str = typer.Argument(..., help="Recipe file or bundled recipe name (e.g. quickstart)."),
    negatives: int | None = typer.Option(
        None, "--negatives", "-m", help="Negatives per anchor m (batch source: a subsample)."
    ),
    samples: int | None = typer.Option(None, "--samples", "-n", help="Training pairs n."),
    seed: int | None = typer.Option(None, "--seed", help="Training seed."),
    set_: list[str] | None = SetOpt,
    results: Path | None = ResultsOpt,
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda."),
    as_json: bool = JsonOpt,
) -> None:
    """Train one contrastive model with m negatives, evaluate retrieval, record the run."""
    from negscale.recipe import load_recipe
    from negscale.train import run

    if device not in ("auto", "cpu", "cuda"):
        raise NegscaleError(f"--device: expected auto, cpu or cuda, got {device!r}")
    r = load_recipe(recipe, set_, m=negatives, n=samples, seed=seed)
    folder = results_dir(results, r.name)
    err.print(
        f"[bold]negscale train[/bold] {r.name}: source={r.negatives.source} m={r.m} "
        f"n={r.data.n} seed={r.train.seed} -> {folder}",
        highlight=False,
        soft_wrap=True,
    )
    record = run(r, folder, device=device, console=err, progress=True)
    row = record.to_row()
    if as_json:
        print_json(row)
    else:
        out.print(run_table(row))
    if record.status != "ok":
        err.print(
            f"[red]error:[/red] run diverged ({record.message}); recorded with status=diverged",
            highlight=False,
        )
        raise typer.Exit(1)


def chance_levels(row: dict) -> dict[str, float]:
    """What a scorer that cannot tell pairs apart gets on this run's evaluation set."""
    data = json.loads(row["recipe"])["data"]
    size = data["n_eval"]
    out = {f"recall_at_{k}": min(k / size, 1.0) for k in (1, 5, 10)}
    out.update(auc=0.5, mean_rank=(size + 1) / 2, val_loss=math.log(size))
    if data.get("classes"):
        out["zeroshot_top1"] = 1 / data["classes"]
    return out


def run_table(row: dict) -> Table:
    table = Table(title=f"run {row['run_id']} ({row['status']})", title_justify="left")
    for col in ("metric", "both", "image→text", "text→image", "chance"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    chance = chance_levels(row)
    for name in ("recall_at_1", "recall_at_5", "recall_at_10", "auc", "mean_rank"):
        table.add_row(
            name,
            _fmt(row.get(name)),
            _fmt(row.get(f"{name}_i2t")),
            _fmt(row.get(f"{name}_t2i")),
            _fmt(chance.get(name)),
        )
    for name in ("zeroshot_top1", "val_loss", "train_loss"):
        table.add_row(name, _fmt(row.get(name)), "", "", _fmt(chance.get(name)))
    table.caption = (
        f"m={row['m']} ({row['negatives']}, {row['setting']}), n={row['n']}, "
        f"seed={row['seed']}, {row['steps']} steps on {row['device']} "
        f"in {row['wall_s']:.1f}s"
    )
    return table


# ------------------------------------------------------------------ list


@app.command("list")
@user_errors
def list_(
    what: str = typer.Argument(..., help="datasets | encoders | recipes | negatives"),
    as_json: bool = JsonOpt,
) -> None:
    """List what is available: datasets, encoders, bundled recipes, negative sources."""
    rows = catalogue(what)
    if as_json:
        print_json(rows)
        return
    table = Table(title=what)
    for col in rows[0] if rows else ["name"]:
        table.add_column(col)
    for row in rows:
        table.add_row(*(str(v) for v in row.values()))
    out.print(table)


def catalogue(what: str) -> list[dict[str, str]]:
    if what == "datasets":
        from negscale.data import DATASETS

        return [{"name": k, "summary": v.summary} for k, v in DATASETS.items()]
    if what == "encoders":
        from negscale.encoders import ENCODERS

        return [
            {"name": k, "inputs": "/".join(v.kinds), "summary": v.summary}
            for k, v in ENCODERS.items()
        ]
    if what == "recipes":
        import tomllib

        from negscale.recipe import bundled_recipes

        rows = []
        for name, path in sorted(bundled_recipes().items()):
            first = path.read_text().splitlines()[0] if path.stat().st_size else ""
            rows.append(
                {
                    "name": name,
                    "summary": first.lstrip("# ").strip(),
                    "source": tomllib.loads(path.read_text())
                    .get("negatives", {})
                    .get("source", "batch"),
                }
            )
        return rows
    if what == "negatives":
        from negscale.negatives import SOURCES
        from negscale.recipe import SETTING_OF_SOURCE

        return [
            {"name": k, "setting": SETTING_OF_SOURCE[k], "summary": v.summary}
            for k, v in SOURCES.items()
        ]
    raise NegscaleError(f"list: expected datasets, encoders, recipes or negatives, got {what!r}")


if __name__ == "__main__":  # pragma: no cover
    app()
