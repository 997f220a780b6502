"""What each negative source declares about itself, without torch.

Recipe validation (``negscale.config``) must stay importable without torch, so
the facts a recipe needs about a source live here: its name, setting, one-line
summary, what m means, the shared ``negatives.*`` fields it reads (``chunk``,
``tile``), its own options (a section ``[negatives.<source>]``, declared here
beside its spec, so a recipe cannot carry another source's options), and the
rule that says whether it can supply m negatives for a batch B and n training
pairs. The
torch-side classes (``negscale.negatives.<source>``) point at their spec, so a
bundled source is one spec here plus one module there; a source defined
elsewhere (a plugin, a test) calls :func:`register_spec` and
``negscale.negatives.register`` from its own module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from pydantic import Field

from negscale.config.base import Section
from negscale.registry import Registry

# m (None when not set), batch size, training pairs -> why m is infeasible, or None
Rule = Callable[[int | None, int, int], str | None]


class NoOptions(Section):
    """A source with no options of its own."""


class PoolOptions(Section):
    """``[negatives.pool]``: how a pool is encoded and, past ``exact_max``, estimated."""

    minibatch: int | None = Field(
        None,
        ge=1,
        description="estimator: negative mini-batch per step: exactly min(k, m) items"
        " (the batch's own pool members first); None: every pool member of the batch,"
        " topped up to B // 2",
    )
    exact_max: int | None = Field(
        None, ge=0, description="encode the whole pool, exact loss, up to this m (None: B // 2)"
    )
    gamma: float = Field(
        0.9, gt=0, le=1, description="estimator: u_i rate, max(gamma, 1/visit); 1 = no averaging"
    )


class QueueOptions(Section):
    """``[negatives.queue]``: where the queued keys come from."""

    momentum: float = Field(
        0.0, ge=0, lt=1, description="EMA rate of a MoCo key encoder; 0 = the live model"
    )


class IndependentOptions(Section):
    """``[negatives.independent]``: which items an anchor's own draws come from."""

    class_aware: bool = Field(
        True,
        description="draw other-class items when labelled; false: the marginal"
        " (any other training item, labels ignored)",
    )


@dataclass(frozen=True)
class SourceSpec:
    """One source's declaration: what a recipe may ask of it."""

    name: str
    setting: str  # self-supervised | supervised
    summary: str  # one line for `negscale list negatives`
    m_means: str  # what negatives.m counts for this source
    fields: tuple[str, ...]  # the shared negatives.* fields (chunk, tile) it reads
    rule: Rule
    in_batch: bool = False  # m is fixed by the batch (B - 1) and need not be given
    options: type[Section] = NoOptions  # its own section, [negatives.<name>]
    # option -> its name in run ids and in recipes before the sections (negatives.<flat>)
    flat_names: Mapping[str, str] = field(default_factory=dict)
    # runs differing only in their seed may train as one stacked model: the source's
    # negatives are columns of the batch (its class defines NegativeSource.table)
    stacks: bool = False

    def flat_name(self, option: str) -> str:
        """``negatives.<this>``: the option's key in run ids (and its older flat spelling)."""
        return self.flat_names.get(option, option)

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
    # m below B - 1 never gets here: in_batch_source made it a subsample
    if m is not None and m != batch - 1:
        return (
            f"the batch holds B - 1 = {batch - 1} other items, not {m};"
            " use source 'independent' or 'pool' for more"
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
        stacks=True,
    ),
    SourceSpec(
        "subsample",
        "self-supervised",
        "a shared random m-subset of the other batch items (m < B), fresh each step",
        "negatives per anchor, a subset of the other B - 1 batch items",
        ("tile",),
        _subsample_rule,
        stacks=True,
    ),
    SourceSpec(
        "independent",
        "supervised",
        "m own i.i.d. draws per anchor from the training set (other classes when"
        " labelled), fresh each step; m may exceed B",
        "i.i.d. draws per anchor (repeats count)",
        ("chunk", "tile"),
        _independent_rule,
        options=IndependentOptions,
    ),
    SourceSpec(
        "pool",
        "self-supervised",
        "a fixed shared pool of m training items (1 <= m <= n); exact up to"
        " [negatives.pool] exact_max, else a moving-average (SogCLR/FastCLIP) estimator",
        "pool size (an anchor inside the pool has m - 1 negatives)",
        ("chunk", "tile"),
        _pool_rule,
        options=PoolOptions,
        flat_names={"minibatch": "pool_batch", "exact_max": "pool_exact_max"},
    ),
    SourceSpec(
        "queue",
        "self-supervised",
        "the other B-1 batch items plus the last m embeddings of past batches (MoCo queue)",
        "queue length; each anchor sees B - 1 batch items plus the queued items not"
        " in the batch (record column negatives_used)",
        ("tile",),
        _queue_rule,
        options=QueueOptions,
    ),
):
    register_spec(_spec)


def setting_of(source: str) -> str:
    """A registered source's setting (self-supervised | supervised), as it declares it."""
    return SPECS[source].setting


def source_of_key(key: str) -> str | None:
    """The source that ``negatives.<key>`` belongs to: its section (``pool``) or one of
    its options in the flat spelling (``gamma``); None for a shared field."""
    if key in SPECS:
        return key
    found = owner_of_flat(key)
    return found[0].name if found else None


def owner_of_flat(name: str) -> tuple[SourceSpec, str] | None:
    """(the source, its option) spelled ``negatives.<name>`` in run ids (and in recipes
    written before the sections), or None."""
    for spec in SPECS.values():
        for option in spec.options.model_fields:
            if spec.flat_name(option) == name:
                return spec, option
    return None


def in_batch_source(source: str, m: int | None, batch: int) -> tuple[str, int | None]:
    """``batch`` and ``subsample`` are one source at two ranges of m: the one place
    where a recipe's (source, m) is put on the right one.

    ``batch`` with m below B - 1 is the subsample of m; ``subsample`` at
    m = B - 1 is ``batch`` (same run, same run_id, its faster path). So a sweep
    over m from an in-batch recipe needs no source of its own, and m above B - 1
    stays for ``batch``'s rule to refuse.
    """
    if source == "batch" and m is not None and m < batch - 1:
        return "subsample", m
    if source == "subsample" and m == batch - 1:
        return "batch", None
    return source, m
