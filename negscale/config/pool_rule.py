"""How a pool run spends its step, without torch: exact or estimator, and the mini-batch.

Both defaults follow the batch size B, so a pool step costs at most about one
and a half batch encodings at any m:

* ``negatives.pool_exact_max`` unset: a pool of at most B // 2 items is encoded
  whole every step (the exact loss; encoding it costs at most half a batch);
* ``negatives.pool_batch`` unset: the estimator's mini-batch is every pool
  member the batch already holds (encoded anyway), topped up to B // 2 items
  from the rest of the pool (at most half a batch of extra encoding). At
  m = n that is the batch itself.

A number given for either field means what it always meant: exact up to that
m; a mini-batch of exactly min(k, m) items, the batch's own members first.

Before negscale 0.2 (run_id version 1) the defaults were exact up to m = 1024
and a mini-batch of exactly B, which cost up to 2.4x (exact, m = 1024) and
1.55x (estimator) the m = 16 step at B = 320. :func:`v1_hashed` keeps every
run whose computation the new defaults do not change at its version-1 id.
"""

from __future__ import annotations

from typing import Any

V1_EXACT_MAX = 1024  # the version-1 default of negatives.pool_exact_max
AUTO_BATCH = "batch members + top-up to B//2"  # hashed for a changed estimator mini-batch


def half_batch(batch: int) -> int:
    """B // 2, at least 1: the default exact limit and estimator mini-batch floor."""
    return max(1, batch // 2)


def exact_max(value: int | None, batch: int) -> int:
    """The largest pool encoded whole (``negatives.pool_exact_max``; None: B // 2)."""
    return half_batch(batch) if value is None else value


def minibatch_floor(value: int | None, batch: int, m: int) -> int:
    """Least estimator mini-batch: ``pool_batch`` (exactly that many), else B // 2, at most m."""
    return min(half_batch(batch) if value is None else value, m)


def v1_hashed(flat: dict[str, Any]) -> dict[str, Any]:
    """The hashed values of the two pool fields, version-1 compatible.

    An unset field hashes as version 1's default wherever the new default
    computes the same thing: every source but ``pool``; a pool that is exact,
    or an estimator, under both limits; an estimator with m <= B // 2 (its
    mini-batch is the whole pool either way) or m = n (the batch either way).
    Elsewhere it hashes the new meaning, so the run gets a new id. A number
    given hashes as itself, as in version 1.
    """
    exact_value = flat.get("negatives.pool_exact_max")
    batch_value = flat.get("negatives.pool_batch")
    out = {"negatives.pool_exact_max": exact_value, "negatives.pool_batch": batch_value}
    if exact_value is None:
        out["negatives.pool_exact_max"] = V1_EXACT_MAX
    if flat.get("negatives.source") != "pool":
        return out
    m, batch = int(flat["negatives.m"]), int(flat["train.batch_size"])
    exact_now = m <= exact_max(exact_value, batch)
    if exact_value is None and exact_now != (m <= V1_EXACT_MAX):
        out["negatives.pool_exact_max"] = exact_max(None, batch)
    if batch_value is None and not exact_now and half_batch(batch) < m < int(flat["data.n"]):
        out["negatives.pool_batch"] = AUTO_BATCH
    return out
