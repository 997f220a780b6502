"""``negscale bench``: speed and memory against peers (a sub-app: ``bench loss``)."""

from __future__ import annotations

import typer
from rich.table import Table

from negscale.cli.app import app
from negscale.cli.common import (
    JsonOpt,
    _fmt,
    check_device,
    out,
    print_json,
    user_errors,
)
from negscale.errors import NegscaleError

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
