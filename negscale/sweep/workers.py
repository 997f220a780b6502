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

import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

from negscale.errors import NegscaleError
from negscale.recipe import Recipe
from negscale.results import RunRecord

Notice = Callable[[str], None]


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
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)


def _cuda_available() -> bool:
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


def _pin_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _train_in_worker(
    recipe: Recipe, results: str, device: str | None, report_to: str | None
) -> tuple[RunRecord, list[str]]:
    from negscale.train import run

    notices: list[str] = []
    record = run(recipe, results, device=device, progress=False,
                 data=_WORKER_CACHE.get(recipe), notice=notices.append,
                 report_to=report_to)  # fmt: skip
    return record, notices


class Workers:
    """Trains submitted runs in this process (jobs = 1) or in a pool of ``jobs`` processes."""

    def __init__(self, jobs: int, device: str | None, report_to: str | None, notice: Notice):
        if jobs > 1 and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise NegscaleError("--jobs: under torchrun the ranks train one run together; use 1")
        self.jobs, self.device, self.report_to, self.notice = jobs, device, report_to, notice
        self.cache = DataCache()
        self.pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> Workers:
        if self.jobs > 1:
            import torch

            threads = max(1, torch.get_num_threads() // self.jobs)
            self.pool = ProcessPoolExecutor(
                self.jobs,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_pin_threads,
                initargs=(threads,),
            )
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def submit(self, recipe: Recipe, results: Path) -> Future:
        """Start a run; in this process it has ended by the time the future returns."""
        if self.pool is not None:
            return self.pool.submit(
                _train_in_worker, recipe, str(results), self.device, self.report_to
            )
        from negscale.train import run

        future: Future = Future()
        try:
            record = run(recipe, results, device=self.device, progress=False,
                         data=self.cache.get(recipe), notice=self.notice,
                         report_to=self.report_to)  # fmt: skip
        except Exception as exc:  # reported by the sweep; Ctrl-C and exits go through
            future.set_exception(exc)
        else:
            future.set_result((record, []))
        return future

    def result(self, future: Future) -> RunRecord:
        """The run's record (raising what the run raised), its worker's notices passed on."""
        record, notices = future.result()
        for message in notices:
            self.notice(message)
        return record
