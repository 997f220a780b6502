"""The ``negscale`` command: a thin Typer layer that parses, calls and renders.

Errors on bad input are one ``error: ...`` line on stderr with exit code 2 and
no traceback; ``--json`` puts exactly one JSON document on stdout, while logs
and progress bars go to stderr.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from negscale.errors import NegscaleError

# Typer vendors click (typer._click) in recent versions: find its exception base by name.
_ClickException = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


class _OneLineErrors(typer.core.TyperGroup):
    """Click's own usage errors (``--seed abc``, a missing argument) as one ``error:`` line.

    Typer draws them in a multi-line box; scripts and users get the same one-line
    format as every other bad input, with exit code 2.
    """

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except _ClickException as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":
                text = exc.ctx.get_help()  # typer's rich help prints itself and returns ""
                if text:
                    typer.echo(text)
                sys.exit(exc.exit_code)
            where = f" (see: {exc.ctx.command_path} --help)" if getattr(exc, "ctx", None) else ""
            message = " ".join(exc.format_message().split())
            err.print(
                f"[red]error:[/red] {escape(message)}{where}", highlight=False, soft_wrap=True
            )
            sys.exit(exc.exit_code)
        except typer.Abort:
            err.print("[red]error:[/red] aborted", highlight=False)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    cls=_OneLineErrors,
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


# ------------------------------------------------------------------ train

SetOpt = typer.Option(None, "--set", help="Override a recipe field: key.path=value (repeatable).")
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
    from negscale.recipe import check_axis_overrides, load_recipe
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
    from negscale.train import checkpoint_path, run

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


def check_run(recipe: Any, data: Any, device: str | None) -> None:
    """What a run would fail on only after its header: the device the recipe asks for,
    the towers (names, timm architectures, local weight paths)."""
    from negscale import encoders
    from negscale.train import resolve_device

    resolve_device(device or recipe.train.device)
    encoders.check(recipe.model, data)


def warn_ignored(recipe: Any) -> None:
    """One warning line per ``negatives.*`` setting the recipe's source does not read."""
    from negscale.negatives.catalog import SPECS
    from negscale.recipe import ignored_negative_fields

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


# ------------------------------------------------------------------ sweep


def check_device(device: str | None) -> None:
    if device is not None and device not in ("auto", "cpu", "cuda"):
        raise NegscaleError(f"--device: expected auto, cpu or cuda, got {device!r}")


@app.command()
@user_errors
def sweep(
    recipe: str = typer.Argument(..., help="Recipe file or bundled recipe name (e.g. quickstart)."),
    negatives: str | None = typer.Option(
        None, "--negatives", "-m", help="m values: 1,2,4 | 2**0..2**10 | geom:1:1024:11."
    ),
    ratios: str | None = typer.Option(
        None, "--ratios", help="m as fractions of n, m = round(ratio·n): 0.01,0.1,0.4,0.7,1."
    ),
    samples: str | None = typer.Option(
        None, "--samples", "-n", help="n values (same forms); a value <= 1 is a fraction of data.n."
    ),
    seeds: str | None = typer.Option(None, "--seeds", help="Seeds: 0,1,2 or 0..4."),
    set_: list[str] | None = SetOpt,
    results: Path | None = ResultsOpt,
    shard: str | None = typer.Option(
        None, "--shard", help="Run only shard I of N (1..N), e.g. 2/4: a fixed split of the plan."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan and exit."),
    fit_: bool = typer.Option(False, "--fit", help="Fit the saturation point on the study."),
    adaptive: bool = typer.Option(
        False,
        "--adaptive",
        help="Run in rounds: a coarse start, then the runs that narrow the answer most, "
        "until every n's interval is within --target (the grid gives the m range and n).",
    ),
    target: float = typer.Option(
        1.0, "--target", help="--adaptive: the interval width to reach, in doublings of m."
    ),
    max_runs: int | None = typer.Option(
        None, "--max-runs", help="--adaptive: the run budget (default: the full grid's size)."
    ),
    metric: str = typer.Option("auc", "--metric", help="Metric of the summary (and of --fit)."),
    metric2: str = typer.Option(
        "auto",
        "--metric2",
        help="The summary's second metric (auto: zeroshot_top1 where captions are class "
        "templates, else recall_at_1).",
    ),
    plot: Path | None = typer.Option(
        None, "--plot", help="Draw the study: metric against m, a line per n, seed bands (PNG)."
    ),
    device: str | None = DeviceOpt,
    report_to: str | None = ReportOpt,
    jobs: str = typer.Option(
        "1",
        "--jobs",
        "-j",
        help="Runs trained at once, each in its own process: a count, or auto (a plan for"
        " the cores: one run a core on in-memory data, one run with loader workers on data"
        " decoded from files or on a GPU; the plan is printed). Results are the same as"
        " with 1 at the same threads per run.",
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Train a grid over m, n and seeds; resumable, shardable; summarise (and fit) the study.

    Defaults come from the recipe's \\[sweep] section. Runs with a valid record are
    skipped, so re-running the same command after a crash completes the study.
    """
    from negscale import sweep as sw
    from negscale.report_to import check_report_to
    from negscale.results import check_results_dir

    check_device(device)
    check_report_to(report_to)
    sw.check_metric(metric)
    if metric2 != "auto":
        sw.check_metric(metric2)
    sw.resolve_jobs(jobs, device)  # a bad --jobs is an error before the plan
    grid = sw.GridSpec(negatives=negatives, ratios=ratios, samples=samples, seeds=seeds)
    plan = sw.make_plan(recipe, set_, grid)
    if plan.recipes:
        warn_ignored(plan.recipes[0])
    part = sw.parse_shard(shard) if shard else None
    folder = results_dir(results, plan.name)
    if dry_run:
        doc = sw.plan_document(plan, folder, part)
        if as_json:
            print_json(doc)
        else:
            out.print(plan_table(doc))
        return

    if plot is not None:
        plot = check_plot_path(plot)
    check_results_dir(folder)
    workers = sw.resolve_jobs(jobs, device)
    if plan.recipes:  # a bad device or tower is one error now, not a failure in every run
        from negscale import data as datasets

        first = plan.recipes[0]
        data = datasets.build(first.data, first.model)
        check_run(first, data, device)
        workers = sw.plan_jobs(jobs, device, decodes=bool(getattr(data.train, "decodes", False)))
        if str(jobs) == "auto":
            err.print(f"--jobs auto: {workers.text()}", highlight=False, markup=False)
    if adaptive:
        if target <= 0 or (max_runs is not None and max_runs < 1):
            raise NegscaleError("--target must be > 0 and --max-runs >= 1")
        budget = max_runs or len(plan.recipes)
        _adaptive(recipe, set_, plan, folder, part, device, metric, report_to, workers,
                  target, budget, plot, as_json)  # fmt: skip
        return
    start = time.perf_counter()
    metrics = list(dict.fromkeys([metric, _second(metric2, plan)]))
    stats = _execute(plan, folder, part, device, metrics, report_to, workers)
    summary = sw.summarise(plan, folder, metrics)
    summary.update(shard=list(part) if part else None, sweep=stats.to_dict())
    summary["wall_s"] = time.perf_counter() - start
    _show_study(summary, plan, folder, metric, fit_, plot, as_json)
    if stats.failed:
        err.print(
            f"[red]error:[/red] {len(stats.failed)} run(s) failed and stay pending; "
            "re-run the same command to retry them",
            highlight=False,
        )
        raise typer.Exit(1)


def _adaptive(recipe: str, overrides: list[str] | None, grid: Any, folder: Path,
              part: tuple[int, int] | None, device: str | None, metric: str,
              report_to: str | None, jobs: int, target: float, budget: int,
              plot: Path | None, as_json: bool) -> None:  # fmt: skip
    """``sweep --adaptive``: the rounds under a progress bar, each round's answers on stderr."""
    from negscale import sweep as sw
    from negscale.sweep.adaptive import adaptive

    raw = sw.read_raw(recipe, overrides)
    err.print(
        f"[bold]negscale sweep --adaptive[/bold] {escape(grid.name)}: up to {budget} runs "
        f"(the grid has "
        f"{len(grid.recipes)}), until every n's interval is within {target:g} doubling(s)"
        + (f", shard {part[0]}/{part[1]}" if part else "") + f" -> {escape(str(folder))}",
        highlight=False, soft_wrap=True,
    )  # fmt: skip
    start = time.perf_counter()
    try:
        with SweepProgress(err, metric, _second("auto", grid)) as progress, _sigterm_as_exit():
            outcome = adaptive(raw, grid, folder, target=target, max_runs=budget, metric=metric,
                               shard=part, jobs=jobs, device=device, report_to=report_to,
                               listener=progress, on_round=_show_round)  # fmt: skip
    except KeyboardInterrupt:
        err.print("[red]interrupted:[/red] re-run the same command to resume the rounds",
                  highlight=False)  # fmt: skip
        raise typer.Exit(130) from None
    done = sw.plan_points(
        raw, [(r.m, r.data.n, r.train.seed) for r in _recorded(grid, raw, folder)]
    )
    summary = sw.summarise(done, folder, list(dict.fromkeys([metric, _second("auto", grid)])))
    summary.update(adaptive=outcome.to_dict(), wall_s=time.perf_counter() - start)
    summary["adaptive"]["grid_runs"] = len(grid.recipes)
    summary["sweep"] = {"trained": outcome.trained}
    if as_json:
        print_json(summary)
    else:
        out.print(summary_table(summary))
        from negscale.fit import render

        render(outcome.report, out)
    if plot is not None:
        from negscale.sweep import plot_study

        err.print(f"plot: {plot_study(summary, metric, plot)}", highlight=False, markup=False)


def _recorded(grid: Any, raw: dict, folder: Path) -> list[Any]:
    """The recipes of every adaptive round written in ``folder``."""
    from negscale import sweep as sw

    rounds = sorted((folder / "adaptive").glob("round-*.json"))
    points = [
        (r["m"], r["n"], r["seed"]) for f in rounds for r in json.loads(f.read_text())["runs"]
    ]
    return sw.plan_points(raw, points).recipes


def _show_round(info: dict) -> None:
    """One adaptive round on stderr: what it learned, what runs next, or why it stops."""
    from negscale.fit.render import answer_text, n_text, wrap

    rep = info["report"]
    lines = [f"round {info['round']}: {_count(info['runs'], 'run')} ({info['total']} in all)"]
    lines += [f"  n = {n_text(g.n)}:  {answer_text(g)}" for g in rep.groups]
    if info["stop"]:
        why = {
            "pinned": "every n's interval is within the target",
            "budget spent": "the run budget is spent",
            "bound the m range cannot close": "an answer is a bound the m range cannot close",
        }
        lines.append(f"  stopped: {why.get(info['stop'], info['stop'])}")  # fmt: skip
        lines += [f"    {line}" for line in info["why"]]
    else:
        lines.append(f"  next: {_count(len(info['next']), 'run')}")
        lines += [f"    seed {s['seed']}: {s['reason']}" for s in info["next"]]
    text = "\n".join(wrap(line, err.width) for line in lines)
    err.print(text, highlight=False, markup=False, soft_wrap=True)


def _second(metric2: str, plan: Any) -> str:
    """--metric2: given, or the data's own (sweep.second_metric)."""
    from negscale import sweep as sw

    if metric2 != "auto":
        return metric2
    return sw.second_metric(plan.recipes[0]) if plan.recipes else "recall_at_1"


def _show_study(summary: dict, plan: Any, folder: Path, metric: str, fit_: bool,
                plot: Path | None, as_json: bool) -> None:  # fmt: skip
    """Render the summary (and the fit, and the plot) of a finished sweep."""
    report, fit_warning = fit_study(plan, folder, metric) if fit_ else (None, None)
    if as_json:
        if fit_:
            summary["fit"] = report.to_dict() if report is not None else None
            summary["fit_warning"] = fit_warning
        print_json(summary)
    else:
        out.print(summary_table(summary))
        if report is not None:
            from negscale.fit import render

            render(report, out)
    if plot is not None:
        from negscale.sweep import plot_study

        err.print(f"plot: {plot_study(summary, metric, plot)}", highlight=False, markup=False)
    if fit_warning:
        err.print(
            f"[yellow]warning:[/yellow] {escape(fit_warning)}", highlight=False, soft_wrap=True
        )


def _execute(plan: Any, folder: Path, part: tuple[int, int] | None, device: str | None,
             metrics: list[str], report_to: str | None, jobs: int) -> Any:  # fmt: skip
    """Run the sweep under a progress bar; SIGTERM and Ctrl-C leave no lock and say what next."""
    from negscale import sweep as sw

    sources = "/".join(sorted({r.negatives.source for r in plan.recipes}))
    err.print(
        f"[bold]negscale sweep[/bold] {escape(plan.name)}: {len(plan.recipes)} runs "
        f"({plan.setting}, source={sources})"
        + (f", shard {part[0]}/{part[1]}" if part else "")
        + (f", {at_once} at once" if (at_once := getattr(jobs, "jobs", jobs)) > 1 else "")
        + f" -> {escape(str(folder))}",
        highlight=False,
        soft_wrap=True,
    )
    try:
        with SweepProgress(err, *metrics[:2]) as progress, _sigterm_as_exit():
            return sw.execute(plan, folder, shard=part, device=device, listener=progress,
                              report_to=report_to, jobs=jobs)  # fmt: skip
    except KeyboardInterrupt:
        err.print(
            "[red]interrupted:[/red] recorded runs are kept; re-run the same command to "
            "train the rest (a run with a checkpoint resumes from it)",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(130) from None


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


@contextlib.contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """Schedulers stop jobs with SIGTERM: exit through Python so held run locks are released."""

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def fit_study(plan: Any, folder: Path, metric: str) -> tuple[Any, str | None]:
    """The fit report of the finished study, or a warning why there is none (never fatal)."""
    from negscale.fit import fit
    from negscale.sweep import study_frame

    try:
        return fit(study_frame(plan, folder), metric=metric, setting=plan.setting), None
    except NegscaleError as exc:
        return None, f"fit: {exc}"


class SweepProgress:
    """A :class:`negscale.sweep.Listener` on stderr: a bar over runs, a line per finished run.

    The ETA is the mean wall time of the runs finished in this process times
    the runs left, minus the time the current run has already taken.
    """

    def __init__(self, console: Console, metric: str, metric2: str = "recall_at_1") -> None:
        self.metric, self.metric2 = metric, metric2
        self.durations: list[float] = []
        self.current: float | None = None
        self.left = 0
        self.done = 0
        self.total = 0
        self.bar = Progress(
            TextColumn("[bold]sweep"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            _EtaColumn(self),
            console=console,
            transient=True,
        )
        self.task = self.bar.add_task("sweep", total=None)

    def __enter__(self) -> SweepProgress:
        self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    def eta(self) -> float | None:
        if not self.durations:
            return None
        mean = sum(self.durations) / len(self.durations)
        running = time.perf_counter() - self.current if self.current is not None else 0.0
        return max(0.0, mean * self.left - running)

    def begin(self, pending: int) -> None:
        self.total = self.left = pending
        self.bar.update(self.task, total=pending)

    def notice(self, message: str) -> None:
        self.bar.console.print(
            f"[yellow]{escape(message)}[/yellow]", highlight=False, soft_wrap=True
        )

    def started(self, recipe: Any) -> None:
        self.current = time.perf_counter()

    def finished(self, recipe: Any, record: Any, seconds: float) -> None:
        self.current = None
        self.left -= 1
        self.done += 1
        self.bar.advance(self.task)
        if record is None:
            return
        self.durations.append(seconds)
        where = escape(
            f"[{self.done}/{self.total}] n={recipe.data.n} m={recipe.m} seed={recipe.train.seed}"
        )
        if record.status == "ok":
            line = (
                f"{where}  {self.metric} {_fmt(record.to_row().get(self.metric))}"
                f"  {self.metric2} {_fmt(record.to_row().get(self.metric2))}  {seconds:.1f}s"
                f"  {record.run_id}"
            )
        else:
            line = (
                f"[red]{where}  {record.status}[/red] ({escape(str(record.message))}),"
                f" recorded  {record.run_id}"
            )
        self.bar.console.print(line, highlight=False, soft_wrap=True)


class _EtaColumn(ProgressColumn):
    def __init__(self, progress: SweepProgress) -> None:
        super().__init__()
        self.progress = progress

    def render(self, task: Any) -> Text:
        eta = self.progress.eta()
        return Text("eta —" if eta is None else f"eta {_clock(eta)}", style="progress.remaining")


def _clock(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def _mean_sd(cell: dict[str, Any]) -> str:
    mean, sd = cell.get("mean"), cell.get("sd")
    if mean is None:
        return "—"
    return _fmt(mean, 3) + ("" if sd is None else f" ± {_fmt(sd, 3)}")  # 80 columns


def summary_table(summary: dict[str, Any]) -> Table:
    metrics = summary["metrics"]
    table = Table(
        title=f"{summary['study']}: {', '.join(metrics)} — mean ± sd over seeds",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    for col in ("n", "m", "m/n", "ok", *metrics):
        table.add_column(col, justify="right", no_wrap=True)
    failed = [k for k in ("diverged", "collapsed") if any(c[k] for c in summary["cells"])]
    for k in failed:
        table.add_column(k[:4], justify="right", no_wrap=True)
    for c in summary["cells"]:
        cells = [str(c["n"]), str(c["m"]), f"{c['ratio']:.3g}", f"{c['ok']}/{c['planned']}"]
        cells += [_mean_sd(c[k]) for k in metrics]
        table.add_row(*cells, *(str(c[k]) for k in failed))
    chance = summary.get("chance") or {}
    table.add_section()
    blank = ["" for _ in failed]
    table.add_row("chance", "", "", "", *(_fmt(chance.get(k), 3) for k in metrics), *blank)
    sweep_stats = summary["sweep"]
    table.caption = (
        f"{summary['recorded']}/{summary['planned']} runs recorded in {summary['results']};\n"
        f"this invocation trained {len(sweep_stats['trained'])} in {_clock(summary['wall_s'])}"
        + ("; dive/coll: runs diverged / collapsed" if failed else "")
    )
    table.caption_justify = "left"
    return table


def plan_table(doc: dict[str, Any]) -> Table:
    runs = doc["runs"]
    counts = {
        s: sum(r["state"] == s for r in runs) for s in ("done", "pending", "running", "corrupt")
    }
    what = ", ".join(f"{v} {k}" for k, v in counts.items() if v)
    shard = (
        f" (shard {doc['shard'][0]}/{doc['shard'][1]} of {doc['planned']})" if doc["shard"] else ""
    )
    table = Table(
        title=f"plan {doc['study']}: {len(runs)} runs{shard}: {what}", title_justify="left"
    )
    for col in ("run_id", "m", "n", "seed", "state"):
        table.add_column(col, justify="left" if col in ("run_id", "state") else "right")
    for r in runs:
        style = {"done": "green", "corrupt": "red", "running": "yellow"}.get(r["state"], "")
        table.add_row(
            r["run_id"], str(r["m"]), str(r["n"]), str(r["seed"]), r["state"], style=style
        )
    table.caption = f"results: {doc['results']}"
    return table


# ------------------------------------------------------------------ results


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


# ------------------------------------------------------------------ fit


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


# ------------------------------------------------------------------ bench

bench_app = typer.Typer(
    no_args_is_help=True,
    help="Speed and memory against peers, as ratios measured in the same run.",
)
app.add_typer(bench_app, name="bench")


def _int_list(text: str, flag: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise NegscaleError(f"{flag}: expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 2:
        raise NegscaleError(f"{flag}: expected integers >= 2, got {text!r}")
    return values


@bench_app.command("loss")
@user_errors
def bench_loss_cmd(
    batch: str = typer.Option("1024,4096", "--batch", help="Batch sizes B, comma-separated."),
    dim: int = typer.Option(256, "--dim", min=1, help="Embedding dimension."),
    negatives: int | None = typer.Option(
        None,
        "--negatives",
        "-m",
        min=1,
        help="m shared negatives per anchor (default: in-batch, m = B-1, vs open_clip).",
    ),
    tile: int | None = typer.Option(
        None, "--tile", min=1, help="Most columns per tile of the tiled path (default 1024)."
    ),
    repeats: int = typer.Option(5, "--repeats", min=1, help="Timed calls per implementation."),
    measure_memory: bool = typer.Option(
        True, "--memory/--no-memory", help="Measure peak memory (in a child process)."
    ),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda."),
    as_json: bool = JsonOpt,
) -> None:
    """Loss forward+backward: time, FLOP-floor multiple and peak memory against open_clip.

    Implementations alternate call by call; CPU time (process_time) on CPUs;
    the floor is 6 B M d FLOPs at the sgemm rate measured in the same run.
    """
    import statistics

    import torch

    from negscale.bench import bench_loss
    from negscale.train import resolve_device

    check_device(device)
    dev = resolve_device(device).type
    rows = bench_loss(
        _int_list(batch, "--batch"),
        dim,
        negatives,
        dev,
        tile=tile,
        repeats=repeats,
        memory=measure_memory,
    )
    if as_json:
        print_json({"device": dev, "threads": torch.get_num_threads(), "rows": rows})
        return
    title = f"loss forward+backward on {dev}, {torch.get_num_threads()} thread(s), d={dim}"
    table = Table(title=title, title_justify="left")
    for col in ("B", "m", "impl", "ms", "×floor", "peak MiB", "time ×peer", "mem ×peer"):
        table.add_column(col, justify="left" if col == "impl" else "right")
    for r in rows:
        table.add_row(
            str(r["batch"]),
            str(r["m"]),
            r["impl"],
            _fmt(r["ms"], 1),
            _fmt(r["floor_x"], 2),
            _fmt(r["peak_mb"], 1),
            _fmt(r["time_ratio"], 2),
            _fmt(r["mem_ratio"], 2),
        )
    gflops = statistics.median(r["sgemm_gflops"] for r in rows)
    table.caption = (
        f"×peer: ratio to {rows[0]['peer']} at the same B, measured in this run; "
        f"×floor: time over 6·B·M·d FLOPs at {gflops:.0f} GFLOP/s (sgemm, this run)"
    )
    out.print(table)


# ------------------------------------------------------------------ list


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


if __name__ == "__main__":  # pragma: no cover
    app()
