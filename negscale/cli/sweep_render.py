"""How a sweep looks while it runs and after: the progress bar on stderr, the plan and
summary tables."""

from __future__ import annotations

import time
from typing import Any

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

from negscale.cli.common import (
    _fmt,
)


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
        """A batch of ``pending`` runs: the whole grid, or one adaptive round (counted
        from 1 again, so a round's lines read [1/3], not [19/3])."""
        self.total = self.left = pending
        self.done = 0
        self.bar.update(self.task, total=pending, completed=0)

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
