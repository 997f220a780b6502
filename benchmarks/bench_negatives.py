"""Negatives benchmark: pool step time at m = n vs m = 16, and the tiled loss vs dense.

1. Per-step train time of the ``pool`` source on the quickstart task at the
   same batch size for m = 16 (exact), m = 1024 (the largest exact pool by
   default) and m = n (estimator), plus in-batch negatives for reference.
   Goal: m = n within 1.5x of m = 16.
2. Forward+backward time and peak memory of the loss: in-batch InfoNCE
   (dense ``contrastive_loss``, the tiled path, open_clip's ClipLoss) and B
   anchors against a large shared negative set (dense vs tiled), ratios against
   the peer measured in the same run (``negscale.bench``).

    OMP_NUM_THREADS=1 python benchmarks/bench_negatives.py          # README table
    OMP_NUM_THREADS=1 python benchmarks/bench_negatives.py --json   # one JSON document
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from negscale.bench import bench_loss, bench_pool_step


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30, help="timed train steps per pool size")
    ap.add_argument("--pool", default="16,1024,4096", help="pool sizes m (first is the baseline)")
    ap.add_argument("--batches", default="1024,4096", help="batch sizes for the in-batch loss")
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--shared", default="256:16384", help="B:m for the shared-negatives loss")
    ap.add_argument("--tile", type=int, default=1024)
    ap.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    ap.add_argument("--json", action="store_true", help="print one JSON document only")
    args = ap.parse_args(argv)
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device
    if device == "auto":
        device = "cpu"

    steps = bench_pool_step(_ints(args.pool), steps=args.steps, device=device)
    in_batch = bench_loss(_ints(args.batches), args.dim, None, device, tile=args.tile)
    b, m = _ints(args.shared.replace(":", ","))
    shared = bench_loss([b], args.dim, m, device, tile=args.tile)
    doc = {
        "device": device,
        "threads": torch.get_num_threads(),
        "pool_step": steps,
        "loss_in_batch": in_batch,
        "loss_shared": shared,
    }
    if args.json:
        json.dump(doc, sys.stdout, indent=2)
        print()
        return 0

    print(f"device {device}, {torch.get_num_threads()} thread(s)\n")
    print("| source | m | mode | batch | step ms | vs first |")
    print("|---|---:|---|---:|---:|---:|")
    for r in steps:
        print(
            f"| {r['source']} | {r['m']} | {r['mode']} | {r['batch']} "
            f"| {r['step_ms']:.1f} | {r['ratio']:.2f}x |"
        )
    print("\n| loss | B | m | d | impl | ms | peak MiB | time vs peer | mem vs peer |")
    print("|---|---:|---:|---:|---|---:|---:|---:|---:|")
    for kind, rows in (("in-batch", in_batch), ("shared", shared)):
        for r in rows:
            print(
                f"| {kind} | {r['batch']} | {r['m']} | {r['dim']} | {r['impl']} "
                f"| {r['ms']:.1f} | {_fmt(r['peak_mb'], 1)} "
                f"| {_fmt(r['time_ratio'])}x {r['peer']} | {_fmt(r['mem_ratio'])}x |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
