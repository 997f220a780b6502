"""From rows of (image, captions, label) to a :class:`PairedData` of two lazy sets.

Every image dataset ends here, so nesting, hold-out, tokeniser, transforms,
two-view pairing and bad-file handling are decided once:

* the training rows are one seeded order and a run takes the first n (a
  smaller n is a prefix of a larger one); the evaluation rows never depend
  on n;
* the word vocabulary comes from *all* training captions, so a pair's token
  ids are the same at every n;
* bad images (missing, not an image) are found before training (PIL reads the
  header of the rows a run uses) and are an error naming the files, or with
  ``data.skip_bad`` skipped and counted (``info["skipped"]``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from negscale.data.base import Modality, PairedData
from negscale.data.images import ImageSource, ImageTextSet, usable
from negscale.data.text import tokenizer
from negscale.data.transforms import image_transform
from negscale.errors import NegscaleError


def holdout(count: int, n_eval: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train rows in a seeded order, eval rows sorted): a seeded hold-out of ``n_eval``."""
    if count <= n_eval:
        raise NegscaleError(
            f"data.n_eval: holding out {n_eval} items leaves none to train on "
            f"(the dataset has {count}; lower data.n_eval or give data.eval_path)"
        )
    order = np.random.default_rng([seed, 0]).permutation(count)
    return order[n_eval:], np.sort(order[:n_eval])


def eval_subset(rows: np.ndarray, n_eval: int, seed: int) -> np.ndarray:
    """A separate evaluation set, cut to a seeded ``n_eval`` of its rows when larger."""
    if len(rows) > n_eval:
        rows = np.sort(np.random.default_rng([seed, 2]).permutation(rows)[:n_eval])
    return rows


@dataclass
class Rows:
    """One split's raw material: where the images are, their captions and labels."""

    images: ImageSource
    captions: Sequence[Sequence[str]] | None  # per image row (None: two-view only)
    labels: np.ndarray | None  # per image row
    order: np.ndarray  # the rows this split uses, in their fixed order


@dataclass
class Spec:
    """What the recipe asks of the assembled sets (a DataConfig, plus the towers)."""

    n: int
    size: int
    caption_len: int = 8
    vocab_size: int = 10000
    tokenizer: str | None = None
    text_path: str | None = None  # an hf text tower's folder: its tokenizer by default
    image_encoder: str | None = None
    augment: bool = True
    crop_min: float = 0.08
    two_view: bool = False
    skip_bad: bool = False
    info: dict[str, Any] = field(default_factory=dict)
    cache: dict[int, torch.Tensor] = field(default_factory=dict, repr=False)


def _split(
    rows: Rows, need: int, spec: Spec, encode, train: bool
) -> tuple[ImageTextSet, list[str]]:
    keep, bad = usable(rows.images, rows.order, need, spec.skip_bad)
    augment = train and spec.augment
    transform = image_transform(spec.size, augment, spec.image_encoder, spec.crop_min)
    cached = None
    if not augment and not getattr(rows.images, "decodes", True):
        # small pre-decoded arrays: transform every image once (one float copy, no uint8 reads)
        key = id(rows.images)
        if key not in spec.cache:
            spec.cache[key] = transform([rows.images.open(r) for r in range(len(rows.images))])
        cached = spec.cache[key]
    labels = None if rows.labels is None else torch.as_tensor(rows.labels[keep])
    pairs = ImageTextSet(
        rows.images,
        keep,
        None if spec.two_view else rows.captions,
        encode,
        transform,
        labels,
        two_view=spec.two_view,
        draw=train,
        cached=cached,
    )
    return pairs, bad


def assemble(
    train: Rows,
    held: Rows,
    spec: Spec,
    classes: list[str] | None,
    prompts: list[tuple[int, str]] | None = None,
) -> PairedData:
    """Two lazy sets; the first ``spec.n`` training rows and all eval rows are checked.

    ``prompts`` ((class id, caption) for every class and template) become the
    tokenised zero-shot prompt ensemble of :attr:`PairedData.prompts`.
    """
    if len(train.order) < spec.n:
        raise NegscaleError(
            f"data.n: {spec.n} training pairs requested, the dataset has {len(train.order)}"
        )
    image = Modality("image", shape=(3, spec.size, spec.size))
    encode, text = None, image
    if not spec.two_view:
        assert train.captions is not None
        vocab_text = (c for r in train.order for c in train.captions[r])
        tok = tokenizer(
            spec.tokenizer, spec.text_path, vocab_text, spec.vocab_size, spec.caption_len
        )
        encode = tok
        text = Modality("tokens", vocab=tok.vocab, length=spec.caption_len, pad_id=tok.pad_id)
        spec.info["tokenizer"] = tok.name
    tr, bad_tr = _split(train, spec.n, spec, encode, train=True)
    ev, bad_ev = _split(held, -1, spec, encode, train=False)
    if len(tr) < spec.n:
        raise NegscaleError(
            f"data.n: {spec.n} training pairs requested, {len(tr)} usable "
            f"({len(bad_tr)} bad images skipped)"
        )
    if len(ev) < 2:
        raise NegscaleError(f"data.n_eval: {len(ev)} usable evaluation pairs, need at least 2")
    spec.info["skipped"] = len(bad_tr) + len(bad_ev)
    spec.info["skipped_files"] = (bad_tr + bad_ev)[:20]
    spec.info["classes"] = classes or []
    ensemble = None
    if prompts and encode is not None:
        ids = torch.tensor([k for k, _ in prompts], dtype=torch.long)
        ensemble = (encode([caption for _, caption in prompts]), ids)
    return PairedData(
        tr,
        ev,
        image,
        text,
        num_classes=len(classes) if classes and train.labels is not None else None,
        info=spec.info,
        prompts=ensemble,
        val_builder=_validation(train, tr.rows, spec, encode),
    )


def _validation(train: Rows, used: np.ndarray, spec: Spec, encode) -> Callable:
    """Validation pairs on demand: the training rows after the run's first n, in their order.

    Cut lazily, so a run that does not select a checkpoint checks no extra images,
    and once per size, so the runs of a sweep sharing this dataset check them once.
    """
    after = int(np.flatnonzero(train.order == used[-1])[0]) + 1 if len(used) else 0
    built: dict[int, ImageTextSet | None] = {}

    def build(size: int) -> ImageTextSet | None:
        if size not in built:
            rest = replace(train, order=train.order[after:])
            val = None
            if len(rest.order) >= size:
                val, _ = _split(rest, size, spec, encode, train=False)
            built[size] = val if val is not None and len(val) >= size else None
        return built[size]

    return build


def one_source(
    images: ImageSource,
    captions: Sequence[Sequence[str]] | None,
    labels: np.ndarray | None,
    rows: tuple[np.ndarray, np.ndarray],
    spec: Spec,
    classes: list[str] | None,
    prompts: list[tuple[int, str]] | None = None,
) -> PairedData:
    """Both splits from one source: ``rows`` = (train rows in order, eval rows)."""
    train = Rows(images, captions, labels, rows[0])
    return assemble(train, Rows(images, captions, labels, rows[1]), spec, classes, prompts)


def spec_of(cfg: Any, model: Any | None, *, augment: bool, info: dict[str, Any]) -> Spec:
    """A Spec from a DataConfig and (optionally) the ModelConfig of the towers."""
    text_path = None
    image_encoder = None
    if model is not None:
        image_encoder = model.image_encoder
        if model.text_encoder.partition(":")[0] == "hf":
            text_path = model.text_path
    want = getattr(cfg, "augment", None)
    return Spec(
        n=cfg.n,
        size=cfg.image_size,
        caption_len=cfg.caption_len,
        vocab_size=cfg.vocab_size,
        tokenizer=cfg.tokenizer,
        text_path=text_path,
        image_encoder=image_encoder,
        augment=augment if want is None else want,
        crop_min=cfg.crop_min,
        two_view=cfg.views == "two-view",
        skip_bad=cfg.skip_bad,
        info=info,
    )
