"""One training step from a source's stages: plain, gradient-cached, or per-rank.

* plain: the batch (and any extra negatives, in chunks of ``negatives.chunk``)
  is embedded with graph, the loss is taken and backpropagated.
* gradient caching (``train.micro_batch``, GradCache): the batch and the extra
  negatives are embedded in chunks *without* a graph; the loss and its
  gradient with respect to those embeddings are taken once; then each chunk
  is embedded again with a graph, under the RNG state of its first pass, and
  the cached gradient is backpropagated through it. Activation memory is one
  chunk's; the parameter gradients equal the plain step's.
* torchrun (local loss, as open_clip's ``local_loss`` + ``gather_with_grad``):
  each rank embeds its slice of the batch and its share of the extra
  negatives, gathers everything with gradient, and scores only its own
  anchors against the global set. The gathered embeddings' backward sums
  every rank's gradient for a rank's rows, so after the ranks' parameter
  gradients are averaged they equal one process's on the global batch.

Sources never see which of these ran: they get an :class:`Embedded` and a
``rows`` slice. State changes (``update``) run once per step, after the
backward, before the optimiser step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from negscale import distributed
from negscale.data.base import PairSet
from negscale.encoders.dual import DualEncoder
from negscale.negatives.base import Batch, Embedded, Keys, NegativeSource, StepLoss, positions

Forward = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
Pair = tuple[torch.Tensor, torch.Tensor]


def _split(ids: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row of each id in the batch (-1: not in it), and the ids that are not."""
    row = positions(index.cpu(), ids.cpu())
    return row, ids.cpu()[row < 0]


def _assemble(row: torch.Tensor, img: torch.Tensor, txt: torch.Tensor, miss: Pair) -> Pair:
    """Embeddings of the ids: batch rows where ``row >= 0``, else the next ``miss`` row."""
    dev = img.device
    if bool((row >= 0).all()):  # only batch items: no encoding, maybe no copy
        if torch.equal(row, torch.arange(len(img))):
            return img, txt
        return img[row.to(dev)], txt[row.to(dev)]
    hit, gone = (row >= 0).nonzero()[:, 0], (row < 0).nonzero()[:, 0]
    inverse = torch.empty_like(row)
    inverse[torch.cat([hit, gone])] = torch.arange(len(row))
    inverse = inverse.to(dev)
    imgs = torch.cat([img[row[hit].to(dev)], miss[0]])
    txts = torch.cat([txt[row[hit].to(dev)], miss[1]])
    return imgs[inverse], txts[inverse]


def _share(miss: torch.Tensor) -> torch.Tensor:
    """This rank's equal-sized share of ``miss`` (padded by repeating its first id)."""
    world, rank = distributed.world_rank()
    if world == 1:
        return miss
    per = -(-len(miss) // world)
    padded = torch.cat([miss, miss[:1].repeat(per * world - len(miss))])
    return padded[rank * per : (rank + 1) * per]


def _chunks(x: torch.Tensor, y: torch.Tensor, size: int) -> list[Pair]:
    """Row-aligned chunks of the two sides."""
    return list(zip(x.split(size), y.split(size), strict=True))


def _gather(pair: Pair, count: int | None = None) -> Pair:
    """Every rank's rows in rank order, with gradient; the first ``count`` of them."""
    img, txt = (distributed.all_gather_with_grad(t) for t in pair)
    return (img, txt) if count is None else (img[:count], txt[:count])


def embed_extra(
    model: DualEncoder,
    train: PairSet,
    ids: torch.Tensor | None,
    index: torch.Tensor,
    img: torch.Tensor,
    txt: torch.Tensor,
    chunk: int,
    split: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Embeddings of training items ``ids``, with graph (the plain path).

    Items of the batch reuse its embeddings (same function of the weights, no
    second forward); the rest are encoded in chunks of ``chunk``, each rank
    its share under torchrun, gathered with gradient. ``split`` is
    ``_split(ids, index)`` when the caller has it already.
    """
    if ids is None:
        return None, None
    row, miss = split if split is not None else _split(ids, index)
    if not len(miss):
        return _assemble(row, img, txt, (img[:0], txt[:0]))
    dev, parts = img.device, []
    for part in _share(miss).split(chunk):
        x, y = train.fetch(part)
        parts.append((model.encode_image(x.to(dev)).float(), model.encode_text(y.to(dev)).float()))
    mine = (torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))
    return _assemble(row, img, txt, _gather(mine, len(miss)))


@dataclass
class _Chunk:
    """One gradient-cache chunk: its inputs and the RNG state of its first pass."""

    x: torch.Tensor
    y: torch.Tensor
    cpu_rng: torch.Tensor
    cuda_rng: torch.Tensor | None


class CachedEncoder:
    """Embeds chunks without graph, then replays them with the cached embedding gradients."""

    def __init__(self, forward: Forward, device: torch.device, autocast: torch.autocast) -> None:
        self.forward, self.device, self.autocast = forward, device, autocast
        self.groups: list[tuple[list[_Chunk], torch.Tensor, torch.Tensor]] = []

    def embed(self, inputs: list[tuple[torch.Tensor, torch.Tensor]]) -> Pair:
        """No-graph embeddings of the chunks, as leaves whose gradient the loss fills."""
        chunks, imgs, txts = [], [], []
        cuda = self.device.type == "cuda"
        for x, y in inputs:
            state = torch.cuda.get_rng_state(self.device) if cuda else None
            chunks.append(_Chunk(x, y, torch.get_rng_state(), state))
            with torch.no_grad(), self.autocast:
                img, txt = self.forward(x.to(self.device), y.to(self.device))
            imgs.append(img.float())
            txts.append(txt.float())
        img = torch.cat(imgs).requires_grad_()
        txt = torch.cat(txts).requires_grad_()
        self.groups.append((chunks, img, txt))
        return img, txt

    def replay(self) -> None:
        """Backpropagate each leaf's gradient through its chunks, re-run with graph."""
        devices = [self.device] if self.device.type == "cuda" else []
        for chunks, img, txt in self.groups:
            if img.grad is None and txt.grad is None:
                continue
            g_img = torch.zeros_like(img) if img.grad is None else img.grad
            g_txt = torch.zeros_like(txt) if txt.grad is None else txt.grad
            start = 0
            for c in chunks:
                stop = start + len(c.x)
                with torch.random.fork_rng(devices=devices):
                    torch.set_rng_state(c.cpu_rng)
                    if c.cuda_rng is not None:
                        torch.cuda.set_rng_state(c.cuda_rng, self.device)
                    with self.autocast:
                        e_img, e_txt = self.forward(c.x.to(self.device), c.y.to(self.device))
                    torch.autograd.backward(
                        [e_img.float(), e_txt.float()], [g_img[start:stop], g_txt[start:stop]]
                    )
                start = stop
        self.groups.clear()


@dataclass
class StepCost:
    """Items the encoders embedded in the last step (global batch, all ranks)."""

    graph: int = 0  # forward and backward (3 forwards' FLOPs)
    forward_only: int = 0  # no-graph passes: gradient-cache first pass, a key encoder

    def forwards(self) -> int:
        """Item-forwards of FLOPs: backward counts as two forwards."""
        return 3 * self.graph + self.forward_only


def staged_loss(
    source: NegativeSource,
    model: DualEncoder,
    batch: Batch,
    img: torch.Tensor,
    txt: torch.Tensor,
    step: int,
) -> StepLoss:
    """A source's four stages in one process on the batch embeddings ``img``, ``txt``:
    the step without the trainer (what the sources' tests compare against references)."""
    draw = source.draw(batch, step)
    ids = source.encode(draw)
    neg = embed_extra(model, source.train, ids, batch.index, img, txt, source.neg.chunk)
    out = source.loss(Embedded(img, txt, *neg), draw, model.tau)
    with torch.no_grad():
        source.update(draw, out, Keys(model, lambda module: module(batch.x, batch.y)))
    return out


class StagedStep:
    """Runs a source's four stages for one step and leaves the gradients in ``.grad``.

    Parameter gradients are this rank's; the trainer averages them over ranks
    (``distributed.average_gradients``) before clipping and the optimiser step.
    The returned ``StepLoss.loss`` is detached and, under torchrun, the mean
    over ranks: the global batch's loss.
    """

    def __init__(
        self,
        source: NegativeSource,
        model: DualEncoder,
        forward: Forward,
        device: torch.device,
        autocast: torch.autocast | None = None,
        micro_batch: int | None = None,
    ) -> None:
        self.source, self.model, self.forward = source, model, forward
        self.device = device
        self.autocast = autocast or torch.autocast(device.type, enabled=False)
        self.micro_batch = micro_batch or None
        self.cost = StepCost()

    def rows(self, batch: int) -> slice:
        """The anchors this process scores: its slice under torchrun, else all."""
        world, rank = distributed.world_rank()
        per = batch // world
        return slice(rank * per, (rank + 1) * per)

    def __call__(self, batch: Batch, step: int) -> StepLoss:
        source = self.source
        draw = source.draw(batch, step)
        ids = source.encode(draw)
        cache = (
            CachedEncoder(self.forward, self.device, self.autocast) if self.micro_batch else None
        )
        b = len(batch.index)
        split = None if ids is None else _split(ids, batch.index)
        misses = 0 if split is None else len(split[1])
        # items through the encoders this step (global): with graph, and forward-only
        self.cost = StepCost(graph=b + misses, forward_only=(b + misses) if cache else 0)
        with self.autocast:
            if cache is None:
                img, txt = _gather(tuple(t.float() for t in self.forward(batch.x, batch.y)))
                chunk = source.neg.chunk
                neg = embed_extra(
                    self.model, source.train, ids, batch.index, img, txt, chunk, split
                )
            else:
                img, txt, neg = self._embed_cached(cache, batch, split)
            emb = Embedded(img, txt, *neg, rows=self.rows(b))
            out = source.loss(emb, draw, self.model.tau)
        out.loss.backward()
        if cache is not None:
            cache.replay()
        with torch.no_grad(), self.autocast:
            source.update(draw, out, Keys(self.model, self._key_embed(batch)))
        out.loss = distributed.mean_over_ranks(out.loss.detach())
        return out

    def _embed_cached(
        self,
        cache: CachedEncoder,
        batch: Batch,
        split: tuple[torch.Tensor, torch.Tensor] | None,
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor | None, torch.Tensor | None]]:
        """The batch and extra negatives as no-graph leaves in micro-batches, gathered."""
        mb = self.micro_batch
        assert mb is not None
        img, txt = _gather(cache.embed(_chunks(batch.x, batch.y, mb)))
        if split is None:
            return img, txt, (None, None)
        row, miss = split
        if not len(miss):
            return img, txt, _assemble(row, img, txt, (img[:0], txt[:0]))
        step = min(mb, self.source.neg.chunk)
        inputs = [self.source.train.fetch(part) for part in _share(miss).split(step)]
        mine = cache.embed(inputs)
        return img, txt, _assemble(row, img, txt, _gather(mine, len(miss)))

    def _key_embed(self, batch: Batch) -> Callable[[torch.nn.Module], Pair]:
        """A no-graph embedder of the global batch (each rank its slice, gathered)."""
        size = self.micro_batch or len(batch.x)

        def embed(module: torch.nn.Module) -> Pair:
            self.cost.forward_only += len(batch.index)
            parts = [module(x, y) for x, y in _chunks(batch.x, batch.y, size)]
            img = torch.cat([p[0].float() for p in parts])
            txt = torch.cat([p[1].float() for p in parts])
            return distributed.all_gather(img), distributed.all_gather(txt)

        return embed
