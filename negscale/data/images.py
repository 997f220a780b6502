"""Lazy image-text sets: items decoded and transformed on fetch, never held decoded.

An :class:`ImageTextSet` is the :class:`~negscale.data.base.PairSet` of every
image dataset (``pairs``, ``folder``, ``shards``, ``digits``,
``animal-mnist``). It holds only what is cheap per item: where the image is
(an :class:`ImageSource` row), its captions as text, its label. ``fetch``
opens, transforms and tokenises the requested items.

Several captions per image: ids are *images*, and a training fetch draws one
of the image's captions per visit (eval takes the first). An image's other
captions are therefore never in the same batch as it, so they can never be its
negatives. With ``views = "two-view"`` the text side is a second augmentation
of the same image (SimCLR/SupCon).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from negscale.data.transforms import Transform
from negscale.errors import NegscaleError

_SHOW = 3  # how many bad files an error names


class ImageSource(Protocol):
    """Images by row: ``open`` returns an RGB PIL image or raises NegscaleError naming it."""

    def __len__(self) -> int: ...

    def open(self, row: int): ...

    def name(self, row: int) -> str: ...

    def check(self, row: int, full: bool = False) -> str | None:
        """Why row's image is unusable, or None: from the header (cheap), or by a
        full decode with ``full``."""
        ...


def _reason(exc: Exception) -> str:
    return "missing" if isinstance(exc, FileNotFoundError) else type(exc).__name__


def decode(data: io.BytesIO | Path | str, name: str, field: str = "data.path"):
    """PIL-decode to RGB; any failure is a one-line error naming the file."""
    from PIL import Image

    try:
        with Image.open(data) as im:
            return im.convert("RGB")
    except Exception as exc:  # PIL raises many kinds for bad files
        raise NegscaleError(f"{field}: cannot decode image {name} ({_reason(exc)})") from None


def header_ok(data: io.BytesIO | Path | str, full: bool = False) -> str | None:
    """None when PIL recognises the file, else why not: from the header only, or, with
    ``full``, by decoding it (a truncated body passes the header check)."""
    from PIL import Image

    try:
        with Image.open(data) as im:
            if full:
                im.load()
            return None
    except Exception as exc:
        return _reason(exc)


@dataclass
class FileImages:
    """Image files on disk; ``paths`` may be packed strings (one buffer for millions)."""

    paths: Sequence[str] | Sequence[Path]

    def __len__(self) -> int:
        return len(self.paths)

    def open(self, row: int):
        return decode(self.paths[row], str(self.paths[row]))

    def name(self, row: int) -> str:
        return str(self.paths[row])

    def check(self, row: int, full: bool = False) -> str | None:
        return header_ok(self.paths[row], full)


@dataclass
class ArrayImages:
    """Bundled uint8 arrays (N, H, W) or (N, H, W, 3), already decoded (small sets)."""

    pixels: np.ndarray
    label: str = "array"
    decodes = False  # tiny, already decoded: workers would cost more than they save

    def __len__(self) -> int:
        return int(self.pixels.shape[0])

    def open(self, row: int):
        from PIL import Image

        return Image.fromarray(self.pixels[row]).convert("RGB")

    def name(self, row: int) -> str:
        return f"{self.label}[{row}]"

    def check(self, row: int, full: bool = False) -> str | None:
        return None


def usable(
    source: ImageSource, rows: np.ndarray, need: int, skip_bad: bool
) -> tuple[np.ndarray, list[str]]:
    """The first ``need`` usable rows of ``rows`` (all rows when need < 0), and the bad names.

    Only as many rows as needed are checked, in order, so a smaller n is still
    a prefix of a larger one. Without ``skip_bad`` any bad row is an error that
    names the first few files, and the check reads headers only (a corrupt body
    fails later, naming its file); with ``skip_bad`` each image is decoded once
    here, so a corrupt body is skipped and counted too.
    """
    want = len(rows) if need < 0 else need
    good: list[int] = []
    bad: list[str] = []
    workers = min(8, os.cpu_count() or 1)
    start = 0
    with ThreadPoolExecutor(max_workers=workers) as pool:
        while len(good) < want and start < len(rows):
            part = rows[start : start + max(64, want - len(good))]
            start += len(part)
            checked = pool.map(lambda row: source.check(row, skip_bad), part)
            for row, why in zip(part, checked, strict=True):
                if why is None:
                    good.append(int(row))
                else:
                    bad.append(f"{source.name(int(row))} ({why})")
    if bad and not skip_bad:
        shown = ", ".join(bad[:_SHOW])
        more = f" and {len(bad) - _SHOW} more" if len(bad) > _SHOW else ""
        raise NegscaleError(
            f"data.path: {len(bad)} image file(s) missing or undecodable: {shown}{more}"
            " (data.skip_bad = true skips them)"
        )
    return np.asarray(good[:want], dtype=np.int64), bad


@dataclass
class ImageTextSet:
    """Map-style pairs: id -> (transformed image, caption tokens or a second view)."""

    images: ImageSource
    rows: np.ndarray  # id -> image row
    captions: Sequence[Sequence[str]] | None  # per image row; None for two-view
    encode: Callable[[list[str]], torch.Tensor] | None
    transform: Transform
    labels: torch.Tensor | None = None  # per id
    two_view: bool = False
    draw: bool = False  # training: one of an image's captions at random per visit
    cached: torch.Tensor | None = None  # per image row: the deterministic transform, done once

    @property
    def decodes(self) -> bool:
        """Read by the loader: is a fetch worth spreading over worker processes?"""
        return getattr(self.images, "decodes", True)

    def __len__(self) -> int:
        return len(self.rows)

    def fetch(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rows = [int(self.rows[i]) for i in ids.tolist()]
        if self.cached is not None:
            x = self.cached[rows]
            if self.two_view:
                return x, x.clone()
        else:
            images = [self.images.open(row) for row in rows]
            x = self.transform(images)
            if self.two_view:
                return x, self.transform(images)
        texts = []
        for row in rows:
            options = self.captions[row]
            pick = int(torch.randint(len(options), ())) if self.draw and len(options) > 1 else 0
            texts.append(options[pick])
        return x, self.encode(texts)

    def head(self, n: int) -> ImageTextSet:
        labels = None if self.labels is None else self.labels[:n]
        return replace(self, rows=self.rows[:n], labels=labels)
