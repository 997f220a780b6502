"""Negatives benchmark: step time and memory per source and m, and the loss against peers.

1. Per-step train time (trainers stepped in turn, CPU time medians) and peak
   step memory (a child process per configuration) on the quickstart task
   (pinned: ``TASK``) at one batch size (B = 320), with the pool defaults
   (``negscale.config.pool_rule``): ``pool`` at m = 16 (the baseline), at
   the largest exact pool (B // 2 = 160), just above it (161: the estimator
   whose mini-batch needs the most extra encoding, as the batch holds few pool
   members), 1024 (version 1's largest exact pool), 2048 and m = n (4096,
   where the mini-batch is the batch itself); ``independent`` at m = 16 and
   320; in-batch negatives for reference.
   Goal: every pool step within 1.5x of the m = 16 step.
2. Forward+backward time, FLOP-floor multiple and peak memory of the loss:
   in-batch InfoNCE (the shared-tile LSE against open_clip's ClipLoss) and B
   anchors against a large shared negative set (tiled vs plain dense),
   ratios against the peer measured in the same run (``negscale.bench``).

    OMP_NUM_THREADS=1 python benchmarks/bench_negatives.py          # README tables
    OMP_NUM_THREADS=1 python benchmarks/bench_negatives.py --json   # one JSON document
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from negscale.bench import bench_loss, bench_source_steps

POOL_GOAL = 1.5  # a pool step at any m, over the m = 16 step
# The task the goal was set on, pinned so the bundled quickstart can change without
# moving this benchmark: n = 4096 (so m = n makes the mini-batch the batch itself)
# and the 0.1.0 quickstart's towers (two hidden layers of 128).
TASK = ["data.n=4096", "model.layers=2", "model.hidden=128"]


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _print_steps(steps: list[dict]) -> None:
    print("| source | m | mode | B | step ms | vs first | peak MiB |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for r in steps:
        print(
            f"| {r['source']} | {r['m']} | {r['mode']} | {r['batch']} | {r['step_ms']:.1f} "
            f"| {r['ratio']:.2f}x | {_fmt(r.get('peak_mb'), 1)} |"
        )
    worst = max(r["ratio"] for r in steps if r["source"] == "pool")
    verdict = "met" if worst <= POOL_GOAL else "NOT met"
    print(f"\nslowest pool step: {worst:.2f}x the first (goal <= {POOL_GOAL}x: {verdict})")


def _print_loss(kind: str, rows: list[dict]) -> None:
    for r in rows:
        print(
            f"| {kind} | {r['batch']} | {r['m']} | {r['dim']} | {r['impl']} | {r['ms']:.1f} "
            f"| {r['floor_x']:.2f}x | {_fmt(r['peak_mb'], 1)} "
            f"| {_fmt(r['time_ratio'])}x {r['peer']} | {_fmt(r['mem_ratio'])}x |"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30, help="timed train steps per configuration")
    ap.add_argument(
        "--pool", default="16,160,161,1024,2048,4096", help="pool sizes (first: baseline)"
    )
    ap.add_argument("--independent", default="16,320", help="independent draws m per anchor")
    ap.add_argument("--batches", default="1024,4096", help="batch sizes for the in-batch loss")
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--shared", default="256:16384", help="B:m for the shared-negatives loss")
    ap.add_argument("--tile", type=int, default=None, help="most columns per loss tile")
    ap.add_argument("--repeats", type=int, default=5, help="timed loss calls per implementation")
    ap.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    ap.add_argument("--json", action="store_true", help="print one JSON document only")
    args = ap.parse_args(argv)
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device
    if device == "auto":
        device = "cpu"

    configs: list[tuple[str, int | None]] = [("pool", m) for m in _ints(args.pool)]
    configs += [("independent", m) for m in _ints(args.independent)] + [("batch", None)]
    steps = bench_source_steps(configs, TASK, steps=args.steps, device=device, memory=True)
    kw = {"tile": args.tile, "repeats": args.repeats}
    in_batch = bench_loss(_ints(args.batches), args.dim, None, device, **kw)
    b, m = _ints(args.shared.replace(":", ","))
    shared = bench_loss([b], args.dim, m, device, **kw)
    doc = {
        "device": device,
        "threads": torch.get_num_threads(),
        "steps": steps,
        "loss_in_batch": in_batch,
        "loss_shared": shared,
    }
    if args.json:
        json.dump(doc, sys.stdout, indent=2)
        print()
        return 0
    print(f"device {device}, {torch.get_num_threads()} thread(s)\n")
    _print_steps(steps)
    print("\n| loss | B | m | d | impl | ms | x floor | peak MiB | time vs peer | mem vs peer |")
    print("|---|---:|---:|---:|---|---:|---:|---:|---:|---:|")
    _print_loss("in-batch", in_batch)
    _print_loss("shared", shared)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
