"""sweep --adaptive: rounds computed from the records alone — deterministic, resumable
after a kill mid-round, the same for every shard, with the grid's run ids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from negscale.sweep import make_plan, read_raw
from negscale.sweep.adaptive import adaptive

from .helpers import cli, expected_ids, records_on_disk, run_concurrently, runner, set_args

GRID = ["sweep.negatives=[1,2,4,8,16,31]", "sweep.samples=[256]", "sweep.seeds=[0,1,2]"]
BUDGET = 12


def _args(tmp: Path, fast: list[str]) -> list[str]:
    return ["sweep", "quickstart", "--adaptive", "--results", str(tmp), "--max-runs",
            str(BUDGET), *set_args([*fast, *GRID])]  # fmt: skip


def _rounds(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((folder / "adaptive").glob("round-*.json"))]


@pytest.fixture
def reference(tmp_path_factory, fast) -> Path:
    """One uninterrupted adaptive study: the rounds every other run must reproduce."""
    folder = tmp_path_factory.mktemp("reference")
    res = runner.invoke(app_cli(), [*_args(folder, fast), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)["adaptive"]
    assert doc["runs"] <= BUDGET and doc["stop"] in ("pinned", "budget spent")
    assert doc["grid_runs"] == 18 and len(_rounds(folder)) == len(doc["rounds"])
    return folder


def app_cli():
    from negscale.cli import app

    return app


def test_rounds_are_deterministic_and_runs_carry_the_grid_run_ids(tmp_path, fast, reference):
    res = runner.invoke(app_cli(), [*_args(tmp_path, fast), "--json"])
    assert res.exit_code == 0, res.output
    assert _rounds(tmp_path) == _rounds(reference)
    ids = set(records_on_disk(tmp_path))
    assert ids == set(records_on_disk(reference))
    points = [(r["m"], r["n"], r["seed"]) for d in _rounds(tmp_path) for r in d["runs"]]
    want = set().union(*(expected_ids([*fast, *GRID], [m], [n], [s]) for m, n, s in points))
    assert ids == want  # the run ids a grid sweep gives the same points
    assert _rounds(tmp_path)[0]["runs"][0]["reason"] == "coarse start"


class _KillAt:
    """A listener that interrupts the study when its k-th run starts (mid-round)."""

    def __init__(self, k: int) -> None:
        self.k, self.started_runs = k, 0

    def begin(self, pending: int) -> None: ...

    def notice(self, message: str) -> None: ...

    def finished(self, recipe, record, seconds) -> None: ...

    def started(self, recipe) -> None:
        self.started_runs += 1
        if self.started_runs == self.k:
            raise KeyboardInterrupt


def test_a_study_killed_mid_round_resumes_with_the_same_command(tmp_path, fast, reference):
    overrides = [*fast, *GRID]
    raw = read_raw("quickstart", overrides)
    grid = make_plan("quickstart", overrides)
    with pytest.raises(KeyboardInterrupt):
        adaptive(raw, grid, tmp_path, target=1.0, max_runs=BUDGET, metric="auc",
                 listener=_KillAt(8))  # fmt: skip
    assert not list((tmp_path / "runs").glob("*.lock"))  # the claim went with the run
    res = runner.invoke(app_cli(), [*_args(tmp_path, fast), "--json"])
    assert res.exit_code == 0, res.output
    assert _rounds(tmp_path) == _rounds(reference)
    assert set(records_on_disk(tmp_path)) == set(records_on_disk(reference))


def test_two_shards_compute_the_same_rounds_and_share_them(tmp_path, fast, reference):
    cmds = [cli(*_args(tmp_path, fast), "--shard", f"{i}/2", "--json") for i in (1, 2)]
    docs = run_concurrently(cmds)
    assert _rounds(tmp_path) == _rounds(reference)
    assert set(records_on_disk(tmp_path)) == set(records_on_disk(reference))
    trained = [rid for d in docs for rid in d["adaptive"]["trained"]]
    assert sorted(trained) == sorted(set(trained))  # no run trained twice


def test_each_rounds_lines_count_from_one(tmp_path):
    """The per-run lines count within the batch begun: [1/3] in a round of 3, not [19/3]."""
    import io
    import re
    from types import SimpleNamespace

    from rich.console import Console

    from negscale.cli.sweep_render import SweepProgress

    buf = io.StringIO()
    progress = SweepProgress(Console(file=buf, width=200), "auc")
    recipe = SimpleNamespace(data=SimpleNamespace(n=1024), m=4, train=SimpleNamespace(seed=0))
    record = SimpleNamespace(status="ok", run_id="abc", to_row=lambda: {"auc": 0.9})
    with progress:
        for total in (2, 3):
            progress.begin(total)
            for _ in range(total):
                progress.finished(recipe, record, 1.0)
    counters = re.findall(r"\[(\d+/\d+)\] n=1024", buf.getvalue())
    assert counters == ["1/2", "2/2", "1/3", "2/3", "3/3"]


def test_every_round_trains_on_one_pool_of_workers(tmp_path, fast, reference, monkeypatch):
    """With --jobs 2 the rounds share one pool (each round's few runs would otherwise
    pay the workers' start-up again), and the rounds are still the reference's."""
    from negscale.sweep.workers import JobPlan, Workers

    real, pools = Workers._pool, []

    def counted(self, threads):
        pools.append(threads)
        return real(self, threads)

    monkeypatch.setattr(Workers, "_pool", counted)
    overrides = [*fast, *GRID]
    outcome = adaptive(read_raw("quickstart", overrides), make_plan("quickstart", overrides),
                       tmp_path, target=1.0, max_runs=BUDGET, metric="auc",
                       jobs=JobPlan(2, 1, 0, "test"))  # fmt: skip
    assert len(outcome.rounds) > 1 and pools == [1]
    assert _rounds(tmp_path) == _rounds(reference)
