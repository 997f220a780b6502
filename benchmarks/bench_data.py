"""Data-path throughput and memory: shards and folder at 224 px, against bare PIL decoding.

Usage: python benchmarks/bench_data.py [--images 384] [--batch 64] [--json out.json]

1. samples/s of fetch + decode + transform (timm's training transform at
   224 px, through the DataLoader with 0, 1 and 2 workers) for a ``folder``
   and a ``shards`` set of the same JPEG files, and, in the same run, a bare
   loop that only PIL-decodes those files (``Image.open(...).convert("RGB")``):
   the ceiling a decoder-bound pipeline can reach on this machine.
2. peak RSS of a process that builds a 1k-image and a 20k-image set and
   fetches 4 batches: a lazy set holds per item only where the image is, so
   the two peaks should agree within 10 %. (The 20k-image sets repeat a few
   real files under distinct names, hard links for folder, so generating
   them stays cheap; every item is still indexed.)

Everything is generated in a temporary folder and removed afterwards.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

SIZE = 224


def _jpeg(i: int, side: int = 256) -> bytes:
    """A smooth random-colour JPEG (a few kB), distinct for every i."""
    from PIL import Image

    rng = np.random.default_rng(i)
    small = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    im = Image.fromarray(small).resize((side + i % 17, side), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def make_folder(root: Path, count: int, distinct: int) -> Path:
    """``root/c<k>/<i>.jpg``: ``distinct`` real files, the rest hard links to them."""
    classes = 10
    for k in range(classes):
        (root / f"c{k}").mkdir(parents=True, exist_ok=True)
    originals: list[Path] = []
    for i in range(count):
        path = root / f"c{i % classes}" / f"{i:06d}.jpg"
        if i < distinct:
            path.write_bytes(_jpeg(i))
            originals.append(path)
        else:
            os.link(originals[i % distinct], path)
    return root


def make_shards(root: Path, count: int, distinct: int, shards: int = 2) -> Path:
    """img2dataset-style tars of the same kind of images, with .txt captions."""
    root.mkdir(parents=True, exist_ok=True)
    blobs = [_jpeg(i) for i in range(distinct)]
    per = -(-count // shards)
    for s in range(shards):
        with tarfile.open(root / f"{s:05d}.tar", "w") as tar:
            for i in range(s * per, min(count, (s + 1) * per)):
                for name, data in (
                    (f"{i:08d}.jpg", blobs[i % distinct]),
                    (f"{i:08d}.txt", f"a photo of thing {i % 10}".encode()),
                ):
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    return root


def build_set(kind: str, path: Path, n: int):
    from negscale.data import build
    from negscale.recipe import DataConfig

    cfg = DataConfig(name=kind, path=str(path), n=n, n_eval=64, image_size=SIZE)
    return build(cfg).train


def throughput(pairs, workers: int, batch: int, steps: int) -> float:
    from negscale.data import loader
    from negscale.train import batch_indices

    n = len(pairs)
    sampler = loader.StepSampler(lambda s: batch_indices(n, batch, 0, s), 0, steps)
    it = loader.batches(pairs, sampler, seed=0, workers=workers, pin=False)
    next(it)  # start-up (worker launch, first batch) is not throughput
    start = time.perf_counter()
    done = sum(1 for _ in it)
    return done * batch / (time.perf_counter() - start)


def bare_pil(paths: list[Path]) -> float:
    from PIL import Image

    start = time.perf_counter()
    for p in paths:
        with Image.open(p) as im:
            im.convert("RGB")
    return len(paths) / (time.perf_counter() - start)


def peak_rss_mb(kind: str, path: Path, n: int) -> float:
    """Peak RSS of a fresh process that builds the set and fetches 4 batches."""
    code = (
        "import resource, sys, torch; sys.path.insert(0, sys.argv[4]);"
        "from bench_data import build_set; from pathlib import Path;"
        "s = build_set(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]));"
        "[s.fetch(torch.arange(64 * i, 64 * i + 64)) for i in range(4)];"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    here = str(Path(__file__).parent)
    out = subprocess.run(
        [sys.executable, "-c", code, kind, str(path), str(n), here],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=384, help="images in the throughput sets")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    steps = args.images // args.batch
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folder = make_folder(root / "folder", args.images + 64, args.images + 64)
        shards = make_shards(root / "shards", args.images + 64, args.images + 64)
        files = sorted(folder.rglob("*.jpg"))[: args.images]
        for kind, path in (("folder", folder), ("shards", shards)):
            pairs = build_set(kind, path, args.images)
            for workers in (0, 1, 2):
                rate = throughput(pairs, workers, args.batch, steps)
                rows.append({"set": kind, "workers": workers, "samples_per_s": round(rate, 1)})
        rows.append(
            {"set": "bare PIL decode", "workers": 0, "samples_per_s": round(bare_pil(files), 1)}
        )
        rss = []
        for count in (1000, 20000):
            f = make_folder(root / f"f{count}", count + 64, 64)
            s = make_shards(root / f"s{count}", count + 64, 64)
            for kind, path in (("folder", f), ("shards", s)):
                rss.append(
                    {
                        "set": kind,
                        "images": count,
                        "peak_rss_mb": round(peak_rss_mb(kind, path, count), 1),
                    }
                )
    print(f"| set | workers | samples/s ({SIZE} px, batch {args.batch}, {args.images} images) |")
    print("|---|---:|---:|")
    for r in rows:
        print(f"| {r['set']} | {r['workers']} | {r['samples_per_s']} |")
    print("\n| set | images | peak RSS (MB) |\n|---|---:|---:|")
    for r in rss:
        print(f"| {r['set']} | {r['images']} | {r['peak_rss_mb']} |")
    for kind in ("folder", "shards"):
        a, b = (r["peak_rss_mb"] for r in rss if r["set"] == kind)
        print(f"{kind}: 20k / 1k peak RSS = {b / a:.3f}")
    if args.json:
        args.json.write_text(json.dumps({"throughput": rows, "rss": rss}, indent=2))


if __name__ == "__main__":
    main()
