"""Negative sources: how each anchor's m negatives arise, and the loss over them.

| source       | setting          | negatives of anchor i                                  |
|--------------|------------------|--------------------------------------------------------|
| batch        | self-supervised  | the other B-1 items of the batch                       |
| subsample    | self-supervised  | a shared random m-subset of the other batch items      |
| independent  | supervised       | m own i.i.d. draws (other classes when class-aware)    |
| pool         | self-supervised  | a fixed shared pool of m training items (1 <= m <= n)  |
| queue        | self-supervised  | the other B-1 items plus the last m embeddings (MoCo)  |

Each source is one module on the staged base (:mod:`.base`: draw, encode,
loss, update): a class with its :class:`~.catalog.SourceSpec` (name, setting,
summary, what m means, its recipe fields, the feasibility rule for m) and the
``@register`` decorator. The bundled specs are also listed in :mod:`.catalog`,
which is torch-free, so recipe validation reads them without importing torch;
this package therefore loads its torch-side names lazily, on first use.
:mod:`.step` runs the stages for the trainer: plainly, with gradient caching
(``train.micro_batch``), and under torchrun with a per-rank local loss.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from negscale.data.base import PairedData
    from negscale.negatives.base import NegativeSource, SourceParams
    from negscale.recipe import Recipe

_BASE = ("Batch", "Draw", "Embedded", "Keys", "NegativeSource", "StepLoss")
_LAZY = (*_BASE, "SourceParams", "positions", "step_generator", "register")


def __getattr__(name: str) -> Any:
    if name == "SOURCES":
        return sources()
    if name in _LAZY:
        return getattr(importlib.import_module("negscale.negatives.base"), name)
    if name.endswith("Source"):  # a source class by its name (BatchSource, ...)
        found = next((c for c in sources().values() if c.__name__ == name), None)
        if found is not None:
            return found
    raise AttributeError(f"module 'negscale.negatives' has no attribute {name!r}")


def sources() -> dict[str, type[NegativeSource]]:
    """Name -> source class, in the catalog's order; a bundled source's module
    (``negscale.negatives.<name>``) is imported on first use and registers itself."""
    from negscale.errors import NegscaleError
    from negscale.negatives.base import CLASSES
    from negscale.negatives.catalog import SPECS

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
    from types import SimpleNamespace

    from negscale.negatives.base import SourceParams

    neg = recipe.negatives
    return SourceParams(m=recipe.m, n=recipe.data.n, seed=recipe.train.seed,
                        batch=recipe.train.batch_size, form=neg.loss_form,
                        options=SimpleNamespace(**neg.model_dump()))  # fmt: skip


def build(recipe: Recipe, data: PairedData) -> NegativeSource:
    """The recipe's negative source, ready for the trainer."""
    return sources()[recipe.negatives.source](source_params(recipe), data)


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
