"""What each negative source declares about itself, without torch.

Recipe validation (``negscale.config``) must stay importable without torch, so
the facts a recipe needs about a source live here: its name, setting, one-line
summary, what m means, the ``negatives.*`` fields it reads, and the rule that
says whether it can supply m negatives for a batch B and n training pairs. The
torch-side classes (``negscale.negatives.<source>``) point at their spec, so a
bundled source is one spec here plus one module there; a source defined
elsewhere (a plugin, a test) calls :func:`register_spec` and
``negscale.negatives.register`` from its own module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from negscale.registry import Registry

# m (None when not set), batch size, training pairs -> why m is infeasible, or None
Rule = Callable[[int | None, int, int], str | None]


@dataclass(frozen=True)
class SourceSpec:
    """One source's declaration: what a recipe may ask of it."""

    name: str
    setting: str  # self-supervised | supervised
    summary: str  # one line for `negscale list negatives`
    m_means: str  # what negatives.m counts for this source
    fields: tuple[str, ...]  # the negatives.* fields (besides source, m, loss_form) it reads
    rule: Rule
    in_batch: bool = False  # m is fixed by the batch (B - 1) and need not be given

    def check(self, m: int | None, batch: int, n: int) -> str | None:
        """One-line reason (after ``negatives.m: ``) why m is infeasible, or None."""
        if m is None and not self.in_batch:
            return f"required for source '{self.name}'"
        return self.rule(m, batch, n)

    def resolve_m(self, m: int | None, batch: int) -> int:
        """Negatives per anchor the recipe asks for (in-batch sources: B - 1)."""
        if self.in_batch:
            return batch - 1
        assert m is not None  # check() rejected it otherwise
        return m


def _batch_rule(m: int | None, batch: int, n: int) -> str | None:
    if m is not None and m != batch - 1:
        return (
            f"source 'batch' gives m = batch_size - 1 = {batch - 1}, not {m};"
            " use source 'subsample' for fewer or 'independent'/'pool' for more"
        )
    return None


def _subsample_rule(m: int | None, batch: int, n: int) -> str | None:
    if m is not None and m > batch - 1:
        return f"subsample draws from the other {batch - 1} items of the batch, got {m}"
    return None


def _independent_rule(m: int | None, batch: int, n: int) -> str | None:
    if m is not None and m > n - 1:
        return f"at most data.n - 1 = {n - 1} other items, got {m}"
    return None


def _pool_rule(m: int | None, batch: int, n: int) -> str | None:
    if m is not None and m > n:
        return f"a pool holds at most data.n = {n} items, got {m}"
    return None


def _queue_rule(m: int | None, batch: int, n: int) -> str | None:
    if m is not None and m > n:
        return f"a queue keeps distinct items, at most data.n = {n}, got {m}"
    return None


SPECS: Registry[SourceSpec] = Registry("negative source", "negatives.source")


def register_spec(spec: SourceSpec) -> SourceSpec:
    """Declare a source to recipes (its class registers with ``negatives.register``)."""
    return SPECS.add(spec.name, spec)


for _spec in (
    SourceSpec(
        "batch",
        "self-supervised",
        "the other B-1 items of the batch (CLIP/SimCLR): m = B-1",
        "B - 1, fixed by the batch",
        ("tile",),
        _batch_rule,
        in_batch=True,
    ),
    SourceSpec(
        "subsample",
        "self-supervised",
        "a shared random m-subset of the other batch items (m < B), fresh each step",
        "negatives per anchor, a subset of the other B - 1 batch items",
        ("tile",),
        _subsample_rule,
    ),
    SourceSpec(
        "independent",
        "supervised",
        "m own i.i.d. draws per anchor from the training set (other classes when"
        " labelled), fresh each step; m may exceed B",
        "i.i.d. draws per anchor (repeats count)",
        ("class_aware", "chunk", "tile"),
        _independent_rule,
    ),
    SourceSpec(
        "pool",
        "self-supervised",
        "a fixed shared pool of m training items (1 <= m <= n); exact up to"
        " pool_exact_max, else a moving-average (SogCLR/FastCLIP) estimator",
        "pool size (an anchor inside the pool has m - 1 negatives)",
        ("pool_batch", "pool_exact_max", "gamma", "chunk", "tile"),
        _pool_rule,
    ),
    SourceSpec(
        "queue",
        "self-supervised",
        "the other B-1 batch items plus the last m embeddings of past batches (MoCo queue)",
        "queue length; each anchor sees B - 1 batch items plus the queued items not"
        " in the batch (record column negatives_used)",
        ("momentum", "tile"),
        _queue_rule,
    ),
):
    register_spec(_spec)


def setting_of(source: str) -> str:
    """A registered source's setting (self-supervised | supervised), as it declares it."""
    return SPECS[source].setting
