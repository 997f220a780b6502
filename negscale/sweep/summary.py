"""The study summary: per (n, m) cell, each metric's mean and sd over the seeds that ran ok."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from negscale.config import Recipe
from negscale.errors import NegscaleError
from negscale.results import RunRecord, load, record_path
from negscale.sweep.plan import Plan

_COST_COLUMNS = {"epochs", "tau", "wall_s", "train_s", "samples_per_s", "peak_mem_mb",
                 "loss_gflops", "negatives_used"}  # fmt: skip


def second_metric(recipe: Recipe) -> str:
    """The summary's second column: zero-shot accuracy where captions are class templates
    (recall@1 is at chance there: every image of a class has the same captions), recall@1
    where captions are distinct."""
    data = recipe.data
    if hasattr(data, "templates") and getattr(data, "views", "pair") == "pair":
        return "zeroshot_top1"
    return "recall_at_1"


def check_metric(metric: str) -> None:
    """The summary metric must be a numeric outcome column of the run records."""
    numeric = [f.name for f in fields(RunRecord) if "float" in str(f.type)]
    outcomes = [n for n in numeric if n not in _COST_COLUMNS]
    if metric not in outcomes:
        raise NegscaleError(f"--metric: expected one of {', '.join(outcomes)}, got {metric!r}")


def _mean_sd(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"mean": None, "sd": None}
    mean = sum(values) / len(values)
    if len(values) < 2:
        return {"mean": mean, "sd": None}
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return {"mean": mean, "sd": math.sqrt(var)}


def study_frame(plan: Plan, results: str | Path) -> Any:
    """The valid records of the planned runs as one DataFrame (what --fit reads).

    Each file is read once; an unreadable one is left out silently, as a pending
    run (the next sweep redoes it).
    """
    files = [record_path(results, rid) for rid in plan.run_ids]
    return load([f for f in files if f.exists()], notice=lambda message: None)


def summarise(
    plan: Plan,
    results: str | Path,
    metrics: Sequence[str] = ("auc", "recall_at_1"),
    frame: Any = None,
) -> dict[str, Any]:
    """Per run and per (n, m) cell: each metric's mean and sd over the seeds that finished ok
    (``frame``: the study's records when the caller has read them, for its fit too)."""
    frame = study_frame(plan, results) if frame is None else frame
    rows = {row["run_id"]: row for row in frame.to_dict("records")}
    runs, cells = [], {}
    for r in plan.recipes:
        rid = r.run_id()
        row = rows.get(rid)
        status = "pending" if row is None else str(row["status"])
        values = {k: (row or {}).get(k) for k in metrics}
        runs.append({"run_id": rid, "m": r.m, "n": r.data.n, "seed": r.train.seed,
                     "status": status, **values})  # fmt: skip
        cell = cells.setdefault((r.data.n, r.m), {"planned": 0, "ok": 0, "diverged": 0,
                                                  "collapsed": 0,
                                                  "values": {k: [] for k in metrics}})  # fmt: skip
        cell["planned"] += 1
        if status == "ok":
            cell["ok"] += 1
            for k in metrics:
                v = values[k]
                if v is not None and math.isfinite(float(v)):
                    cell["values"][k].append(float(v))
        elif status in ("diverged", "collapsed"):
            cell[status] += 1
    cell_rows = [
        {
            "n": n,
            "m": m,
            "ratio": m / n,
            "planned": c["planned"],
            "ok": c["ok"],
            "diverged": c["diverged"],
            "collapsed": c["collapsed"],
            **{k: _mean_sd(c["values"][k]) for k in metrics},
        }
        for (n, m), c in sorted(cells.items())
    ]
    done = sum(1 for r in runs if r["status"] != "pending")
    return {
        "study": plan.name,
        "setting": plan.setting,
        "results": str(results),
        "metrics": list(metrics),
        "planned": len(runs),
        "recorded": done,
        "chance": _chance(frame, metrics),
        "cells": cell_rows,
        "runs": runs,
    }


def _chance(frame: Any, metrics: Sequence[str]) -> dict[str, float | None]:
    """Each metric's chance level on the study's held-out data (None before any record)."""
    from negscale.chance import chance_levels

    rows = [r for r in frame.to_dict("records") if r.get("n_eval")]
    if not rows:
        return {k: None for k in metrics}
    classes = rows[0].get("num_classes")
    classes = None if classes is None or classes != classes else int(classes)
    levels = chance_levels(int(rows[0]["n_eval"]), classes)
    return {k: levels.get(k) for k in metrics}
