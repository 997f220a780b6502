"""Caption storage of a large shard set: Python lists of str against packed strings.

    python benchmarks/bench_captions.py [--count 1000000] [--json]

A ``shards`` set keeps every sample's key and caption. This builds ``count``
of each (CC3M-like: keys of 9 digits, captions of 30–80 characters) in the
two layouts, each in a fresh child process, and reports the memory they hold
after the build (tracemalloc: every Python object and numpy buffer) and the
peak during it; then, in one process, alternating, the CPU time to read one
batch of 320 captions (the cost per training step), as a median of 200.

A caption table (``pairs``: CSV/COCO) keeps per image its captions and its
file path. The ``table-*`` layouts build ``count`` captions, five per image
(COCO-like), with one path per image: a list of lists of str and a list of
``Path`` (the layout before packing) against :class:`GroupedCaptions` and
packed path strings. Its peak includes the caption column of the table,
which the table reader holds during a build in any layout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

CHILD = """
import sys, tracemalloc, random
from pathlib import Path
import numpy as np
from negscale.data.packed import GroupedCaptions, OneCaption, PackedStrings  # before counting
count, layout = int(sys.argv[1]), sys.argv[2]
def paths():
    return (Path(f"/data/coco/train2017/{i:012d}.jpg") for i in range(count // 5))
def keys():
    return (f"{i:09d}" for i in range(count))
def captions():
    rng = random.Random(0)
    words = "a photo of the dog cat on in with red blue small large tree street man woman".split()
    return (" ".join(rng.choices(words, k=rng.randint(6, 14))) for _ in range(count))
tracemalloc.start()
if layout == "lists":
    held = ([[c] for c in captions()], list(keys()))
elif layout == "packed":
    held = (OneCaption(PackedStrings.of(captions())), PackedStrings.of(keys()))
elif layout == "table-lists":
    grouped = [[] for _ in range(count // 5)]
    for i, c in enumerate(captions()):
        grouped[i // 5].append(c)
    held = (grouped, list(paths()))
else:
    group = np.arange(count, dtype=np.int64) // 5
    column = list(captions())  # the table's caption column, which a pairs build holds anyway
    held = (GroupedCaptions.of(column, group, count // 5), PackedStrings.of(map(str, paths())))
    del column
now, peak = tracemalloc.get_traced_memory()
print(now, peak)
"""


def held_memory(count: int, layout: str) -> tuple[float, float]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(count), layout],
        capture_output=True,
        text=True,
        check=True,
    )
    now, peak = (int(v) for v in out.stdout.split())
    return now / 2**20, peak / 2**20


def batch_read_us(count: int, repeats: int = 200) -> dict[str, float]:
    """CPU µs to read 320 random captions from each layout, alternating, median."""
    import random

    from negscale.data.packed import OneCaption, PackedStrings

    texts = [f"caption number {i} of a photo" for i in range(count)]
    layouts = {"lists": [[t] for t in texts], "packed": OneCaption(PackedStrings.of(texts))}
    rng = random.Random(0)
    times: dict[str, list[float]] = {k: [] for k in layouts}
    for _ in range(repeats):
        rows = rng.sample(range(count), 320)
        for name, table in layouts.items():
            t = time.process_time()
            [table[r][0] for r in rows]
            times[name].append((time.process_time() - t) * 1e6)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=1_000_000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    layouts = ("lists", "packed", "table-lists", "table-packed")
    mem = {layout: held_memory(args.count, layout) for layout in layouts}
    read = batch_read_us(min(args.count, 200_000))
    doc = {"count": args.count, "memory_mb": mem, "batch_read_us": read}
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    print(f"| layout ({args.count} captions) | held MiB | peak MiB | 320-caption read, µs |")
    print("|---|---:|---:|---:|")
    for layout in layouts:
        now, peak = mem[layout]
        read_us = f"{read[layout]:.0f}" if layout in read else "—"
        print(f"| {layout} | {now:.0f} | {peak:.0f} | {read_us} |")
    for a, b in (("packed", "lists"), ("table-packed", "table-lists")):
        print(f"{a} / {b} held memory: {mem[a][0] / mem[b][0]:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
