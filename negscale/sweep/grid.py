"""The grid grammar: the values a sweep axis may be given as, parsed into sorted numbers.

``1,2,4`` (a list), ``2**0..2**10`` (powers), ``2..5`` (integers),
``geom:1:1024:11`` (a geometric grid), seeds ``0..4``, n as fractions of
``data.n``, m as ratios of n, and shards ``I/N``. Every bad value is one
:class:`NegscaleError` naming the flag.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from negscale.errors import NegscaleError

_NUMBER = re.compile(r"^(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_POWER = re.compile(r"^(\d+)\*\*(\d+)$")


def _number(text: str, what: str) -> float:
    """One value: a decimal (``0.25``, ``1e3``) or a power (``2**10``)."""
    t = text.strip()
    power = _POWER.match(t)
    if power:
        return float(int(power[1]) ** int(power[2]))
    if not _NUMBER.match(t):
        raise NegscaleError(f"{what}: {text.strip()!r} is not a positive number or B**E")
    return float(t)


def _range(text: str, what: str) -> list[float]:
    """``B**a..B**b`` gives the powers B^a..B^b; ``a..b`` the integers a..b."""
    lo_text, hi_text = (s.strip() for s in text.split("..", 1))
    lo_pow, hi_pow = _POWER.match(lo_text), _POWER.match(hi_text)
    if lo_pow and hi_pow:
        if lo_pow[1] != hi_pow[1]:
            raise NegscaleError(f"{what}: range {text!r} mixes bases {lo_pow[1]} and {hi_pow[1]}")
        base, lo, hi = int(lo_pow[1]), int(lo_pow[2]), int(hi_pow[2])
        return [float(base**e) for e in range(lo, hi + 1)]
    lo_v, hi_v = _number(lo_text, what), _number(hi_text, what)
    if lo_v != int(lo_v) or hi_v != int(hi_v):
        raise NegscaleError(f"{what}: range {text!r} needs integer ends or B**a..B**b")
    return [float(v) for v in range(int(lo_v), int(hi_v) + 1)]


def _geom(text: str, what: str, integer: bool) -> list[float]:
    parts = text.split(":")
    if len(parts) != 4:
        raise NegscaleError(f"{what}: expected geom:START:STOP:COUNT, got {text!r}")
    lo, hi = _number(parts[1], what), _number(parts[2], what)
    try:
        count = int(parts[3])
    except ValueError:
        raise NegscaleError(f"{what}: geom COUNT must be an integer, got {parts[3]!r}") from None
    if lo <= 0 or hi < lo or count < 1:
        raise NegscaleError(f"{what}: geom needs 0 < START <= STOP and COUNT >= 1, got {text!r}")
    if count == 1:
        return [lo]
    step = (hi / lo) ** (1 / (count - 1))
    values = [lo * step**i for i in range(count)]
    values[-1] = hi
    # Integer grids are rounded (then deduplicated by the caller); float grids
    # keep 6 significant digits so 0.1 does not print as 0.10000000000000002.
    return [float(round(v)) if integer else float(f"{v:.6g}") for v in values]


def parse_values(text: str, what: str, *, integer: bool) -> list[float]:
    """Parse a grid axis: ``1,2,4``, ``2**0..2**10``, ``geom:1:1024:11`` (or a mix of the
    first two, comma separated). Returns sorted, deduplicated positive values."""
    spec = text.strip()
    if not spec:
        raise NegscaleError(f"{what}: empty list")
    if spec.startswith("geom:"):
        values = _geom(spec, what, integer)
    else:
        values = []
        for item in spec.split(","):
            if not item.strip():
                raise NegscaleError(f"{what}: empty item in {text!r}")
            values += _range(item, what) if ".." in item else [_number(item, what)]
    for v in values:
        if not math.isfinite(v) or v <= 0:
            raise NegscaleError(f"{what}: values must be positive, got {v:g}")
        if integer and v != int(v):
            raise NegscaleError(f"{what}: expected integers, got {v:g}")
    return sorted(set(values))


def parse_ints(text: str, what: str) -> list[int]:
    return [int(v) for v in parse_values(text, what, integer=True)]


def parse_seeds(text: str) -> list[int]:
    """Seeds may be 0, which the positive-value grammar forbids: a plain list or a..b range."""
    out: set[int] = set()
    for item in text.split(","):
        t = item.strip()
        lo, _, hi = t.partition("..")
        try:
            out.update(range(int(lo), int(hi) + 1) if hi else [int(t)])
        except ValueError:
            raise NegscaleError(
                f"--seeds: expected integers like 0,1,2 or 0..4, got {text!r}"
            ) from None
    if not out:
        raise NegscaleError("--seeds: empty list")
    return sorted(out)


def resolve_samples(values: Sequence[float], data_n: int) -> list[int]:
    """n values: a value <= 1 is a fraction of the recipe's ``data.n`` (``1`` = all of it)."""
    ns = set()
    for v in values:
        if v <= 1:
            n = math.floor(v * data_n + 0.5)
            if n < 2:
                raise NegscaleError(f"--samples: {v:g} of data.n = {data_n} is fewer than 2 pairs")
        elif v != int(v):
            raise NegscaleError(f"--samples: {v:g} is neither a fraction <= 1 nor an integer")
        else:
            n = int(v)
        ns.add(n)
    return sorted(ns)


def m_from_ratio(ratio: float, n: int) -> int:
    """The paper's design: m = round(ratio * n), at least 1 (half rounds up)."""
    return max(1, math.floor(ratio * n + 0.5))


def parse_shard(text: str) -> tuple[int, int]:
    """``I/N`` with shards numbered 1..N (Slurm: ``--array=1-N``)."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match:
        raise NegscaleError(f"--shard: expected I/N (e.g. 1/4), got {text!r}")
    i, n = int(match[1]), int(match[2])
    if n < 1 or not 1 <= i <= n:
        raise NegscaleError(f"--shard: shards are numbered 1..N, got {text!r}")
    return i, n
