"""``sweep --adaptive``: a study in rounds that stops when the answer is pinned.

Round 0 is the coarse start of :mod:`negscale.fit.adaptive` over the recipe's
m range and n values. Each round is written to ``<results>/adaptive/round-K.json``
before it trains, and the next one is computed from the records of the rounds
before it alone, so:

* a killed adaptive sweep resumes with the same command (the round on disk
  finishes, then the next is computed as it would have been);
* shards (``--shard I/N``) compute the same round from the same records and
  each trains its share; a round waits for the previous one's records (a run
  no live process holds is trained by whichever shard finds it pending);
* the runs are ordinary records with the run ids a grid sweep gives the same
  points, so ``fit``, ``results`` and a later full sweep reuse them.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from negscale.errors import NegscaleError
from negscale.sweep.execute import Listener, SilentListener, execute
from negscale.sweep.plan import Plan, largest_m, plan_points
from negscale.sweep.state import record_state
from negscale.sweep.summary import study_frame
from negscale.sweep.workers import JobPlan, Workers, lent

POLL_S = 2.0  # seconds between looks at a round another shard is finishing


@dataclass
class Outcome:
    """What an adaptive sweep did: its rounds, why it stopped, the last fit."""

    rounds: list[dict] = field(default_factory=list)
    stop: str | None = None
    why: list[str] = field(default_factory=list)
    report: Any = None
    runs: int = 0
    trained: list[str] = field(default_factory=list)  # run ids this invocation trained

    def to_dict(self) -> dict:
        return {
            "rounds": self.rounds,
            "stop": self.stop,
            "why": self.why,
            "runs": self.runs,
            "trained": list(self.trained),
            "fit": None if self.report is None else self.report.to_dict(),
        }


def _round_path(results: Path, k: int) -> Path:
    return results / "adaptive" / f"round-{k}.json"


def _write_round(results: Path, k: int, doc: dict) -> dict:
    """Write round k once (atomically); a round already there (another shard's) wins."""
    path = _round_path(results, k)
    if path.exists():
        return json.loads(path.read_text())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    try:
        os.link(tmp, path)  # fails if another shard wrote it first
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return json.loads(path.read_text())


def _points(doc: dict) -> list[tuple[int, int, int]]:
    return [(int(r["m"]), int(r["n"]), int(r["seed"])) for r in doc["runs"]]


def _finish_round(plan: Plan, results: Path, run: Callable[[Plan, Any], Any], shard) -> None:
    """Train this shard's share, then wait for (or train) the rest of the round."""
    run(plan, shard)
    while True:
        pending = [r for r in plan.recipes if record_state(results, r.run_id()) != "done"]
        if not pending:
            return
        stats = run(plan, None)  # pending runs nobody holds are ours now
        if stats.failed:
            raise NegscaleError(
                f"adaptive round: {len(stats.failed)} run(s) failed; re-run the same command"
            )
        if stats.busy:
            time.sleep(POLL_S)


def adaptive(
    raw: dict,
    grid: Plan,
    results: Path,
    *,
    target: float,
    max_runs: int,
    metric: str,
    shard: tuple[int, int] | None = None,
    jobs: int | JobPlan = 1,
    device: str | None = None,
    report_to: str | None = None,
    listener: Listener | None = None,
    on_round: Callable[[dict], None] | None = None,
    workers: Workers | None = None,
) -> Outcome:
    """Run the study in rounds (module docstring) over the m range and n of ``grid``;
    ``workers``: the caller's pool for ``jobs`` (else one made here), for every round."""
    from negscale.fit.adaptive import next_round, start_design

    listener = listener or SilentListener()
    ms = sorted({r.m for r in grid.recipes})
    ns = sorted({r.data.n for r in grid.recipes})
    caps = {n: largest_m(raw, n) for n in ns}
    doc = _write_round(results, 0, {"round": 0, "runs": [
        {"m": m, "n": int(n), "seed": s, "reason": "coarse start"}
        for m, n, s in start_design(ms[0], ms[-1], ns)]})  # fmt: skip
    out = Outcome()
    k, done_points = 0, []
    # runs trained at once: every shard's processes (rounds are written once, first
    # writer wins, so shards with other --jobs still train the same rounds)
    slots = (shard[1] if shard else 1) * (jobs if isinstance(jobs, int) else jobs.jobs)

    def run(plan: Plan, part):
        stats = execute(plan, results, shard=part, device=device, listener=listener,
                        report_to=report_to, jobs=jobs, workers=pool)  # fmt: skip
        out.trained += stats.trained
        return stats

    # one pool for every round: each round's few runs would otherwise pay its start-up
    with lent(workers) if workers else Workers(jobs, device, report_to, listener.notice) as pool:
        while True:
            points = _points(doc)
            _finish_round(plan_points(raw, points), results, run, shard)
            done_points += points
            table = study_frame(plan_points(raw, done_points), results)
            fit_kwargs = {"metric": metric, "setting": grid.setting}
            rnd = next_round(
                table, target=target, budget_left=max_runs - len(done_points),
                cap=lambda n: caps.get(int(n)), fit_kwargs=fit_kwargs, slots=slots,
            )  # fmt: skip
            info = {"round": k, "runs": len(points), "total": len(done_points),
                    "next": [s.to_dict() for s in rnd.runs], "stop": rnd.stop, "why": rnd.why,
                    "report": rnd.report}  # fmt: skip
            out.rounds.append({key: v for key, v in info.items() if key != "report"})
            if on_round is not None:
                on_round(info)
            if rnd.stop:
                out.stop, out.why, out.report, out.runs = (
                    rnd.stop,
                    rnd.why,
                    rnd.report,
                    len(done_points),
                )
                return out
            k += 1
            doc = _write_round(results, k, {"round": k, "runs": [s.to_dict() for s in rnd.runs]})
