"""Negative sources: how each anchor's m negatives arise, and the loss over them.

| source       | setting          | negatives of anchor i                                  |
|--------------|------------------|--------------------------------------------------------|
| batch        | self-supervised  | the other B-1 items of the batch                       |
| subsample    | self-supervised  | a shared random m-subset of the other batch items      |
| independent  | supervised       | m own i.i.d. draws (other classes when class-aware)    |
| pool         | self-supervised  | a fixed shared pool of m training items (1 <= m <= n)  |
| queue        | self-supervised  | the other B-1 items plus the last m embeddings (MoCo)  |

Each source is one module on the staged base (:mod:`.base`: draw, encode,
loss, update) and declares itself in :mod:`.catalog`: name, setting, summary,
what m means, its recipe fields and the feasibility rule for m. The catalog
is torch-free, so recipe validation reads it without importing torch; this
package therefore loads its torch-side names lazily, on first use.
:mod:`.step` runs the stages for the trainer: plainly, with gradient caching
(``train.micro_batch``), and under torchrun with a per-rank local loss.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from negscale.data.base import PairedData
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

_BASE = ("Batch", "Draw", "Embedded", "Keys", "NegativeSource", "StepLoss")
_LAZY = dict.fromkeys((*_BASE, "positions", "step_generator"), "base")


def __getattr__(name: str) -> Any:
    if name == "SOURCES":
        return sources()
    module = _LAZY.get(name) or next((k for k, v in _CLASS_OF.items() if v == name), None)
    if module is not None:
        return getattr(importlib.import_module(f"negscale.negatives.{module}"), name)
    raise AttributeError(f"module 'negscale.negatives' has no attribute {name!r}")


_CLASS_OF = {
    "batch": "BatchSource",
    "subsample": "SubsampleSource",
    "independent": "IndependentSource",
    "pool": "PoolSource",
    "queue": "QueueSource",
}


def sources() -> dict[str, type[NegativeSource]]:
    """Name -> source class (module ``negscale.negatives.<name>``), in the catalog's order."""
    from negscale.negatives.catalog import NAMES

    return {
        name: getattr(importlib.import_module(f"negscale.negatives.{name}"), _CLASS_OF[name])
        for name in NAMES
    }


def build(recipe: Recipe, data: PairedData) -> NegativeSource:
    """The recipe's negative source, ready for the trainer."""
    from negscale.errors import NegscaleError

    classes = sources()
    name = recipe.negatives.source
    if name not in classes:
        raise NegscaleError(f"negatives.source: '{name}' is not available yet")
    return classes[name](recipe, data)


__all__ = [  # loaded lazily by __getattr__
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
    "sources",
    "step_generator",
]
