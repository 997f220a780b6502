"""Time the quickstart study end to end: `negscale sweep quickstart` into a fresh folder.

Runs the installed CLI exactly as a user would (a new process, a fresh results
folder in a temporary directory, the recipe's default grid), so the time
includes start-up, data generation, every training run, evaluation, records
and the summary. Prints one line the README quotes, then the sweep's summary
table (or, with ``--json``, one JSON document with the timing and the summary).

    python benchmarks/bench_quickstart.py [--recipe quickstart] [--fit] [--jobs J] [--json]
        [--keep DIR]

``--jobs`` is passed to the sweep (the README's command uses ``--jobs auto``).

``--keep DIR`` writes the study to DIR (which must not exist yet: the timing
needs a fresh study) so that its summary can be shown again afterwards with
``negscale sweep quickstart --results DIR``, which trains nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time


def command(recipe: str, results: str, fit: bool, jobs: str) -> list[str]:
    exe = shutil.which("negscale")
    base = [exe] if exe else [sys.executable, "-m", "negscale.cli"]
    extra = [*(["--fit"] if fit else []), "--jobs", jobs]
    return [*base, "sweep", recipe, "--results", results, "--json", *extra]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="quickstart")
    parser.add_argument("--fit", action="store_true", help="also time the fit (sweep --fit)")
    parser.add_argument("--jobs", default="auto", help="the sweep's --jobs (default: auto)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--keep", metavar="DIR", help="write the study here (must not exist)")
    args = parser.parse_args()
    if args.keep and os.path.exists(args.keep):
        sys.exit(f"--keep {args.keep}: already exists; the benchmark needs a fresh study")
    with tempfile.TemporaryDirectory(prefix="negscale-bench-") as tmp:
        cmd = command(args.recipe, args.keep or os.path.join(tmp, "results"), args.fit, args.jobs)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"negscale sweep failed ({proc.returncode}):\n{proc.stderr}")
    summary = json.loads(proc.stdout)
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    runs = summary["recorded"]
    line = (
        f"negscale sweep {args.recipe}{' --fit' if args.fit else ''} --jobs {args.jobs}: "
        f"{runs} runs in {wall:.0f} s"
        f" wall ({wall / max(runs, 1):.1f} s per run; {os.cpu_count()} CPUs,"
        f" OMP_NUM_THREADS={threads})"
    )
    if args.json:
        doc = {"recipe": args.recipe, "jobs": args.jobs, "wall_s": wall, "runs": runs,
               "cpus": os.cpu_count()}  # fmt: skip
        print(json.dumps({**doc, "omp_num_threads": threads, "summary": summary}, indent=2))
        return
    print(line)
    for cell in summary["cells"]:
        metrics = "  ".join(
            f"{k} {cell[k]['mean']:.4f} ± {cell[k]['sd'] or 0:.4f}"
            for k in summary["metrics"]
            if cell[k]["mean"] is not None
        )
        print(f"  n={cell['n']:>5} m={cell['m']:>5}  {metrics}")


if __name__ == "__main__":
    main()
