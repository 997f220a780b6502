"""Time the quickstart study end to end, where its time goes, and two floors beside it.

Runs the installed CLI exactly as a user would (a new process, a fresh results
folder in a temporary directory, the recipe's default grid), so the time
includes start-up, data generation, every training run, evaluation, records
and the summary. Prints one line the README quotes, then:

* the **breakdown**, from the records' cost columns: training steps
  (``train_s``), selection's validation evaluations (``select_s``), the step-0
  and final evaluations (``eval_s``), the rest of each run (building the model
  and source, the checkpoint, the history write: ``wall_s`` minus those), and
  what lies outside the runs (process start-up, data generation, records,
  idle workers at the end: processes x wall minus the runs' ``wall_s``); with
  ``--fit``, the fit, timed as its own ``negscale fit`` call;
* two **floors** measured in the same run (``quickstart_floors.py``): a tight
  hand-written loop of the same model, batches and loss at every (n, m) of the
  study, alternated with negscale's own step, and the study's arithmetic
  (training, and the evaluations its recipe asks for) at this machine's
  measured sgemm rate. ``--no-floors`` skips them.

    python benchmarks/bench_quickstart.py [--recipe quickstart] [--fit] [--jobs J] [--json]
        [--keep DIR] [--no-floors] [--floor-steps K] [--baseline REV] [--repeats R]

``--baseline REV`` also times the same study with an earlier commit of negscale
(exported with ``git archive`` into a temporary folder and put first on
``PYTHONPATH``, so it runs on the same machine, interpreter and packages),
alternating the two R times, and reports the median walls, their ratio and
whether each n's answer of this study (fitted by today's ``negscale fit``) lies
inside the interval the baseline's study gives.

``--repeats R`` times this tree's study R times (alternated with the baseline's
when there is one) and the floors' ratios use the median wall; the breakdown
is the first study's. Every study of both sides runs with the same ``--fit``.

``--jobs`` is passed to the sweep (the README's command uses ``--jobs auto``).

``--keep DIR`` writes the study to DIR (which must not exist yet: the timing
needs a fresh study) so that its summary can be shown again afterwards with
``negscale sweep quickstart --results DIR``, which trains nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any


def command(recipe: str, results: str, fit: bool, jobs: str, source: str | None = None) -> list:
    """The sweep as a user types it; with ``source`` (a tree on PYTHONPATH), that tree's."""
    exe = None if source else shutil.which("negscale")
    base = [exe] if exe else [sys.executable, "-m", "negscale"]
    extra = [*(["--fit"] if fit else []), "--jobs", jobs]
    return [*base, "sweep", recipe, "--results", results, "--json", *extra]


def processes(jobs: str, stderr: str) -> tuple[int, int | None]:
    """(runs at once, torch threads of each): ``--jobs N``, or what ``--jobs auto`` chose."""
    found = re.search(r"--jobs auto: (\d+) run\(s\) at once x (\d+) thread", stderr)
    if found:
        return int(found.group(1)), int(found.group(2))
    return (1 if jobs == "auto" else int(jobs)), None


def breakdown(records: Any, wall: float, procs: int, fit_s: float | None) -> dict[str, float]:
    """Seconds of the study's processes by part (they sum to processes x wall)."""
    parts = {
        "training steps": float(records["train_s"].sum()),
        "selection evaluations": float(records["select_s"].sum()),
        "final evaluations": float(records["eval_s"].sum()),
    }
    inside = float(records["wall_s"].sum())
    parts["rest of a run (build, checkpoint, history)"] = inside - sum(parts.values())
    parts["outside runs (start-up, data, records, idle)"] = procs * wall - inside
    if fit_s is not None:
        parts["fit (its own call, part of the above)"] = fit_s
    return parts


def floors(recipe: str, records: Any, procs: int, steps: int) -> dict[str, Any]:
    """The hand-loop and arithmetic floors of the recorded study, in study wall seconds."""
    import quickstart_floors as qf

    cells = sorted({(int(n), int(m)) for n, m in zip(records["n"], records["m"], strict=True)})
    rows = qf.step_times(recipe, cells, steps)
    per_cell = {(r["n"], r["m"]): r for r in rows}
    runs = list(zip(records["n"], records["m"], records["steps"], strict=True))

    def total(key: str) -> float:
        return sum(int(s) * per_cell[(int(n), int(m))][key] / 1e3 for n, m, s in runs)

    hand, ours = total("hand_ms"), total("negscale_ms")
    train = float(((records["encoder_gflops"] + records["loss_gflops"]) * records["steps"]).sum())
    evals = qf.evaluation_gflop(records)
    rate = qf.sgemm_gflops()
    return {
        "cells": rows,
        "negscale_steps_s": ours / procs,
        "hand_loop_s": hand / procs,
        "training_gflop": train,
        "evaluation_gflop": evals,
        "arithmetic_gflop": train + evals,
        "sgemm_gflops": rate,
        "training_arithmetic_s": train / rate / procs,
        "arithmetic_s": (train + evals) / rate / procs,
    }


def fit_json(results: str) -> tuple[float, dict[str, Any]]:
    """Seconds of ``negscale fit RESULTS --json`` and its document."""
    exe = shutil.which("negscale")
    base = [exe] if exe else [sys.executable, "-m", "negscale"]
    t0 = time.perf_counter()
    proc = subprocess.run([*base, "fit", results, "--json"], capture_output=True, check=True)
    return time.perf_counter() - t0, json.loads(proc.stdout)


def export_tree(rev: str, into: str) -> str:
    """The source tree of commit ``rev`` of this repository, written under ``into``."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    tree = os.path.join(into, f"negscale-{rev}")
    os.makedirs(tree)
    archive = subprocess.run(["git", "-C", repo, "archive", rev], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", tree], input=archive.stdout, check=True)
    return tree


def run_study(cmd: list[str], source: str | None) -> tuple[float, subprocess.CompletedProcess]:
    env = dict(os.environ)
    if source:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [source, env.get("PYTHONPATH")]))
    t0 = time.perf_counter()
    # in the tree's own folder: ``python -m`` puts the working folder first on sys.path
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=source)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"negscale sweep failed ({proc.returncode}):\n{proc.stderr}")
    return wall, proc


Answers = dict[int, dict[str, Any]]


def answers(fit: dict[str, Any]) -> Answers:
    return {int(g["n"]): g["answer"] for g in fit["groups"]}


def inside(ours: Answers, base: Answers) -> list[dict[str, Any]]:
    """Per n: this study's m_sat against the baseline study's interval (both fitted today)."""
    rows = []
    for n in sorted(base):
        lo, hi = base[n]["ci"]
        m = ours.get(n, {}).get("m_sat")
        ok = m is not None and lo <= m <= (hi if hi is not None else float("inf"))
        rows.append({"n": n, "m_sat": m, "baseline_m_sat": base[n]["m_sat"],
                     "baseline_ci": [lo, hi], "inside": bool(ok)})  # fmt: skip
    return rows


def compare(args: argparse.Namespace, tmp: str, ours_wall: float, ours_fit: dict) -> dict[str, Any]:
    """Time the baseline commit's study alternately with this tree's, and compare answers."""
    tree = export_tree(args.baseline, tmp)
    walls: dict[str, list[float]] = {"baseline": [], "this": [ours_wall]}
    base_fit: dict[str, Any] = {}
    for r in range(args.repeats):
        out = os.path.join(tmp, f"baseline-{r}")
        wall, _ = run_study(command(args.recipe, out, args.fit, args.jobs, tree), tree)
        walls["baseline"].append(wall)
        if r == 0:
            base_fit = fit_json(out)[1]
        if r + 1 < args.repeats:  # alternate: this tree again between the baseline's runs
            again = os.path.join(tmp, f"this-{r + 1}")
            cmd = command(args.recipe, again, args.fit, args.jobs)
            walls["this"].append(run_study(cmd, None)[0])
    med = {k: statistics.median(v) for k, v in walls.items()}
    return {"rev": args.baseline, "walls_s": walls, "median_s": med,
            "speedup": med["baseline"] / med["this"],
            "answers": inside(answers(ours_fit), answers(base_fit))}  # fmt: skip


def report(doc: dict[str, Any], line: str) -> None:
    print(line)
    total = doc["processes"] * doc["wall_s"]
    print(f"  where the time goes ({doc['processes']} process(es) x {doc['wall_s']:.0f} s):")
    for part, sec in doc["breakdown"].items():
        print(f"    {part:<47} {sec:7.1f} s  {100 * sec / total:5.1f} %")
    walls = doc.get("walls_s") or [doc["wall_s"]]
    if len(walls) > 1:
        listed = ", ".join(f"{w:.1f}" for w in walls)
        median = doc["wall_median_s"]
        print(f"  {len(walls)} studies of this tree: {listed} s; median {median:.1f} s"
              " (the floors' ratios below use it)")  # fmt: skip
    fl = doc.get("floors")
    if fl:
        wall = doc.get("wall_median_s", doc["wall_s"])
        print(f"  floors (study wall seconds on these processes, measured in this run,"
              f" {fl['threads']} thread(s) each):")  # fmt: skip
        own = fl["negscale_steps_s"]
        print(f"    negscale's own steps, timed alone               {own:7.1f} s")
        print(f"    hand-written loop, same model/batches/loss      {fl['hand_loop_s']:7.1f} s"
              f"  (study {wall / fl['hand_loop_s']:.2f}x)")  # fmt: skip
        print(f"    arithmetic: {fl['arithmetic_gflop']:.0f} GFLOP at "
              f"{fl['sgemm_gflops']:.0f} GFLOP/s sgemm          {fl['arithmetic_s']:7.1f} s"
              f"  (study {wall / fl['arithmetic_s']:.1f}x)")  # fmt: skip
        print(f"      of which training {fl['training_gflop']:.0f} GFLOP"
              f" ({fl['training_arithmetic_s']:.1f} s: study"
              f" {wall / fl['training_arithmetic_s']:.1f}x), evaluations"
              f" {fl['evaluation_gflop']:.0f}")  # fmt: skip
    base = doc.get("baseline")
    if base:
        med = base["median_s"]
        print(f"  against {base['rev']} (same machine, alternated, medians of"
              f" {len(base['walls_s']['baseline'])}): {med['baseline']:.0f} s vs"
              f" {med['this']:.0f} s, {base['speedup']:.2f}x faster")  # fmt: skip
        for row in base["answers"]:
            lo, hi = row["baseline_ci"]
            m = row["m_sat"]
            m_text = "-" if m is None else f"{m:.0f}"
            hi_text = "open" if hi is None else f"{hi:.0f}"
            print(f"    n={row['n']:>5}: m_sat {m_text} (baseline's interval [{lo:.0f}, {hi_text}])"
                  f" {'inside' if row['inside'] else 'OUTSIDE'}")  # fmt: skip
    for cell in doc["summary"]["cells"]:
        metrics = "  ".join(
            f"{k} {cell[k]['mean']:.4f} ± {cell[k]['sd'] or 0:.4f}"
            for k in doc["summary"]["metrics"]
            if cell[k]["mean"] is not None
        )
        print(f"  n={cell['n']:>5} m={cell['m']:>5}  {metrics}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="quickstart")
    parser.add_argument("--fit", action="store_true", help="also time the fit (sweep --fit)")
    parser.add_argument("--jobs", default="auto", help="the sweep's --jobs (default: auto)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--keep", metavar="DIR", help="write the study to DIR (must not exist)")
    parser.add_argument("--no-floors", action="store_true", help="skip the two floors")
    parser.add_argument("--floor-steps", type=int, default=40, help="steps timed per (n, m)")
    parser.add_argument("--baseline", metavar="REV", help="also time commit REV's negscale")
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="studies of this tree (and of REV with --baseline, alternated)",
    )
    args = parser.parse_args()
    if args.keep and os.path.exists(args.keep):
        sys.exit(f"--keep {args.keep}: already exists; the benchmark needs a fresh study")
    import negscale.results

    with tempfile.TemporaryDirectory(prefix="negscale-bench-") as tmp:
        results = args.keep or os.path.join(tmp, "results")
        wall, proc = run_study(command(args.recipe, results, args.fit, args.jobs), None)
        records = negscale.results.load(results)
        procs, threads_each = processes(args.jobs, proc.stderr)
        fit_s, fitted = fit_json(results) if (args.fit or args.baseline) else (None, {})
        baseline = compare(args, tmp, wall, fitted) if args.baseline else None
        walls = baseline["walls_s"]["this"] if baseline else [wall]
        for r in range(len(walls), args.repeats):  # without a baseline: this tree again
            again = os.path.join(tmp, f"this-{r}")
            walls.append(run_study(command(args.recipe, again, args.fit, args.jobs), None)[0])
    summary = json.loads(proc.stdout)
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    runs = summary["recorded"]
    doc: dict[str, Any] = {"recipe": args.recipe, "jobs": args.jobs, "processes": procs,
                           "wall_s": wall, "walls_s": walls, "wall_median_s":
                           statistics.median(walls), "runs": runs, "cpus": os.cpu_count(),
                           "omp_num_threads": threads}  # fmt: skip
    doc["breakdown"] = breakdown(records, wall, procs, fit_s if args.fit else None)
    if baseline:
        doc["baseline"] = baseline
    if not args.no_floors:  # timed at the threads each of the study's processes had
        import torch

        torch.set_num_threads(threads_each or torch.get_num_threads())
        doc["floors"] = floors(args.recipe, records, procs, args.floor_steps)
        doc["floors"]["threads"] = torch.get_num_threads()
    doc["summary"] = summary
    if args.json:
        print(json.dumps(doc, indent=2))
        return
    line = (
        f"negscale sweep {args.recipe}{' --fit' if args.fit else ''} --jobs {args.jobs}: "
        f"{runs} runs in {wall:.0f} s wall ({wall / max(runs, 1):.1f} s per run; "
        f"{os.cpu_count()} CPUs, OMP_NUM_THREADS={threads})"
    )
    report(doc, line)


if __name__ == "__main__":
    main()
