"""Negative sources: how each anchor's m negatives arise, and the loss over them.

| source       | setting          | negatives of anchor i                                  |
|--------------|------------------|--------------------------------------------------------|
| batch        | self-supervised  | the other B-1 items of the batch                       |
| subsample    | self-supervised  | a shared random m-subset of the other batch items      |
| independent  | supervised       | m own i.i.d. draws (other classes when class-aware)    |
| pool         | self-supervised  | a fixed shared pool of m training items (1 <= m <= n)  |
| queue        | self-supervised  | the other B-1 items plus the last m embeddings (MoCo)  |

Each source is one module on the staged base (:mod:`.base`: draw, encode,
loss, update): a class with its :class:`~negscale.config.sources.SourceSpec`
(name, setting, summary, what m means, its recipe fields, the feasibility rule
for m) and the ``@register`` decorator. The specs themselves live in the
torch-free config layer (:mod:`negscale.config.sources`), so recipes validate
without importing torch; a bundled source's module is imported the first time
:func:`sources` is asked. :mod:`.step` runs the stages for the trainer:
plainly, with gradient caching (``train.micro_batch``), and under torchrun
with a per-rank local loss.
"""

from __future__ import annotations

import importlib
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from negscale.config.sources import SPECS
from negscale.errors import NegscaleError
from negscale.negatives.base import (
    CLASSES,
    Batch,
    Draw,
    Embedded,
    Keys,
    NegativeSource,
    SourceParams,
    StepLoss,
    positions,
    register,
    step_generator,
)

if TYPE_CHECKING:
    from negscale.config import Recipe
    from negscale.data.base import PairedData


def __getattr__(name: str) -> Any:
    """``SOURCES`` and a source class by its name (``PoolSource``), loading the sources."""
    if name == "SOURCES":
        return sources()
    if name.endswith("Source"):
        found = next((c for c in sources().values() if c.__name__ == name), None)
        if found is not None:
            return found
    raise AttributeError(f"module 'negscale.negatives' has no attribute {name!r}")


def sources() -> dict[str, type[NegativeSource]]:
    """Name -> source class, in the catalog's order; a bundled source's module
    (``negscale.negatives.<name>``) is imported on first use and registers itself."""
    for name in SPECS:
        if name not in CLASSES:
            try:
                importlib.import_module(f"negscale.negatives.{name}")
            except ModuleNotFoundError:
                raise NegscaleError(
                    f"negatives.source: '{name}' has a spec but no registered class"
                ) from None
    return {name: CLASSES[name] for name in SPECS}


def source_params(recipe: Recipe) -> SourceParams:
    """The plain values a source is built from (the recipe stops here)."""
    neg = recipe.negatives
    return SourceParams(m=recipe.m, n=recipe.data.n, seed=recipe.train.seed,
                        batch=recipe.train.batch_size, form=neg.loss_form,
                        options=SimpleNamespace(chunk=neg.chunk, tile=neg.tile,
                                                **neg.options.model_dump()))  # fmt: skip


def build(recipe: Recipe, data: PairedData) -> NegativeSource:
    """The recipe's negative source, ready for the trainer."""
    return sources()[recipe.negatives.source](source_params(recipe), data)


__all__ = [  # SOURCES and the *Source classes: loaded by __getattr__
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
    "SourceParams",
    "StepLoss",
    "SubsampleSource",
    "build",
    "positions",
    "register",
    "source_params",
    "sources",
    "step_generator",
]
