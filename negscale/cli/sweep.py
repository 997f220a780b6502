"""``negscale sweep``: a grid of runs (or adaptive rounds), its summary, fit and plot."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from negscale.cli.app import app
from negscale.cli.common import (
    DeviceOpt,
    JsonOpt,
    ReportOpt,
    ResultsOpt,
    SetOpt,
    _count,
    check_device,
    check_plot_path,
    err,
    out,
    print_json,
    results_dir,
    user_errors,
)
from negscale.cli.sweep_render import SweepProgress, plan_table, summary_table
from negscale.cli.train import warn_ignored
from negscale.errors import NegscaleError

_Recipe = typer.Argument(..., help="Recipe file or bundled recipe name (e.g. quickstart).")

_Negatives = typer.Option(
    None, "--negatives", "-m", help="m values: 1,2,4 | 2**0..2**10 | geom:1:1024:11."
)

_Ratios = typer.Option(
    None, "--ratios", help="m as fractions of n, m = round(ratio·n): 0.01,0.1,0.4,0.7,1."
)

_Samples = typer.Option(
    None, "--samples", "-n", help="n values (same forms); a value <= 1 is a fraction of data.n."
)

_Seeds = typer.Option(None, "--seeds", help="Seeds: 0,1,2 or 0..4.")

_Shard = typer.Option(
    None, "--shard", help="Run only shard I of N (1..N), e.g. 2/4: a fixed split of the plan."
)

_DryRun = typer.Option(False, "--dry-run", help="Print the plan and exit.")

_Fit = typer.Option(False, "--fit", help="Fit the saturation point on the study.")

_Adaptive = typer.Option(
    False,
    "--adaptive",
    help="Run in rounds: a coarse start, then the runs that narrow the answer most, "
    "until every n's interval is within --target (the grid gives the m range and n).",
)

_Target = typer.Option(
    1.0, "--target", help="--adaptive: the interval width to reach, in doublings of m."
)

_MaxRuns = typer.Option(
    None, "--max-runs", help="--adaptive: the run budget (default: the full grid's size)."
)

_Metric = typer.Option("auc", "--metric", help="Metric of the summary (and of --fit).")

_Metric2 = typer.Option(
    "auto",
    "--metric2",
    help="The summary's second metric (auto: zeroshot_top1 where captions are class "
    "templates, else recall_at_1).",
)

_Plot = typer.Option(
    None, "--plot", help="Draw the study: metric against m, a line per n, seed bands (PNG)."
)

_Jobs = typer.Option(
    "1",
    "--jobs",
    "-j",
    help="Runs trained at once, each in its own process: a count, or auto (a plan for"
    " the cores: one run a core on in-memory data, one run with loader workers on data"
    " decoded from files or on a GPU; the plan is printed). Results are the same as"
    " with 1 at the same threads per run.",
)

_Stack = typer.Option(
    True,
    "--stack/--no-stack",
    help="Train the runs of a design that differ only in seed and m as one stacked model"
    " (built-in MLP towers, in-batch negatives: about 2x faster on CPU; each run keeps its"
    " own batches, record and checkpoint, equal to a lone run's to float rounding)."
    " --no-stack trains every run on its own.",
)


@app.command()
@user_errors
def sweep(
    recipe: str = _Recipe,
    negatives: str | None = _Negatives,
    ratios: str | None = _Ratios,
    samples: str | None = _Samples,
    seeds: str | None = _Seeds,
    set_: list[str] | None = SetOpt,
    results: Path | None = ResultsOpt,
    shard: str | None = _Shard,
    dry_run: bool = _DryRun,
    fit_: bool = _Fit,
    adaptive: bool = _Adaptive,
    target: float = _Target,
    max_runs: int | None = _MaxRuns,
    metric: str = _Metric,
    metric2: str = _Metric2,
    plot: Path | None = _Plot,
    device: str | None = DeviceOpt,
    report_to: str | None = ReportOpt,
    jobs: str = _Jobs,
    stack: bool = _Stack,
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
        _show_plan(sw.plan_document(plan, folder, part), as_json)
        return

    if plot is not None:
        plot = check_plot_path(plot)
    check_results_dir(folder)
    early = _early_workers(plan, jobs, device, report_to, folder, part)
    # the early pool ends with the runs (on an error: once its workers stopped), so that
    # its workers' teardown overlaps the summary and the fit
    with early or contextlib.nullcontext():
        workers = _workers(plan, jobs, device, early)
        if not stack and isinstance(workers, sw.JobPlan):
            workers = dataclasses.replace(workers, stack=False)
        if adaptive:
            if target <= 0 or (max_runs is not None and max_runs < 1):
                raise NegscaleError("--target must be > 0 and --max-runs >= 1")
            budget = max_runs or len(plan.recipes)
            _adaptive(recipe, set_, plan, folder, part, device, metric, report_to, workers,
                      target, budget, plot, as_json, early)  # fmt: skip
            return
        start = time.perf_counter()
        if fit_:  # the fit's imports (scipy: 1 s) while the runs train, not after them
            threading.Thread(target=_import_for_fit).start()
        metrics = list(dict.fromkeys([metric, _second(metric2, plan)]))
        stats = _execute(plan, folder, part, device, metrics, report_to, workers, early)
    frame = sw.study_frame(plan, folder)  # read once, for the summary and the fit
    summary = sw.summarise(plan, folder, metrics, frame)
    summary.update(shard=list(part) if part else None, sweep=stats.to_dict())
    summary["wall_s"] = time.perf_counter() - start
    _show_study(summary, plan, frame, metric, fit_, plot, as_json)
    if stats.failed:
        err.print(
            f"[red]error:[/red] {len(stats.failed)} run(s) failed and stay pending; "
            "re-run the same command to retry them",
            highlight=False,
        )
        raise typer.Exit(1)


def _show_plan(doc: dict[str, Any], as_json: bool) -> None:
    """``sweep --dry-run``: the plan as JSON or as a table."""
    if as_json:
        print_json(doc)
    else:
        out.print(plan_table(doc))


def _early_workers(plan: Any, jobs: str, device: str | None, report_to: str | None,
                   folder: Path, part: tuple[int, int] | None) -> Any:  # fmt: skip
    """Worker processes spawned before the first run is checked, where the job plan needs
    no data built (vectors in memory) and a run is left to train: their 2 s of start-up
    overlap the check's."""
    from negscale import sweep as sw
    from negscale.results import record_path

    if not plan.recipes or not plan.recipes[0].data.vectors():
        return None
    if all(record_path(folder, r.run_id()).exists() for r in plan.shard(part)):
        return None  # a finished study shown again: nothing for workers to do
    job_plan = sw.plan_jobs(jobs, device, decodes=False)
    if job_plan.jobs < 2:
        return None
    return sw.Workers(job_plan, device, report_to, lambda message: None).start()


def _workers(plan: Any, jobs: str, device: str | None, early: Any = None) -> Any:
    """The runs at once (--jobs); the first run's data, device and towers checked first:
    a bad device or tower is one error now, not a failure in every run. With workers
    started early (vector data: the plan needs no data built), a worker makes the
    check, so this process never imports torch."""
    from negscale import sweep as sw

    workers = sw.resolve_jobs(jobs, device)
    if plan.recipes:
        first = plan.recipes[0]
        if early is not None:
            early.check(first)
            workers = early.plan
        else:
            from negscale import data as datasets
            from negscale.train import check_run

            data = datasets.build(first.data, first.model)
            check_run(first, data, device)
            decodes = bool(getattr(data.train, "decodes", False))
            workers = sw.plan_jobs(jobs, device, decodes=decodes)
        if str(jobs) == "auto":
            err.print(f"--jobs auto: {workers.text()}", highlight=False, markup=False)
    return workers


def _adaptive(recipe: str, overrides: list[str] | None, grid: Any, folder: Path,
              part: tuple[int, int] | None, device: str | None, metric: str,
              report_to: str | None, jobs: int, target: float, budget: int,
              plot: Path | None, as_json: bool, early: Any = None) -> None:  # fmt: skip
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
                               listener=progress, on_round=_show_round,
                               workers=early)  # fmt: skip
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


def _import_for_fit() -> None:
    """What the summary and the fit import: the fit, and the record reader's Parquet to
    pandas modules (0.1 s of the first read)."""
    for name in ("negscale.fit", "pyarrow.parquet", "pyarrow.pandas_compat"):
        importlib.import_module(name)


def _show_study(summary: dict, plan: Any, frame: Any, metric: str, fit_: bool,
                plot: Path | None, as_json: bool) -> None:  # fmt: skip
    """Render the summary (and the fit of the study's records ``frame``, and the plot)."""
    report, fit_warning = fit_study(plan, frame, metric) if fit_ else (None, None)
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
             metrics: list[str], report_to: str | None, jobs: int,
             early: Any = None) -> Any:  # fmt: skip
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
                              report_to=report_to, jobs=jobs, workers=early)  # fmt: skip
    except KeyboardInterrupt:
        err.print(
            "[red]interrupted:[/red] recorded runs are kept; re-run the same command to "
            "train the rest (a run with a checkpoint resumes from it)",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(130) from None


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


def fit_study(plan: Any, frame: Any, metric: str) -> tuple[Any, str | None]:
    """The fit report of the study's records ``frame``, or a warning why there is none
    (never fatal)."""
    from negscale.fit import fit

    try:
        return fit(frame, metric=metric, setting=plan.setting), None
    except NegscaleError as exc:
        return None, f"fit: {exc}"
