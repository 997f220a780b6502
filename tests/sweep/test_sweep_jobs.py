"""--jobs: runs trained in worker processes give the records a one-process sweep gives."""

from __future__ import annotations

import os

import pytest

from negscale.cli import app
from negscale.errors import NegscaleError
from negscale.sweep import GridSpec, execute, make_plan, resolve_jobs
from negscale.sweep.execute import longest_first

from .helpers import expected_ids, leftovers, records_on_disk, runner, set_args

OUTCOMES = ("auc", "recall_at_1", "val_loss", "train_loss", "mean_rank", "selected_step")


def test_two_workers_record_what_one_process_records(tmp_path, fast) -> None:
    sets = [*fast, "train.select=best"]
    plan = make_plan("quickstart", sets, GridSpec(negatives="1,4,8", seeds="0,1"))
    one = execute(plan, tmp_path / "one", device="cpu")
    args = ["sweep", "quickstart", "-m", "1,4,8", "--seeds", "0,1", "--jobs", "2"]
    res = runner.invoke(app, [*args, "--results", str(tmp_path / "two"), *set_args(sets)])
    assert res.exit_code == 0, res.output
    assert "2 at once" in res.stderr
    a, b = records_on_disk(tmp_path / "one"), records_on_disk(tmp_path / "two")
    assert set(a) == set(b) == set(one.trained) == expected_ids(sets, [1, 4, 8], [256], [0, 1])
    for rid in a:  # worker processes pin torch to 1 thread here, as the tests do
        # two jobs cut the stack of six runs in two: equal to float rounding
        assert a[rid]["selected_step"] == b[rid]["selected_step"]
        for key in OUTCOMES[:-1]:
            assert a[rid][key] == pytest.approx(b[rid][key], abs=2e-6), key
    assert leftovers(tmp_path / "two") == []


def test_several_at_once_start_the_longest_runs_first_ties_in_plan_order(tiny) -> None:
    sets = [*tiny, "train.batch_size=32", "train.epochs=2"]  # steps = 2 n / 32: 16 and 64
    plan = make_plan("quickstart", sets, GridSpec(negatives="1,8", samples="256,1024", seeds="0,1"))
    assert [r.train.steps for r in plan.recipes] == [16] * 4 + [64] * 4
    got = [(r.data.n, r.m, r.train.seed) for r in longest_first(list(plan.recipes))]
    want = [(1024, 8, 0), (1024, 8, 1), (1024, 1, 0), (1024, 1, 1),
            (256, 8, 0), (256, 8, 1), (256, 1, 0), (256, 1, 1)]  # fmt: skip
    assert got == want


def test_jobs_counts_and_auto() -> None:
    assert resolve_jobs("3", "cpu") == 3 and resolve_jobs(2, None) == 2
    assert resolve_jobs("auto", "cpu") == len(os.sched_getaffinity(0))
    assert resolve_jobs("auto", "cuda") == 1
    for bad in ("0", "-1", "many"):
        with pytest.raises(NegscaleError, match="--jobs"):
            resolve_jobs(bad, "cpu")


def test_a_bad_jobs_value_is_a_one_line_error_and_writes_nothing(tmp_path, fast) -> None:
    args = ["sweep", "quickstart", "--jobs", "0", "--results", str(tmp_path / "r")]
    res = runner.invoke(app, [*args, *set_args(fast)])
    assert res.exit_code == 2
    assert "--jobs" in res.stderr and "Traceback" not in res.output
    assert not (tmp_path / "r").exists()


class _Timings:
    """A listener keeping what finished() reports."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, float]] = []

    def begin(self, pending: int) -> None: ...

    def notice(self, message: str) -> None: ...

    def started(self, recipe) -> None: ...

    def finished(self, recipe, record, seconds: float) -> None:
        self.seen.append((seconds, record.wall_s))


@pytest.mark.parametrize("jobs", [1, 2])
def test_each_run_is_reported_with_its_own_duration(tmp_path, fast, jobs: int) -> None:
    plan = make_plan("quickstart", fast, GridSpec(negatives="1,4"))
    timings = _Timings()
    execute(plan, tmp_path, device="cpu", listener=timings, jobs=jobs)
    assert len(timings.seen) == 2
    for seconds, wall in timings.seen:  # the listener's time covers the run's own wall time
        assert seconds >= 0.9 * wall > 0


def test_no_stack_trains_each_run_alone_to_the_stacked_records(tmp_path, fast) -> None:
    """--no-stack (every run on its own) against the default stacked sweep."""
    plan = make_plan("quickstart", fast, GridSpec(negatives="1,4", seeds="0,1"))
    stacked = execute(plan, tmp_path / "stacked", device="cpu")
    args = ["sweep", "quickstart", "-m", "1,4", "--seeds", "0,1", "--no-stack"]
    res = runner.invoke(app, [*args, "--results", str(tmp_path / "alone"), *set_args(fast)])
    assert res.exit_code == 0, res.output
    a, b = records_on_disk(tmp_path / "stacked"), records_on_disk(tmp_path / "alone")
    assert set(a) == set(b) == set(stacked.trained)
    for rid in a:
        assert a[rid]["selected_step"] == b[rid]["selected_step"]
        for key in ("auc", "recall_at_1", "val_loss", "train_loss"):
            assert a[rid][key] == pytest.approx(b[rid][key], abs=2e-6), key


BLOCK_TORCH = """import sys
class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this process")
sys.meta_path.insert(0, _NoTorch())
"""  # the sweep's own process only: spawned workers start without this


def test_with_workers_on_vector_data_the_sweeps_own_process_never_imports_torch(
    tmp_path, fast
) -> None:
    """The workers import torch (2 s of CPU each); the sweep's process plans, checks the
    first run through a worker, collects records, summarises and fits without it, so
    it takes no CPU from their start-up. Torch blocked in this process: it still works."""
    import json
    import subprocess
    import sys

    from .helpers import ENV

    args = ["sweep", "quickstart", "-m", "1,2,4,8,16", "--seeds", "0,1", "--jobs", "2", "--fit",
            "--json", "--results", str(tmp_path), *set_args(fast)]  # fmt: skip
    code = (BLOCK_TORCH + "from negscale.cli import app\n"
            f"sys.argv = ['negscale', *{args!r}]\napp()\n")  # fmt: skip
    res = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True,
                         text=True, timeout=240)  # fmt: skip
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["recorded"] == 10 and doc["fit"] is not None, doc.get("fit_warning")
    assert "--jobs" in res.stderr or "2 at once" in res.stderr


def test_a_bad_tower_checked_in_a_worker_is_still_one_line_and_writes_nothing(
    tmp_path, fast
) -> None:
    args = ["sweep", "quickstart", "-m", "1,8", "--jobs", "2", "--results", str(tmp_path / "r"),
            *set_args([*fast, "model.image_encoder='timm:no_such_net'"])]  # fmt: skip
    res = runner.invoke(app, args)
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and len(res.stderr.strip().splitlines()) == 1
    assert "no_such_net" in res.stderr
    assert not list(tmp_path.rglob("*.parquet")) and not list(tmp_path.rglob("*.lock"))


class _Teardown:
    """Writes ``path`` when the interpreter tears its modules down (``__del__``)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __del__(self) -> None:
        with open(self.path, "w") as f:
            f.write("torn down")


def _keep_till_teardown(path: str) -> int:
    import sys

    sys.modules["negscale"]._teardown_probe = _Teardown(path)  # type: ignore[attr-defined]
    return os.getpid()


def test_a_worker_skips_the_interpreters_teardown_and_exits_with_0(tmp_path) -> None:
    """A worker ends without Python's module teardown (some 0.5 s of torch's, on the cores
    the sweep's fit uses): an object kept till then is never collected, and each worker
    still exits with code 0 once the pool shuts down."""
    from negscale.sweep.workers import JobPlan, Workers

    plan = JobPlan(jobs=2, threads=1, loader_workers=None, why="test")
    pool = Workers(plan, None, None, lambda message: None).start().pool
    assert pool is not None
    probes = [str(tmp_path / f"probe{i}") for i in range(2)]
    pids = {pool.submit(_keep_till_teardown, p).result() for p in probes}
    assert os.getpid() not in pids
    procs = list(pool._processes.values())
    pool.shutdown(wait=True)
    for p in procs:
        p.join(10)
    assert [p.exitcode for p in procs] == [0, 0]
    assert not any(os.path.exists(p) for p in probes)
