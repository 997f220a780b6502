"""Runs that differ only in their seed, trained together as one stacked model.

The bundled studies' runs are tiny (an MLP pair at B = 320): a step costs
Python and autograd overhead far more than arithmetic, so R runs stepped one
at a time cost R times that overhead. Stacked (:mod:`negscale.cohort.stacked`),
one forward, one backward and one optimiser step advance all R: the three
seeds of a quickstart cell step about 2.5x faster than one after another
(benchmarks/bench_batched_runs.py).

Each run keeps its own batches, negative draws, initial weights, log,
selection, checkpoint and record, so its record equals the one-run trainer's
to float rounding (tests/test_cohort.py) under the same run id. This module is
torch-free: a sweep groups its runs here before any worker imports torch.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from negscale.config import Recipe
from negscale.config.sources import SPECS

TINY_TOWERS = ("auto", "mlp", "cnn")  # built-in towers that torch.func.vmap batches


def stackable(recipe: Recipe) -> bool:
    """Whether the run can train stacked with others of its design.

    In-batch sources that say how (``SourceSpec.stacks``), the built-in tiny
    towers without local weights, one process, no gradient caching, no compile.
    """
    model, train = recipe.model, recipe.train
    spec = SPECS.get(recipe.negatives.source)
    return (
        spec is not None
        and spec.stacks
        and model.image_encoder in TINY_TOWERS
        and model.text_encoder in TINY_TOWERS
        and not (model.image_path or model.text_path)
        and not train.micro_batch
        and train.compile != "on"
        and int(os.environ.get("WORLD_SIZE", "1")) == 1
    )


def cohort_key(recipe: Recipe) -> str:
    """The recipe without its seed (and the loader workers, which change no batch)."""
    train = recipe.train.model_copy(update={"seed": 0})
    data = recipe.data.model_copy(update={"workers": None})
    return recipe.model_copy(update={"train": train, "data": data}).model_dump_json()


def cohorts(recipes: Sequence[Recipe], at_least: int = 1) -> list[list[Recipe]]:
    """The runs in groups that train together, in the order of their first run.

    Stackable runs of one design (all but the seed equal) form a group; every
    other run is a group of its own. Groups are split (largest first) until
    there are ``at_least`` of them, so k parallel jobs are never left idle for
    want of groups.
    """
    groups: dict[str, list[Recipe]] = {}
    for i, recipe in enumerate(recipes):
        key = cohort_key(recipe) if stackable(recipe) else f"alone {i}"
        groups.setdefault(key, []).append(recipe)
    out = list(groups.values())
    while len(out) < at_least and any(len(g) > 1 for g in out):
        big = max(range(len(out)), key=lambda i: len(out[i]))
        group = out.pop(big)
        half = len(group) // 2
        out[big:big] = [group[:half], group[half:]]
    return out
