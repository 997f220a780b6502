"""The towers' training defaults, torch-free (the recipe layer and run ids read them).

A tower loaded from local weights that trains at a from-scratch learning rate
forgets what it knew (MiniLM at 2e-3 collapsed; at 2e-4 it learned): unless a
recipe sets its ``model.*_lr_scale``, such a tower trains at
PRETRAINED_LR_SCALE x ``train.lr``. The torch side is negscale/encoders/tuning.py.
"""

from __future__ import annotations

from typing import Any

PRETRAINED_LR_SCALE = 0.1
TOWERS = ("image", "text")


def lr_scale(cfg: Any, tower: str) -> float:
    """The tower's learning-rate multiplier: as set, else 0.1 with local weights, else 1."""
    given = getattr(cfg, f"{tower}_lr_scale")
    if given is not None:
        return float(given)
    return PRETRAINED_LR_SCALE if getattr(cfg, f"{tower}_path") else 1.0
