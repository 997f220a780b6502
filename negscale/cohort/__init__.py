"""Runs that differ only in their seed and m, trained together as one stacked model.

The bundled studies' runs are tiny (an MLP pair at B = 320): a step costs
Python and autograd overhead far more than arithmetic, so R runs stepped one
at a time cost R times that overhead. Stacked (:mod:`negscale.cohort.stacked`),
one forward, one backward and one optimiser step advance all R: the 21 runs
of a quickstart n train about 2x faster than one after another
(benchmarks/bench_batched_runs.py).

Each run keeps its own batches, negative draws, initial weights, log,
selection, checkpoint and record, so its record equals the one-run trainer's
to float rounding (tests/test_cohort.py) under the same run id. This module is
torch-free: a sweep groups its runs here before any worker imports torch.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

from negscale.config import Recipe
from negscale.config.sources import SPECS


def mlp_towers(recipe: Recipe) -> bool:
    """Both towers are the built-in MLP (named, or ``auto`` on vector data).

    Why MLPs only: stacked CNN towers (vmap turns their convolutions into
    grouped ones) round differently from one run's, and over a few hundred
    steps that difference grew to 1 % of the train loss on digits-simclr, no
    longer float rounding; they also stepped no faster (39 s vs 41 s a study).
    """
    model = recipe.model
    vectors = recipe.data.vectors()
    return not (model.image_path or model.text_path) and all(
        name == "mlp" or (name == "auto" and vectors)
        for name in (model.image_encoder, model.text_encoder)
    )


def stackable(recipe: Recipe) -> bool:
    """Whether the run can train stacked with others of its design.

    In-batch sources that say how (``SourceSpec.stacks``), the built-in MLP
    towers, one process, no gradient caching, no compile, not bf16 (a batched
    bf16 matmul rounds unlike one run's: on CPU that moved AUC by 1e-4 and the
    selected step by a step or two within 24 steps, more than float rounding;
    ``auto`` precision on a GPU is checked again on the built runtime).
    """
    train = recipe.train
    spec = SPECS.get(recipe.negatives.source)
    return (
        spec is not None
        and spec.stacks
        and mlp_towers(recipe)
        and not train.micro_batch
        and train.compile != "on"
        and train.precision != "bf16"
        and int(os.environ.get("WORLD_SIZE", "1")) == 1
    )


MAX_STACK = 32  # runs in one stack (a quickstart n has 21)


def cohort_key(recipe: Recipe) -> str:
    """The recipe without its seed and m (and the loader workers, which change no batch).

    Runs of one design at other m differ only in their table of batch columns
    (``subsample``'s m + 1, ``batch``'s B): the stack takes one loss call per width.
    """
    train = recipe.train.model_copy(update={"seed": 0})
    data = recipe.data.model_copy(update={"workers": None})
    negatives = recipe.negatives.model_copy(update={"m": None, "source": "stacked"})
    update = {"train": train, "data": data, "negatives": negatives}
    return recipe.model_copy(update=update).model_dump_json()


COLUMN_COST = 1 / 800  # a loss column against a run-step's other work (quickstart, 2 cores)
SELECTION_STEPS = 100  # a run's ~50 validation evaluations, in steps (quickstart, 2 cores)


def _work(recipe: Recipe) -> float:
    """A run's relative cost, in items stepped: its steps, each a little dearer per loss
    column, and its validation evaluations, which do not depend on its steps.

    A quickstart run at m = 319 took about 1.4x one at m = 1 (a row of 320
    columns against 2); a run at n = 1024 (128 steps, 50 evaluations) took as long as
    about 230 steps (measured: 0.28 s against 2.5 s for 2048 steps). Balancing lanes on
    steps alone left one job idle for the last 6-12 % of the study.
    """
    train = recipe.train
    columns = recipe.m + 1
    selection = SELECTION_STEPS if train.select == "best" else 0
    return train.batch_size * (train.steps * (1 + COLUMN_COST * columns) + selection)


def cohorts(recipes: Sequence[Recipe], jobs: int = 1) -> list[list[Recipe]]:
    """The runs in groups that train together, in the order of their first run.

    Stackable runs of one design (all but the seed and m equal) form a group;
    every other run is a group of its own. No group exceeds ``MAX_STACK`` runs,
    and with ``jobs`` > 1 the runs are dealt into ``jobs`` lanes of equal work in
    order (:func:`_work`), a group cut where a lane fills: the jobs then finish together (the
    quickstart's n = 16384 runs are 3/4 of its work) with stacks as large as
    that allows. Consecutive runs stay together (in a sweep's order, the same
    m side by side: one loss call for them).
    """
    groups: dict[str, list[Recipe]] = {}
    for i, recipe in enumerate(recipes):
        key = cohort_key(recipe) if stackable(recipe) else f"alone {i}"
        groups.setdefault(key, []).append(recipe)
    lane = sum(_work(r) for r in recipes) / jobs if jobs > 1 else math.inf
    out, filled = [], 0.0
    for group in groups.values():
        chunk: list[Recipe] = []
        for recipe in group:
            work = _work(recipe)
            next_lane = filled + work / 2 > lane  # the run lies more in the next lane
            if chunk and (len(chunk) >= MAX_STACK or next_lane):
                out.append(chunk)
                chunk = []
            if next_lane:
                filled -= lane
            chunk.append(recipe)
            filled += work
        out.append(chunk)
    return out
