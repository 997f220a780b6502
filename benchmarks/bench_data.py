"""Data-path throughput and memory: shards and folder at 224 px, against bare PIL decoding.

Usage: python benchmarks/bench_data.py [--images 384] [--batch 64] [--members 1000000]
       [--repeats 3] [--parts throughput,rss,index] [--json out.json]

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
3. the shard index: CPU seconds to build the index of ``--members`` tar
   members (an image and a caption per sample, in 10 shards with img2dataset
   ``_stats.json`` files; tiny image payloads, so the shards are written in
   seconds) from cold, against a plain scan of the same shards' headers (read
   each 512-byte header, parse its size, seek over the data: the floor any
   index build pays). The two alternate, ``--repeats`` times, and the medians
   are compared (target: the build at most 2x the scan). Also the plain scan
   over an ``mmap`` (the I/O the index build uses), the wall time of the
   parallel build over all cores, and the peak RSS a cold build adds.

Everything is generated in a temporary folder and removed afterwards.
"""

from __future__ import annotations

import argparse
import io
import json
import mmap
import os
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

SIZE = 224
BLOCK = 512
ZERO = bytes(BLOCK)


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
    from negscale.config import DataConfig
    from negscale.data import build

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


def _digits(values: np.ndarray, width: int, base: int) -> np.ndarray:
    """Each value as ``width`` zero-padded ASCII digits, one row per value."""
    powers = base ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return (values[:, None] // powers % base + 48).astype(np.uint8)


def _members(ids: np.ndarray, ext: bytes, sizes: np.ndarray) -> np.ndarray:
    """Members ``{id:09d}.{ext}`` of at most 512 bytes: (n, 2, 512), a ustar header
    (what tarfile writes, checksum included) and one data block each, data zeroed."""
    head = bytearray(BLOCK)
    head[100:124] = b"0000644\x000000000\x000000000\x00"  # mode, uid, gid
    head[136:148], head[156], head[257:265] = b"14000000000\x00", ord("0"), b"ustar\x0000"
    out = np.zeros((len(ids), 2, BLOCK), dtype=np.uint8)
    out[:, 0] = np.frombuffer(bytes(head), dtype=np.uint8)
    out[:, 0, 0:9] = _digits(ids, 9, 10)
    out[:, 0, 9:13] = np.frombuffer(b"." + ext, dtype=np.uint8)
    out[:, 0, 124:135] = _digits(sizes, 11, 8)
    checksum = out[:, 0].sum(1, dtype=np.int64) + 8 * ord(" ")  # the field counts as spaces
    out[:, 0, 148:154], out[:, 0, 155] = _digits(checksum, 6, 8), ord(" ")
    return out


def write_tars(root: Path, samples: int, shards: int = 10) -> list[Path]:
    """img2dataset-like shards: ``{key}.jpg`` (40-471 bytes of filler) and ``{key}.txt``
    (``caption {key}``) per sample, plus ``{shard}_stats.json``; numpy writes the tar
    bytes directly, 20k samples at a time (tarfile would take most of a minute)."""
    root.mkdir(parents=True, exist_ok=True)
    paths, per = [], -(-samples // shards)
    for s in range(shards):
        path, first, last = root / f"{s:05d}.tar", s * per, min(samples, (s + 1) * per)
        with open(path, "wb") as f:
            for start in range(first, last, 20000):
                ids = np.arange(start, min(last, start + 20000), dtype=np.int64)
                image = _members(ids, b"jpg", 40 + ids * 7 % 432)
                image[:, 1] = np.where(np.arange(BLOCK) < 40 + ids[:, None] * 7 % 432, 255, 0)
                text = _members(ids, b"txt", np.full(len(ids), 17))
                text[:, 1, :8] = np.frombuffer(b"caption ", dtype=np.uint8)
                text[:, 1, 8:17] = _digits(ids, 9, 10)
                np.stack([image, text], axis=1).tofile(f)
            f.write(bytes(2 * BLOCK))  # the end-of-archive blocks
        stats = {"successes": last - first, "count": last - first}
        (root / f"{s:05d}_stats.json").write_text(json.dumps(stats))
        paths.append(path)
    return paths


def header_scan(path: Path) -> int:
    """The floor: read each 512-byte header, parse its size field, seek over the data."""
    count, pos = 0, 0
    with open(path, "rb") as f:
        while True:
            f.seek(pos)
            h = f.read(BLOCK)
            if len(h) < BLOCK or h == ZERO:
                return count
            size = int(h[124:136].rstrip(b"\0 ") or b"0", 8)
            pos += BLOCK + (size + 511) // BLOCK * BLOCK
            count += 1


def header_scan_mmap(path: Path) -> int:
    """The same plain scan over a memory map of the file (as the index build reads)."""
    count, pos = 0, 0
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        while True:
            h = mm[pos : pos + BLOCK]
            if len(h) < BLOCK or h == ZERO:
                return count
            size = int(h[124:136].rstrip(b"\0 ") or b"0", 8)
            pos += BLOCK + (size + 511) // BLOCK * BLOCK
            count += 1


def _drop_indexes(paths: list[Path]) -> None:
    from negscale.data.shards import _cache_file

    for path in paths:
        _cache_file(path).unlink(missing_ok=True)


def cold_build(path: Path) -> int:
    """Build one shard's index from cold (no cache file); returns its samples."""
    from negscale.data.shards import load_index

    _drop_indexes([path])
    return len(load_index(path, "caption", None)["keys"]) * 2  # members: image + caption


STEPS: dict[str, Callable[[Path], int]] = {
    "scan": header_scan,
    "scan_mmap": header_scan_mmap,
    "build": cold_build,
}


def timed_passes(paths: list[Path], repeats: int) -> dict[str, list[float]]:
    """CPU seconds of each step over all shards, ``repeats`` times. The steps alternate
    shard by shard, their order reversed every other shard, so a change in the load of
    a shared machine hits every step alike."""
    times = {name: [0.0] * repeats for name in STEPS}
    for r in range(repeats):
        counts = dict.fromkeys(STEPS, 0)
        for i, path in enumerate(paths):
            for name in list(STEPS)[:: 1 if (r + i) % 2 == 0 else -1]:
                start = time.process_time()
                counts[name] += STEPS[name](path)
                times[name][r] += time.process_time() - start
        assert len(set(counts.values())) == 1, counts  # every step saw every member
    return times


def check_index(paths: list[Path], samples: int) -> None:
    """The built index is the written data: every sample, images read back right."""
    from negscale.config import DataConfig

    cfg = DataConfig(name="shards", path=str(paths[0].parent), n=8, n_eval=8)
    from negscale.data.shards import read_shards

    images, captions, _, _ = read_shards(cfg.path, "data.path", cfg)
    assert len(images) == samples, (len(images), samples)
    for row in np.random.default_rng(0).integers(0, samples, 50).tolist():
        key = int(images.keys[row])
        assert captions[row] == f"caption {key:09d}"
        assert images._bytes(row).getvalue() == b"\xff" * (40 + key * 7 % 432)


def parallel_build(paths: list[Path]) -> tuple[float, float, int]:
    """Wall and CPU seconds (this process and its workers) of the parallel cold build."""
    from negscale.data.shards import _workers, build_indexes

    _drop_indexes(paths)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    start, cpu = time.perf_counter(), time.process_time()
    build_indexes(paths, "caption", None)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu += after.ru_utime - usage.ru_utime + after.ru_stime - usage.ru_stime
    return wall, cpu, _workers(len(paths))


def build_memory_mb(paths: list[Path]) -> dict:
    """Memory of a serial cold build in a fresh process: the peak RSS it adds after the
    imports, over the first two shards and over all (equal when memory does not grow
    with the dataset; it counts the mapped pages of the shard being scanned, page
    cache), and the heap peak (tracemalloc, numpy included) of the last shard's build."""
    _drop_indexes(paths)
    code = """
import sys, tracemalloc
from pathlib import Path
from negscale.data.shards import load_index
def kb(key):
    return int(next(x for x in open("/proc/self/status") if x.startswith(key)).split()[1])
open("/proc/self/clear_refs", "w").write("5")  # forget the peak of the imports
base, paths = kb("VmRSS"), [Path(p) for p in sys.argv[1:]]
for i, path in enumerate(paths[:-1]):
    load_index(path, "caption", None)
    first = kb("VmHWM") if i == 1 else None if i < 1 else first
every = kb("VmHWM")
tracemalloc.start()
load_index(paths[-1], "caption", None)
print((first - base) * 1024, (every - base) * 1024, tracemalloc.get_traced_memory()[1])
"""
    out = subprocess.run(
        [sys.executable, "-c", code, *map(str, paths)], capture_output=True, text=True, check=True
    )
    rss_2, rss_all, heap = (int(x) / 2**20 for x in out.stdout.split())
    return {"rss_2_shards": rss_2, "rss_all": rss_all, "heap_shard": heap}


def index_bench(members: int, repeats: int) -> dict:
    """Cold index build against the plain header scan, alternating, CPU-time medians."""
    import negscale.data.shards  # noqa: F401  (its imports, torch among them, are not timed)

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        paths = write_tars(Path(tmp), members // 2)
        written = time.perf_counter() - start
        times = timed_passes(paths, repeats)
        check_index(paths, members // 2)
        wall, cpu, workers = parallel_build(paths)
        memory = build_memory_mb(paths)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "members": members,
        "samples": members // 2,
        "write_s": round(written, 2),
        "cpu_s": {k: [round(x, 3) for x in v] for k, v in times.items()},
        "median_s": {k: round(v, 3) for k, v in med.items()},
        "ratio": round(med["build"] / med["scan"], 3),
        "ratio_mmap": round(med["build"] / med["scan_mmap"], 3),
        "parallel": {"workers": workers, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3)},
        "build_memory_mb": {k: round(v, 1) for k, v in memory.items()},
    }


def print_index(r: dict) -> None:
    print(f"\n| index of {r['members']:,} members ({r['samples']:,} samples, 10 shards) ", end="")
    print("| CPU s, median | runs |\n|---|---:|---|")
    labels = {
        "scan": "plain header scan, seek + read (the floor)",
        "scan_mmap": "plain header scan over mmap",
        "build": "cold index build (serial)",
    }
    for k, label in labels.items():
        print(f"| {label} | {r['median_s'][k]} | {r['cpu_s'][k]} |")
    print(f"cold build / header scan = {r['ratio']:.2f} (target <= 2)")
    print(f"cold build / header scan over mmap = {r['ratio_mmap']:.2f}")
    p = r["parallel"]
    print(f"parallel cold build: {p['wall_s']} s wall, {p['cpu_s']} CPU s, {p['workers']} workers")
    m = r["build_memory_mb"]
    print(f"cold build memory: peak RSS +{m['rss_2_shards']} MB after 2 shards, ", end="")
    print(f"+{m['rss_all']} MB after all (the mapped shard's pages included);")
    print(f"heap peak of one shard's build {m['heap_shard']} MB")


def throughput_part(images: int, batch: int) -> list[dict]:
    """samples/s of folder and shards sets through the loader, and of a bare PIL decode."""
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folder = make_folder(root / "folder", images + 64, images + 64)
        shards = make_shards(root / "shards", images + 64, images + 64)
        files = sorted(folder.rglob("*.jpg"))[:images]
        for kind, path in (("folder", folder), ("shards", shards)):
            pairs = build_set(kind, path, images)
            for workers in (0, 1, 2):
                rate = throughput(pairs, workers, batch, images // batch)
                rows.append({"set": kind, "workers": workers, "samples_per_s": round(rate, 1)})
        rows.append(
            {"set": "bare PIL decode", "workers": 0, "samples_per_s": round(bare_pil(files), 1)}
        )
    print(f"| set | workers | samples/s ({SIZE} px, batch {batch}, {images} images) |")
    print("|---|---:|---:|")
    for r in rows:
        print(f"| {r['set']} | {r['workers']} | {r['samples_per_s']} |")
    return rows


def rss_part() -> list[dict]:
    """Peak RSS of a 1k- and a 20k-image set of each kind."""
    rss = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for count in (1000, 20000):
            f = make_folder(root / f"f{count}", count + 64, 64)
            s = make_shards(root / f"s{count}", count + 64, 64)
            for kind, path in (("folder", f), ("shards", s)):
                mb = round(peak_rss_mb(kind, path, count), 1)
                rss.append({"set": kind, "images": count, "peak_rss_mb": mb})
    print("\n| set | images | peak RSS (MB) |\n|---|---:|---:|")
    for r in rss:
        print(f"| {r['set']} | {r['images']} | {r['peak_rss_mb']} |")
    for kind in ("folder", "shards"):
        a, b = (r["peak_rss_mb"] for r in rss if r["set"] == kind)
        print(f"{kind}: 20k / 1k peak RSS = {b / a:.3f}")
    return rss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=384, help="images in the throughput sets")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--members", type=int, default=1_000_000, help="tar members to index")
    ap.add_argument("--repeats", type=int, default=3, help="alternating index/scan timings")
    ap.add_argument("--parts", default="throughput,rss,index", help="comma-separated subset")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    out: dict = {}
    if "throughput" in parts:
        out["throughput"] = throughput_part(args.images, args.batch)
    if "rss" in parts:
        out["rss"] = rss_part()
    if "index" in parts:
        out["index"] = index_bench(args.members, args.repeats)
        print_index(out["index"])
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
