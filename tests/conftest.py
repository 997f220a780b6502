"""Test setup: one OpenMP thread (the CI machine has 2 shared cores) and small recipes."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
import torch

torch.set_num_threads(1)

# A recipe small enough for unit tests: a few seconds per run on one core.
TINY = [
    "data.n=512",
    "data.n_eval=256",
    "train.batch_size=64",
    "train.steps=40",
    "model.hidden=32",
    "model.embed_dim=16",
    "eval.prototypes=256",
]


@pytest.fixture
def tiny_overrides() -> list[str]:
    return list(TINY)
