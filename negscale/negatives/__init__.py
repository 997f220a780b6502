"""Negative sources: how each anchor's m negatives arise, and the loss over them.

| source       | setting          | negatives of anchor i                                  |
|--------------|------------------|--------------------------------------------------------|
| batch        | self-supervised  | the other B-1 items of the batch                       |
| subsample    | self-supervised  | a shared random m-subset of the other batch items      |
| independent  | supervised       | m own i.i.d. draws (other classes when class-aware)    |
| pool         | self-supervised  | a fixed shared pool of m training items (1 <= m <= n)  |
| queue        | self-supervised  | the other B-1 items plus the last m embeddings (MoCo)  |

Each source is one module on the staged base (:mod:`.base`: draw, encode,
loss, update) and declares itself in :mod:`.catalog` (torch-free, read by
recipe validation). :mod:`.step` runs the stages for the trainer: plainly,
with gradient caching (``train.micro_batch``), and under torchrun with a
per-rank local loss.
"""

from __future__ import annotations

from negscale.data.base import PairedData
from negscale.errors import NegscaleError
from negscale.negatives.base import (
    Batch,
    Draw,
    Embedded,
    Keys,
    NegativeSource,
    StepLoss,
    positions,
    step_generator,
)
from negscale.negatives.batch import BatchSource
from negscale.negatives.independent import IndependentSource
from negscale.negatives.pool import PoolSource
from negscale.negatives.queue import QueueSource
from negscale.negatives.subsample import SubsampleSource
from negscale.recipe import Recipe

SOURCES: dict[str, type[NegativeSource]] = {
    cls.name: cls
    for cls in (BatchSource, SubsampleSource, IndependentSource, PoolSource, QueueSource)
}


def build(recipe: Recipe, data: PairedData) -> NegativeSource:
    name = recipe.negatives.source
    if name not in SOURCES:
        raise NegscaleError(f"negatives.source: '{name}' is not available yet")
    return SOURCES[name](recipe, data)


__all__ = [
    "SOURCES",
    "Batch",
    "BatchSource",
    "Draw",
    "Embedded",
    "IndependentSource",
    "Keys",
    "NegativeSource",
    "PoolSource",
    "QueueSource",
    "StepLoss",
    "SubsampleSource",
    "build",
    "positions",
    "step_generator",
]
