"""The grid grammar: lists, ranges, geometric grids, fractions of n, ratios, shards."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import pytest

from negscale.errors import NegscaleError
from negscale.sweep import (
    m_from_ratio,
    parse_ints,
    parse_seeds,
    parse_shard,
    parse_values,
    resolve_samples,
)


def test_lists_ranges_and_geometric_grids() -> None:
    assert parse_ints("1,2,4", "m") == [1, 2, 4]
    assert parse_ints("16, 4,4,1", "m") == [1, 4, 16]  # sorted, deduplicated
    assert parse_ints("2**0..2**10", "m") == [2**k for k in range(11)]
    assert parse_ints("3**1..3**3,1", "m") == [1, 3, 9, 27]
    assert parse_ints("2..5", "m") == [2, 3, 4, 5]
    assert parse_ints("geom:1:1024:11", "m") == [2**k for k in range(11)]
    # rounded and deduplicated: 1, 1.58, 2.51, 3.98, 6.31, 10 -> 1, 2, 3, 4, 6, 10
    assert parse_ints("geom:1:10:6", "m") == [1, 2, 3, 4, 6, 10]
    ref = sorted({round(1000 ** (i / 8)) for i in range(9)})
    assert parse_ints("geom:1:1000:9", "m") == ref
    assert parse_values("0.01,0.1,0.4,0.7,1", "r", integer=False) == [0.01, 0.1, 0.4, 0.7, 1.0]
    assert parse_values("geom:0.01:1:3", "r", integer=False) == [0.01, 0.1, 1.0]
    assert parse_seeds("0,1,2") == [0, 1, 2] and parse_seeds("0..3") == [0, 1, 2, 3]
    assert parse_shard("2/4") == (2, 4)


@pytest.mark.parametrize(
    "spec", ["", "0", "-1", "a", "1,,2", "1.5", "2**1..3**4", "geom:1:10", "geom:10:1:3", "1e400"]
)
def test_bad_grid_is_a_clear_error(spec: str) -> None:
    with pytest.raises(NegscaleError, match="--negatives"):
        parse_ints(spec, "--negatives")


@pytest.mark.parametrize("spec", ["0/4", "5/4", "1/0", "x", "1-4"])
def test_bad_shard(spec: str) -> None:
    with pytest.raises(NegscaleError, match="--shard"):
        parse_shard(spec)


def test_samples_may_be_fractions_of_the_dataset() -> None:
    assert resolve_samples([0.25, 1.0], 4096) == [1024, 4096]
    assert resolve_samples([1, 2048], 4096) == [2048, 4096]  # 1 means all of data.n
    with pytest.raises(NegscaleError, match="neither"):
        resolve_samples([1.5], 4096)
    with pytest.raises(NegscaleError, match="fewer than 2"):
        resolve_samples([0.0001], 4096)


@pytest.mark.parametrize("n", [100, 1000, 1024, 4096, 5000])
def test_ratio_gives_rounded_m_per_n(n: int) -> None:
    for ratio in (0.0001, 0.001, 0.01, 0.1, 0.4, 0.7, 1.0):
        exact = (Decimal(str(ratio)) * n).quantize(Decimal(1), rounding=ROUND_HALF_UP)
        assert m_from_ratio(ratio, n) == max(1, int(exact))
