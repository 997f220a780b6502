"""Where a sweep's runs train: in this process (``--jobs 1``) or in k worker processes.

The runs of a sweep are independent, and a CPU run of the bundled studies keeps
one core busy, so on k cores ``--jobs k`` finishes a study about k times sooner.
Python's process pool does the scheduling; negscale adds only what a run needs
in a worker: torch pinned to the worker's share of the cores (jobs do not fight
over threads), a dataset cache per worker, and the run's notices sent back with
its record. Workers are spawned, not forked: torch's thread pools and CUDA do not
survive a fork. The claims (run locks) stay with the sweep's own process.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from negscale.config import Recipe
from negscale.errors import NegscaleError
from negscale.results import RunRecord

Notice = Callable[[str], None]


@dataclass(frozen=True)
class JobPlan:
    """How a sweep shares the cores: runs at once x loader workers x torch threads."""

    jobs: int
    threads: int  # torch intra-op threads of each run
    loader_workers: int | None  # DataLoader processes of each run (None: the data's default)
    why: str
    stack: bool = True  # runs of one design apart only by seed and m train stacked (cohort)

    def text(self) -> str:
        loaders = (
            "" if self.loader_workers is None else f" x {self.loader_workers} loader worker(s)"
        )
        return f"{self.jobs} run(s) at once x {self.threads} thread(s){loaders}: {self.why}"


def plan_jobs(
    jobs: str | int, device: str | None, decodes: bool, cores: int | None = None
) -> JobPlan:
    """``--jobs`` as a plan within the cores, so runs, their loader workers and their
    threads never oversubscribe the machine (on file data, 2 runs x 1 loader worker each
    on 2 cores ran at half the speed of 1 run with its loader worker).

    * a count: that many runs, the cores shared among them, loader workers capped to
      what each run's share leaves;
    * ``auto`` on a GPU: one run, its loader workers on the cores;
    * ``auto`` on CPU, data in memory: one run a core, one thread each, no loader workers;
    * ``auto`` on CPU, data decoded from files: each run takes 4 cores (all of them below
      8), half for its compute threads, half for its loader workers that decode.
    """
    cores = cores or _cores()
    count = resolve_jobs(jobs, device)
    if str(jobs) != "auto":
        share = max(1, cores // count)
        loaders = min(4, max(0, share - 1)) if decodes else None
        return JobPlan(count, share, loaders, "as asked")
    if count == 1 and not _on_cpu(device):
        return JobPlan(1, cores, min(4, max(0, cores - 1)) if decodes else None, "one GPU run")
    if not decodes:
        return JobPlan(cores, 1, 0, "the data are in memory: one run a core")
    jobs_n = max(1, cores // 4) if cores >= 8 else 1
    share = cores // jobs_n
    threads = max(1, share // 2)
    return JobPlan(jobs_n, threads, max(0, share - threads), "the data decode from files")


def _cores() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)


def _on_cpu(device: str | None) -> bool:
    return device == "cpu" or (device in (None, "auto") and not _cuda_available())


def resolve_jobs(jobs: str | int, device: str | None) -> int:
    """``--jobs``: a count, or ``auto`` (every core on CPU, one process per GPU machine)."""
    if isinstance(jobs, int) or str(jobs).isdigit():
        count = int(jobs)
        if count < 1:
            raise NegscaleError(f"--jobs: expected auto or a count >= 1, got {jobs}")
        return count
    if str(jobs) != "auto":
        raise NegscaleError(f"--jobs: expected auto or a count >= 1, got {jobs!r}")
    if device == "cuda" or (device in (None, "auto") and _cuda_available()):
        return 1
    return _cores()


# device nodes of the drivers CUDA (or ROCm's HIP) runs on: NVIDIA, Jetson, ROCm, WSL
GPU_NODES = ("/dev/nvidiactl", "/dev/nvidia0", "/proc/driver/nvidia", "/dev/nvhost-ctrl-gpu",
             "/dev/kfd", "/dev/dxg")  # fmt: skip


def _cuda_available() -> bool:
    """torch's answer, asked only where a GPU driver shows itself.

    Importing torch takes 2 s, and without such a device node CUDA cannot be
    available; there ``--jobs auto`` is resolved without torch, so the sweep
    spawns its workers before its own process imports torch to check the
    first run (the two imports overlap).
    """
    if not any(os.path.exists(node) for node in GPU_NODES):
        return False
    import torch

    return torch.cuda.is_available()


class DataCache:
    """The last built dataset, reused while the data config is equal: all m and seeds of one n."""

    def __init__(self) -> None:
        self.key: str | None = None
        self.data: Any = None

    def get(self, recipe: Recipe) -> Any:
        from negscale import data as datasets

        # the towers pick the tokenizer and image statistics, so they are part of the key
        key = recipe.data.model_dump_json() + recipe.model.model_dump_json()
        if key != self.key:
            self.key, self.data = None, None  # free the old one before building the next
            self.data, self.key = datasets.build(recipe.data, recipe.model), key
        return self.data


_WORKER_CACHE = DataCache()  # a worker process's own cache


def _start_worker(threads: int) -> None:
    """A worker's set-up: its share of the cores, and the user's plugins registered."""
    atexit.register(_exit_now)  # before torch's handlers: it runs after them
    import torch

    from negscale.plugins import load_plugins

    torch.set_num_threads(threads)
    load_plugins()


def _exit_now() -> None:
    """A worker's last step: the pool has every result (written whole before it was
    sent), and ``multiprocessing`` has ended the worker's own children, so the
    interpreter's teardown of torch and the rest (about 0.4 s, on the cores the
    sweep's fit is using) is skipped."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _ready() -> None:
    """A task that only makes the pool spawn its worker (see :meth:`Workers.start`)."""


@dataclass(frozen=True)
class Failed:
    """A run that raised: what the sweep reports (picklable, unlike some exceptions)."""

    kind: str
    message: str


def _alone(recipe: Recipe, results: str, device: str | None, report_to: str | None, data: Any,
           notice: Notice) -> RunRecord | Failed:  # fmt: skip
    from negscale.train import run

    try:
        return run(recipe, results, device=device, progress=False, data=data, notice=notice,
                   report_to=report_to)  # fmt: skip
    except NegscaleError:
        raise
    except Exception as exc:  # reported by the sweep; Ctrl-C and exits go through
        return Failed(type(exc).__name__, str(exc))


def _train(
    recipes: list[Recipe],
    results: str,
    device: str | None,
    report_to: str | None,
    data: Any,
    notice: Notice,
) -> list[RunRecord | Failed]:
    """One run as ``train.run`` trains it, or runs apart only by seed and m stacked.

    A stack that fails trains its runs again one at a time, so one bad run
    does not take its stack-mates with it.
    """
    if len(recipes) > 1:
        from negscale.cohort.run import run_together

        try:
            return list(run_together(recipes, results, device=device, data=data, notice=notice,
                                     report_to=report_to))  # fmt: skip
        except NegscaleError:
            raise
        except Exception as exc:
            notice(f"a stack of {len(recipes)} runs failed ({type(exc).__name__}: {exc}); "
                   "training them one at a time")  # fmt: skip
    return [_alone(r, results, device, report_to, data, notice) for r in recipes]


def _check_in_worker(recipe: Recipe, device: str | None) -> None:
    from negscale.train import check_run

    check_run(recipe, _WORKER_CACHE.get(recipe), device)


def _train_in_worker(
    recipes: list[Recipe], results: str, device: str | None, report_to: str | None
) -> tuple[list[RunRecord | Failed], list[str]]:
    notices: list[str] = []
    data = _WORKER_CACHE.get(recipes[0])
    records = _train(recipes, results, device, report_to, data, notices.append)
    return records, notices


class Workers:
    """Trains submitted runs in this process (jobs = 1) or in a pool of ``jobs`` processes."""

    def __init__(
        self, jobs: int | JobPlan, device: str | None, report_to: str | None, notice: Notice
    ):
        plan = jobs if isinstance(jobs, JobPlan) else None
        jobs = plan.jobs if plan is not None else int(jobs)
        if jobs > 1 and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise NegscaleError("--jobs: under torchrun the ranks train one run together; use 1")
        self.plan = plan
        self.jobs, self.device, self.report_to, self.notice = jobs, device, report_to, notice
        self.cache = DataCache()
        self.pool: ProcessPoolExecutor | None = None
        self._threads_before: int | None = None

    def start(self) -> Workers:
        """Spawn the worker processes now: they import torch (2 s) while this process
        goes on (the sweep checks its first run meanwhile). Needs a :class:`JobPlan`."""
        if self.plan is not None and self.jobs > 1 and self.pool is None:
            self.pool = self._pool(self.plan.threads)
            for _ in range(self.jobs):  # a pool spawns a process per task it cannot place
                self.pool.submit(_ready)
        return self

    def check(self, recipe: Recipe) -> None:
        """The checks a run would fail on only after its header (device, towers), made
        in a worker of a started pool: its data stay in that worker's cache for its
        runs, and this process need not import torch (its 2 s of CPU would be taken
        from the workers' own start-up). Raises what the check raises."""
        if self.pool is None:
            raise RuntimeError("Workers.check needs a started pool")
        self.pool.submit(_check_in_worker, recipe, self.device).result()

    def __enter__(self) -> Workers:
        if self.pool is not None:  # started early
            return self
        if self.plan is not None and self.jobs > 1:  # torch is the workers' to import
            self.pool = self._pool(self.plan.threads)
            return self
        import torch

        threads = self.plan.threads if self.plan else max(1, torch.get_num_threads() // self.jobs)
        if self.jobs > 1:
            self.pool = self._pool(threads)
        elif self.plan is not None and threads != torch.get_num_threads():
            self._threads_before = torch.get_num_threads()  # restored on exit
            torch.set_num_threads(threads)  # the sweep's own process trains the runs
        return self

    def _pool(self, threads: int) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            self.jobs,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(threads,),
        )

    def _planned(self, recipe: Recipe) -> Recipe:
        """The recipe with the plan's loader workers, unless the recipe sets its own
        (``data.workers`` is not part of the run id: batches do not depend on it)."""
        want = self.plan.loader_workers if self.plan else None
        if want is None or recipe.data.workers is not None:
            return recipe
        return recipe.model_copy(update={"data": recipe.data.model_copy(update={"workers": want})})

    def __exit__(self, kind: object, *exc: object) -> None:
        if self.pool is not None:  # all done: the workers' 1 s of teardown overlaps the summary
            self.pool.shutdown(wait=kind is not None, cancel_futures=True)
        if self._threads_before is not None:
            import torch

            torch.set_num_threads(self._threads_before)

    def submit(self, recipes: list[Recipe], results: Path) -> Future:
        """Start a group of runs (one, or seeds stacked together: :mod:`negscale.cohort`);
        in this process they have ended by the time the future returns."""
        recipes = [self._planned(r) for r in recipes]
        if self.pool is not None:
            return self.pool.submit(
                _train_in_worker, recipes, str(results), self.device, self.report_to
            )
        future: Future = Future()
        try:
            data = self.cache.get(recipes[0])
            records = _train(recipes, str(results), self.device, self.report_to, data,
                             self.notice)  # fmt: skip
        except Exception as exc:  # user errors (and a failed data build) end the sweep
            future.set_exception(exc)
        else:
            future.set_result((records, []))
        return future

    def result(self, future: Future) -> list[RunRecord | Failed]:
        """Each run's record or failure (raising a user error), the notices passed on."""
        records, notices = future.result()
        for message in notices:
            self.notice(message)
        return records


@contextlib.contextmanager
def lent(pool: Workers) -> Iterator[Workers]:
    """A caller's pool for one sweep: entered if it was not, left running for the
    caller's next sweep (an adaptive study's next round), stopped here only when
    the sweep fails, so that no claim is released under a run still training."""
    pool.__enter__()
    try:
        yield pool
    except BaseException as exc:
        pool.__exit__(type(exc), exc, exc.__traceback__)
        raise
