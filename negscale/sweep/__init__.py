"""Sweeps: a grid over (m, n, seed) planned up front, run resumably, shardable.

A study is dozens to hundreds of runs that crash, get killed, or are split over
a job array, so every step is safe to repeat. One job per module:

* :mod:`~negscale.sweep.grid` — the grammar of a grid axis (``1,2,4``,
  ``2**0..2**10``, ``geom:1:1024:11``, fractions of n, ratios, shards);
* :mod:`~negscale.sweep.plan` — the grid resolved into validated recipes before
  anything runs, shards, and the dry-run document;
* :mod:`~negscale.sweep.locks` — the exclusive, heartbeating claim on a run;
* :mod:`~negscale.sweep.state` — what the files on disk say about a run;
* :mod:`~negscale.sweep.execute` — training the pending runs, each under a claim;
* :mod:`~negscale.sweep.summary` — per-cell means and sds, chance levels;
* :mod:`~negscale.sweep.plot` — the study drawn (``sweep --plot``).
"""

from negscale.sweep.execute import Listener, SilentListener, SweepStats, execute
from negscale.sweep.grid import (
    m_from_ratio,
    parse_ints,
    parse_seeds,
    parse_shard,
    parse_values,
    resolve_samples,
)
from negscale.sweep.locks import Claim, claim, lock_path, lock_state
from negscale.sweep.plan import GridSpec, Plan, make_plan, plan_document, plan_points, read_raw
from negscale.sweep.plot import plot_study
from negscale.sweep.state import plan_states, record_state, stray_files
from negscale.sweep.summary import check_metric, second_metric, study_frame, summarise
from negscale.sweep.workers import JobPlan, Workers, plan_jobs, resolve_jobs

__all__ = [
    "Claim",
    "GridSpec",
    "JobPlan",
    "Listener",
    "Plan",
    "SilentListener",
    "SweepStats",
    "Workers",
    "check_metric",
    "claim",
    "execute",
    "lock_path",
    "lock_state",
    "m_from_ratio",
    "make_plan",
    "parse_ints",
    "parse_seeds",
    "parse_shard",
    "parse_values",
    "plan_document",
    "plan_jobs",
    "plan_points",
    "plan_states",
    "plot_study",
    "read_raw",
    "record_state",
    "resolve_jobs",
    "resolve_samples",
    "second_metric",
    "stray_files",
    "study_frame",
    "summarise",
]
