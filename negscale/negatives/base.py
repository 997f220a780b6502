"""The staged step every negative source follows: draw, encode, loss, update.

A source turns one training batch into the step's loss in four stages, so
that gradient caching and per-rank local loss compose with every source and a
source's state changes exactly once per step:

1. ``draw(batch, step)``: which items are the negatives (a :class:`Draw`);
2. ``encode(draw)``: the training ids that must be embedded with the live
   model, with graph, beyond the batch (independent draws, pool members);
3. ``loss(emb, draw, tau)``: embeddings in (:class:`Embedded`: the global
   batch, the extra items, and which anchors this process scores), loss out;
   any state change is returned as ``StepLoss.pending``, never applied here;
4. ``update(draw, out, keys)``: apply the pending state (pool averages,
   queue). A source that needs the batch embedded again without graph (a
   MoCo key encoder) asks ``keys`` for it.

:mod:`negscale.negatives.step` runs the stages for the trainer (plain,
gradient-cached, under torchrun); :func:`negscale.negatives.step.staged_loss` runs them
in one process on given embeddings (tests, benchmarks). All randomness comes
from per-step generators (:func:`step_generator`), so a run is reproducible
and resumable. Every source is symmetric, like CLIP: image anchors score
texts and text anchors score images, and the loss averages both; an anchor's
own pair is never its negative.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, ClassVar

import numpy as np
import torch

from negscale.config.sources import SourceSpec, register_spec
from negscale.data.base import PairedData
from negscale.encoders.dual import DualEncoder
from negscale.losses import shared_negatives_loss
from negscale.registry import Registry

# step_generator streams (the trainer's batches use 1)
SUBSAMPLE_STREAM, INDEPENDENT_STREAM, POOL_STREAM, POOL_BATCH_STREAM = 11, 12, 13, 14


def step_generator(
    seed: int, step: int, stream: int, device: str | torch.device = "cpu"
) -> torch.Generator:
    """A generator determined by (seed, stream, step) alone: no state to carry or restore."""
    state = np.random.SeedSequence([seed, stream, step]).generate_state(2, dtype=np.uint64)
    gen = torch.Generator(device=device)
    gen.manual_seed(int(state[0] >> np.uint64(1)))
    return gen


def positions(haystack: torch.Tensor, needles: torch.Tensor) -> torch.Tensor:
    """Position of each needle in ``haystack`` (distinct values), -1 where absent."""
    if len(haystack) == 0:
        return torch.full_like(needles, -1)
    order = torch.argsort(haystack)
    ordered = haystack[order]
    at = torch.searchsorted(ordered, needles).clamp(max=len(haystack) - 1)
    return torch.where(ordered[at] == needles, order[at], torch.full_like(needles, -1))


@dataclass
class Batch:
    index: torch.Tensor  # positions in the training split (the global batch)
    x: torch.Tensor  # this process's slice of the inputs
    y: torch.Tensor
    labels: torch.Tensor | None


@dataclass
class Draw:
    """Stage 1: the step's negatives, as the loss will index them."""

    step: int
    index: torch.Tensor  # training ids of the global batch (CPU)
    extra: torch.Tensor | None = None  # training ids to embed beyond the batch (CPU)
    info: dict[str, Any] = field(default_factory=dict)  # source-specific (masks, indices)


@dataclass
class Embedded:
    """Stage 2's result: the global batch's embeddings and the extra items'.

    ``rows`` are the anchors this process scores: the whole batch in one
    process, this rank's slice under torchrun's local loss (each rank scores
    its own anchors against the gathered global set).
    """

    img: torch.Tensor
    txt: torch.Tensor
    neg_img: torch.Tensor | None = None  # rows follow Draw.extra
    neg_txt: torch.Tensor | None = None
    rows: slice = field(default_factory=lambda: slice(None))

    @property
    def batch(self) -> int:
        return int(self.img.shape[0])

    @property
    def local(self) -> bool:
        """True when this process scores only a slice of the batch's anchors."""
        start, stop, _ = self.rows.indices(self.batch)
        return (start, stop) != (0, self.batch)

    def anchors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Image and text embeddings of the anchors this process scores."""
        return self.img[self.rows], self.txt[self.rows]

    def own(self) -> torch.Tensor:
        """Each scored anchor's row in the global batch."""
        start, stop, _ = self.rows.indices(self.batch)
        return torch.arange(start, stop, device=self.img.device)


@dataclass
class StepLoss:
    loss: torch.Tensor  # mean over the anchors this process scores
    negatives_per_anchor: float  # mean over the global batch's anchors (and directions)
    scores: int  # negative scores of the global batch, both directions (for loss FLOPs)
    pending: dict[str, Any] = field(default_factory=dict)  # state for the update stage


@dataclass
class BatchTable:
    """A step's negatives as batch columns: anchor i scores items ``columns`` except
    column ``drop[i]`` (its own item, or the one extra column it skips)."""

    columns: torch.Tensor  # (k,) batch rows scored by every anchor
    drop: torch.Tensor  # (B,) the column each anchor leaves out: k - 1 negatives each
    negatives_per_anchor: float
    scores: int  # as StepLoss.scores


# embeds the global batch through a module without graph: (img, txt)
KeyEmbed = Callable[[torch.nn.Module], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class Keys:
    """What the update stage may use: the live model and a no-graph batch embedder."""

    model: DualEncoder
    embed: KeyEmbed


def symmetric_loss(
    img: torch.Tensor,
    txt: torch.Tensor,
    neg_img: torch.Tensor,
    neg_txt: torch.Tensor,
    *,
    tau: torch.Tensor | float,
    form: str,
    tile: int,
    index: torch.Tensor | None = None,
    exclude: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean of image->texts and text->images losses over shared negative tables."""
    kw: dict[str, Any] = {
        "tau": tau,
        "form": form,
        "tile": tile,
        "negative_index": index,
        "exclude": exclude,
        "negative_mask": mask,
        "reduction": "none",
    }
    fwd = shared_negatives_loss(img, txt, neg_txt, **kw)
    back = shared_negatives_loss(txt, img, neg_img, **kw)
    return (0.5 * (fwd + back)).mean()


@dataclass(frozen=True)
class SourceParams:
    """What a source is built from: plain values, read from the recipe by
    ``negatives.build`` (the one reader of a recipe on this side)."""

    m: int  # negatives per anchor (pool: pool size; queue: queue length)
    n: int  # training pairs: the source draws from the first n
    seed: int  # the run's seed: every draw comes from per-step generators of it
    batch: int  # the global batch B
    form: str  # loss form: paper | infonce
    options: SimpleNamespace  # chunk, tile and the source's own [negatives.<source>] options


class NegativeSource:
    """The staged base: subclasses declare a :class:`SourceSpec` and define the stages."""

    spec: ClassVar[SourceSpec]
    name: ClassVar[str]
    summary: ClassVar[str]
    setting: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "spec" in cls.__dict__:
            cls.name, cls.summary, cls.setting = cls.spec.name, cls.spec.summary, cls.spec.setting

    def __init__(self, params: SourceParams, data: PairedData) -> None:
        self.params = params
        self.neg = params.options
        self.form = params.form
        self.m, self.seed, self.n, self.batch = params.m, params.seed, params.n, params.batch
        self.train = data.train.head(self.n)  # the trainer's first n items: a view, no copy

    @property
    def store_size(self) -> int:
        """Size of the source's negative store (pool or queue); 0 for in-batch sources."""
        return 0

    @property
    def ids_sha(self) -> str | None:
        """Hash of the fixed negative ids (pool); None when negatives are drawn fresh."""
        return None

    # ------------------------------------------------------------ the stages
    def draw(self, batch: Batch, step: int) -> Draw:
        """Stage 1: which items are negatives (default: the batch itself)."""
        return Draw(step, batch.index.cpu())

    def encode(self, draw: Draw) -> torch.Tensor | None:
        """Stage 2: training ids to embed with graph beyond the batch (None: none)."""
        return draw.extra

    def loss(self, emb: Embedded, draw: Draw, tau: torch.Tensor) -> StepLoss:
        """Stage 3: embeddings in, loss out; state changes go to ``pending``."""
        raise NotImplementedError

    def update(self, draw: Draw, out: StepLoss, keys: Keys) -> None:
        """Stage 4: apply ``out.pending`` (once per step, after the loss)."""
        return None

    # ------------------------------------------------------------ checkpoints
    def table(self, draw: Draw, batch: int) -> BatchTable | None:
        """The step's negatives as columns of the batch, for runs stepped together.

        Runs of one design that differ only in their seed can train as one
        stacked model (:mod:`negscale.cohort`), whose loss scores every run's
        anchors against columns of its own batch. A source whose negatives are
        such columns says which here; None (the default) trains its runs one
        at a time.
        """
        return None

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None


CLASSES: Registry[type[NegativeSource]] = Registry("negative source", "negatives.source")


def register(cls: type[NegativeSource]) -> type[NegativeSource]:
    """Class decorator: ``cls`` is the source of ``negatives.source = cls.spec.name``.

    A bundled source's spec is already in the catalog (recipes read it without
    torch); a source defined elsewhere (a plugin, a test) is declared to
    recipes here, from its own module.
    """
    register_spec(cls.spec)
    CLASSES.add(cls.spec.name, cls)
    return cls
