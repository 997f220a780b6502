"""Caption storage of a large shard set: Python lists of str against packed strings.

    python benchmarks/bench_captions.py [--count 1000000] [--json]

A ``shards`` set keeps every sample's key and caption. This builds ``count``
of each (CC3M-like: keys of 9 digits, captions of 30–80 characters) in the
two layouts, each in a fresh child process, and reports the memory they hold
after the build (tracemalloc: every Python object and numpy buffer) and the
peak during it; then, in one process, alternating, the CPU time to read one
batch of 320 captions (the cost per training step), as a median of 200.
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
from negscale.data.packed import OneCaption, PackedStrings  # imported before counting
count, layout = int(sys.argv[1]), sys.argv[2]
def keys():
    return (f"{i:09d}" for i in range(count))
def captions():
    rng = random.Random(0)
    words = "a photo of the dog cat on in with red blue small large tree street man woman".split()
    return (" ".join(rng.choices(words, k=rng.randint(6, 14))) for _ in range(count))
tracemalloc.start()
if layout == "lists":
    held = ([[c] for c in captions()], list(keys()))
else:
    held = (OneCaption(PackedStrings.of(captions())), PackedStrings.of(keys()))
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
    mem = {layout: held_memory(args.count, layout) for layout in ("lists", "packed")}
    read = batch_read_us(min(args.count, 200_000))
    doc = {"count": args.count, "memory_mb": mem, "batch_read_us": read}
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    print(f"| layout | held MiB ({args.count} keys + captions) | peak MiB | 320-caption read, µs |")
    print("|---|---:|---:|---:|")
    for layout in ("lists", "packed"):
        now, peak = mem[layout]
        print(f"| {layout} | {now:.0f} | {peak:.0f} | {read[layout]:.0f} |")
    ratio = mem["packed"][0] / mem["lists"][0]
    print(f"\npacked / lists held memory: {ratio:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
