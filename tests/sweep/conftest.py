"""Fixtures of the sweep tests: small studies built on conftest's TINY recipe."""

from __future__ import annotations

import pytest

from .helpers import FAST


@pytest.fixture
def tiny(tiny_overrides) -> list[str]:
    """conftest's TINY (n = 512, B = 64) with in-batch negatives (m <= B-1 = 63) and an
    empty [sweep] grid (n = data.n, seed 0), whatever the bundled quickstart sets."""
    grid = ["sweep.ratios=[]", "sweep.negatives=[]", "sweep.samples=[]", "sweep.seeds=[0]"]
    return [*tiny_overrides, "negatives.source='subsample'", *grid]


@pytest.fixture
def fast(tiny) -> list[str]:
    return [*tiny, *FAST]
