"""`sweep --jobs auto` against `--jobs 1`, on shards (images decoded from files) and on
the synthetic task (in memory): auto must never be slower.

Each configuration is a whole `negscale sweep` in a fresh results folder (a
subprocess, so nothing is shared or cached between them), timed by wall clock;
the two configurations alternate over `--repeats` rounds and the medians are
compared. The shard study writes its own tar shards (RGB JPEG-sized PNGs of
coloured shapes with captions) to a temporary folder. The threads are left as
the machine gives them: the point is what a user gets without tuning.

    python benchmarks/bench_jobs.py            # 2 repeats, about 5 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

SHARD_SETS = [
    "data.name='shards'", "data.n=512", "data.n_eval=128", "data.image_size=32",
    "model.embed_dim=32", "train.batch_size=64", "train.epochs=4", "train.select='last'",
]  # fmt: skip
SYNTH_SETS = ["train.select='last'"]


def write_shards(root: Path, count: int = 800, per_shard: int = 200) -> str:
    """Tar shards of {key}.png + {key}.txt: coloured shapes at 64 px, captions naming them."""
    from PIL import Image, ImageDraw

    colours = {"red": (220, 30, 30), "green": (30, 180, 30), "blue": (30, 60, 220)}
    shapes = ("circle", "square")
    for s in range(count // per_shard):
        with tarfile.open(root / f"{s:05d}.tar", "w") as tar:
            for i in range(s * per_shard, (s + 1) * per_shard):
                name, rgb = list(colours.items())[i % 3]
                shape = shapes[(i // 3) % 2]
                im = Image.new("RGB", (64, 64), (255, 255, 255))
                box = (8 + i % 9, 8 + i % 7, 50 + i % 5, 52 - i % 4)
                draw = ImageDraw.Draw(im)
                (draw.ellipse if shape == "circle" else draw.rectangle)(box, fill=rgb)
                buf = io.BytesIO()
                im.save(buf, format="PNG")
                for ext, data in (("png", buf.getvalue()), ("txt", f"a {name} {shape}".encode())):
                    info = tarfile.TarInfo(f"{i:06d}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    return str(root) + f"/{{00000..{count // per_shard - 1:05d}}}.tar"


def sweep_seconds(sets: list[str], grid: list[str], jobs: str, results: Path) -> float:
    cmd = [sys.executable, "-m", "negscale", "sweep", "quickstart", "--jobs", jobs,
           "--results", str(results), *grid]  # fmt: skip
    for s in sets:
        cmd += ["--set", s]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return time.perf_counter() - t0


def compare(name: str, sets: list[str], grid: list[str], repeats: int, tmp: Path) -> str:
    times: dict[str, list[float]] = {"1": [], "auto": []}
    for r in range(repeats):
        for jobs in ("1", "auto") if r % 2 == 0 else ("auto", "1"):
            times[jobs].append(sweep_seconds(sets, grid, jobs, tmp / f"{name}-{jobs}-{r}"))
    one, auto = statistics.median(times["1"]), statistics.median(times["auto"])
    verdict = "auto never slower: ok" if auto <= one * 1.05 else "auto SLOWER"
    return (
        f"{name:9s} --jobs 1: {one:6.1f} s   --jobs auto: {auto:6.1f} s   "
        f"auto/1 = {auto / one:.2f}   ({verdict}; medians of {repeats})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        (tmp / "shards").mkdir()
        spec = write_shards(tmp / "shards")
        shards = [*SHARD_SETS, f"data.path='{spec}'", "model.image_encoder='cnn'",
                  "model.text_encoder='transformer'"]  # fmt: skip
        grid = ["--negatives", "3,31", "--samples", "512", "--seeds", "0,1"]
        print(compare("shards", shards, grid, args.repeats, tmp))
        grid = ["--negatives", "3,31", "--samples", "1024", "--seeds", "0,1"]
        print(compare("synthetic", SYNTH_SETS, grid, args.repeats, tmp))
    print(f"({os.cpu_count()} CPUs; 4 runs a study)")


if __name__ == "__main__":
    main()
