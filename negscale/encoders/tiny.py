"""CPU-fast towers for the built-in data: an MLP, a small CNN and a small token transformer."""

from __future__ import annotations

import torch
from torch import nn

from negscale.data.base import Modality


class MLPTower(nn.Module):
    """Vectors -> features: LayerNorm'd GELU MLP."""

    def __init__(self, in_dim: int, hidden: int, layers: int) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        dim = in_dim
        for _ in range(layers):
            blocks += [nn.Linear(dim, hidden), nn.LayerNorm(hidden), nn.GELU()]
            dim = hidden
        self.net = nn.Sequential(*blocks)
        self.out_dim = hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class CNNTower(nn.Module):
    """Images (C, H, W) -> features: strided conv stack and global average pooling."""

    def __init__(self, channels: int, hidden: int, layers: int) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        c_in, width = channels, max(hidden // 4, 8)
        for i in range(max(layers, 2)):
            c_out = width * (2 ** min(i, 2))
            blocks += [
                nn.Conv2d(c_in, c_out, 3, stride=2 if i else 1, padding=1),
                nn.GroupNorm(1, c_out),
                nn.GELU(),
            ]
            c_in = c_out
        self.net = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.out_dim = c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TokenTransformerTower(nn.Module):
    """Token ids (L,) -> features: embeddings + positions, pre-norm transformer, mean pool."""

    def __init__(self, vocab: int, length: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, hidden)
        self.pos = nn.Parameter(torch.zeros(length, hidden))
        nn.init.normal_(self.pos, std=0.02)
        heads = 4 if hidden % 4 == 0 else 1
        layer = nn.TransformerEncoderLayer(
            hidden,
            heads,
            dim_feedforward=2 * hidden,
            dropout=0.0,
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(hidden)
        self.out_dim = hidden

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.embed(tokens) + self.pos[: tokens.shape[1]]
        return self.norm(self.encoder(h).mean(dim=1))


def tiny_tower(modality: Modality, hidden: int, layers: int) -> nn.Module:
    """The built-in tower that fits a modality."""
    if modality.kind == "vector":
        return MLPTower(modality.dim, hidden, layers)
    if modality.kind == "image":
        return CNNTower(modality.shape[0], hidden, layers)
    if modality.kind == "tokens":
        return TokenTransformerTower(modality.vocab, modality.length, hidden, layers)
    raise ValueError(f"no tiny tower for modality {modality.kind!r}")
