"""Containers every dataset loader returns, so the trainer never sees loader details."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import torch


@dataclass
class Split:
    """Paired examples: row i of ``x`` (image side) matches row i of ``y`` (text side)."""

    x: torch.Tensor
    y: torch.Tensor
    labels: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def subset(self, index: torch.Tensor) -> Split:
        labels = None if self.labels is None else self.labels[index]
        return Split(self.x[index], self.y[index], labels)


@dataclass
class Modality:
    """One side: ``vector`` (dim), ``image`` (shape) or ``tokens`` (vocab, length)."""

    kind: str
    dim: int = 0
    shape: tuple[int, ...] = ()
    vocab: int = 0
    length: int = 0
    pad_id: int | None = None  # tokens: the padding id, masked out by text towers


class Oracle(Protocol):
    """Known generative model: the true score s*(x, y) = log p+(y|x) / p-(y)."""

    def log_ratio(self, split: str, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """(len(rows), len(cols)) matrix of true log density ratios within a split."""
        ...


@dataclass
class PairedData:
    train: Split
    eval: Split
    image: Modality
    text: Modality
    num_classes: int | None = None
    oracle: Oracle | None = None
    info: dict[str, Any] = field(default_factory=dict)
