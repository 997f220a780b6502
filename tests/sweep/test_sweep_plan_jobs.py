"""--jobs as a plan within the cores: runs x threads x loader workers never oversubscribe."""

from __future__ import annotations

import subprocess
import sys

import torch

from negscale.sweep.workers import JobPlan, Workers, plan_jobs


def test_auto_on_in_memory_data_is_one_run_a_core():
    p = plan_jobs("auto", "cpu", decodes=False, cores=8)
    assert (p.jobs, p.threads, p.loader_workers) == (8, 1, 0)


def test_auto_on_file_data_leaves_cores_for_decoding():
    two = plan_jobs("auto", "cpu", decodes=True, cores=2)
    assert (two.jobs, two.threads, two.loader_workers) == (1, 1, 1)  # was 2 runs x 1 worker
    sixteen = plan_jobs("auto", "cpu", decodes=True, cores=16)
    assert (sixteen.jobs, sixteen.threads, sixteen.loader_workers) == (4, 2, 2)
    for p in (two, sixteen):
        assert p.jobs * (p.threads + p.loader_workers) <= (2 if p is two else 16)
    assert "decode from files" in two.text()


def test_a_count_shares_the_cores_and_caps_the_loader_workers():
    p = plan_jobs("2", "cpu", decodes=True, cores=2)
    assert (p.jobs, p.threads, p.loader_workers) == (2, 1, 0)
    q = plan_jobs("1", "cpu", decodes=False, cores=4)
    assert (q.jobs, q.threads, q.loader_workers) == (1, 4, None)


def test_the_plan_changes_no_thread_setting_beyond_the_sweep():
    before = torch.get_num_threads()
    with Workers(JobPlan(1, before + 1, None, "test"), "cpu", None, lambda s: None):
        assert torch.get_num_threads() == before + 1
    assert torch.get_num_threads() == before


def test_no_gpu_device_node_means_no_cuda_and_no_torch_import() -> None:
    """The sweep's own process asks torch about CUDA only where a driver shows itself."""
    code = (
        "import sys\n"
        "import negscale.sweep.workers as w\n"
        "w.GPU_NODES = ('/nonexistent/nvidiactl',)\n"
        "assert w._cuda_available() is False and 'torch' not in sys.modules\n"
        "w.GPU_NODES = (sys.executable,)  # a path that exists: torch decides\n"
        "import torch\n"
        "torch.cuda.is_available = lambda: True\n"
        "assert w._cuda_available() is True\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_started_workers_spawn_before_any_run_and_serve_the_sweep() -> None:
    """``Workers.start`` spawns the pool's processes at once (they import torch while the
    sweep checks its first run); entering it later keeps that pool."""
    workers = Workers(JobPlan(2, 1, 0, "test"), "cpu", None, print).start()
    pool = workers.pool
    assert pool is not None and len(pool._processes) == 2
    with workers as entered:
        assert entered is workers and entered.pool is pool
    assert Workers(JobPlan(1, 1, 0, "test"), "cpu", None, print).start().pool is None


def test_workers_start_early_only_when_a_run_is_left_to_train(tmp_path) -> None:
    """A finished study shown again spawns no workers; a pending one on vector data does."""
    from negscale.cli.sweep import _early_workers
    from negscale.results import record_path
    from negscale.sweep import GridSpec, make_plan

    plan = make_plan("quickstart", ["data.n_eval=256"], GridSpec(negatives="2,4", seeds="0"))
    early = _early_workers(plan, "2", "cpu", None, tmp_path, None)
    assert early is not None and early.pool is not None
    early.__exit__(None, None, None)
    for r in plan.recipes:
        path = record_path(tmp_path, r.run_id())
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    assert _early_workers(plan, "2", "cpu", None, tmp_path, None) is None
    assert _early_workers(plan, "1", "cpu", None, tmp_path / "other", None) is None
