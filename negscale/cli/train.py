"""``negscale train``: one run, and the table of its metrics beside their chance levels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from negscale.cli.app import app
from negscale.cli.common import (
    DeviceOpt,
    JsonOpt,
    ReportOpt,
    ResultsOpt,
    SetOpt,
    _fmt,
    check_device,
    err,
    out,
    print_json,
    results_dir,
    user_errors,
)


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
    device: str | None = DeviceOpt,
    force: bool = typer.Option(False, "--force", help="Retrain a run that is already recorded."),
    report_to: str | None = ReportOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Train one contrastive model with m negatives, evaluate retrieval, record the run.

    A run already recorded is shown, not retrained (``--force`` retrains it
    from step 0). Under torchrun (several processes) the recipe's batch is the
    global batch, split over the processes; rank 0 evaluates, records and prints.
    """
    from negscale.config import check_axis_overrides, load_recipe
    from negscale.report_to import check_report_to
    from negscale.results import check_results_dir, record_path, record_row

    check_device(device)
    check_report_to(report_to)
    axes = {"negatives.m": (negatives, "--negatives"), "data.n": (samples, "--samples"),
            "train.seed": (seed, "--seed")}  # fmt: skip
    check_axis_overrides(set_ or [], axes)
    r = load_recipe(recipe, set_, m=negatives, n=samples, seed=seed)  # before torch is imported
    warn_ignored(r)
    folder = check_results_dir(results_dir(results, r.name))
    recorded = None if force else record_row(folder, r.run_id())
    if recorded is not None:
        err.print(
            f"already recorded: {record_path(folder, r.run_id())} (--force retrains it)",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
        _show_run(recorded, as_json)
        return

    from negscale import data as datasets
    from negscale import distributed
    from negscale.train import check_run, checkpoint_path, run

    data = datasets.build(r.data, r.model)  # bad data is an error before anything is printed
    check_run(r, data, device)
    main = distributed.env_info().is_main
    if main:
        err.print(
            f"[bold]negscale train[/bold] {escape(r.name)}: source={r.negatives.source} m={r.m} "
            f"n={r.data.n} seed={r.train.seed} -> {escape(str(folder))}",
            highlight=False,
            soft_wrap=True,
        )
    try:
        record = run(
            r, folder, device=device, console=err, progress=True, data=data,
            notice=_notice if main else _quiet, resume=not force, report_to=report_to,
        )  # fmt: skip
    except KeyboardInterrupt:
        ckpt = checkpoint_path(folder, r.run_id())
        how = (
            f"re-run the same command to resume from its checkpoint {ckpt}"
            if ckpt.is_file()
            else "re-run the same command to start it again (set train.checkpoint_every "
            "to keep checkpoints during training)"
        )
        err.print(f"[red]interrupted:[/red] {escape(how)}", highlight=False, soft_wrap=True)
        raise typer.Exit(130) from None
    finally:
        distributed.shutdown()
    if main:
        _show_run(record.to_row(), as_json)


def warn_ignored(recipe: Any) -> None:
    """One warning line per ``negatives.*`` setting the recipe's source does not read."""
    from negscale.config import ignored_negative_fields
    from negscale.config.sources import SPECS

    reads = ", ".join(SPECS[recipe.negatives.source].fields) or "none of them"
    for setting in ignored_negative_fields(recipe):
        err.print(
            f"[yellow]warning:[/yellow] {setting} is not read by source "
            f"'{recipe.negatives.source}' (it reads: {reads}); the run ignores it",
            highlight=False,
            soft_wrap=True,
        )


def _notice(message: str) -> None:
    err.print(escape(message), highlight=False, soft_wrap=True)


def _quiet(message: str) -> None:
    """Processes other than rank 0 under torchrun stay silent."""


def _show_run(row: dict, as_json: bool) -> None:
    """Print a run record (table or JSON); a run that did not finish ok exits 1 after it."""
    if as_json:
        print_json(row)
    else:
        out.print(run_table(row))
    if row["status"] != "ok":
        err.print(
            f"[red]error:[/red] run {row['status']} ({escape(str(row['message']))}); "
            f"recorded with status={row['status']}",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1)


def run_table(row: dict) -> Table:
    """One run's metrics by direction, beside their chance levels and the step-0 model's."""
    from negscale.chance import chance_levels, chance_train_loss

    table = Table(title=f"run {row['run_id']} ({row['status']})", title_justify="left")
    for col in ("metric", "both", "image→text", "text→image", "step 0", "chance"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    chance = chance_levels(row["n_eval"], row.get("num_classes"))
    used = row.get("negatives_used") or row["m"]
    chance["train_loss"] = chance_train_loss(row["loss_form"], used)
    for name in ("recall_at_1", "recall_at_5", "recall_at_10", "auc", "mean_rank"):
        table.add_row(
            name,
            _fmt(row.get(name)),
            _fmt(row.get(f"{name}_i2t")),
            _fmt(row.get(f"{name}_t2i")),
            _fmt(row.get(f"{name}_init")) if f"{name}_init" in row else "",
            _fmt(chance.get(name)),
        )
    for name in ("zeroshot_top1", "val_loss", "train_loss"):
        init = _fmt(row.get(f"{name}_init")) if f"{name}_init" in row else ""
        table.add_row(name, _fmt(row.get(name)), "", "", init, _fmt(chance.get(name)))
    table.caption = (
        f"m={row['m']} ({row['negatives']}), n={row['n']}, seed={row['seed']}:\n"
        f"{row['steps']} steps on {row['device']} in {row['wall_s']:.1f}s"
    )
    if row.get("selected_step") is not None:  # train.select = "best"
        table.caption += (
            f"\nthe weights of step {int(row['selected_step'])}/{row['steps']} "
            f"(best validation AUC {row['select_auc']:.4f})"
        )
    table.caption_justify = "left"
    return table
