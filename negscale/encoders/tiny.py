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


def token_mask(tokens: torch.Tensor, pad_id: int | None) -> torch.Tensor:
    """True where a token is real; every token when the data declares no padding."""
    if pad_id is None:
        return torch.ones_like(tokens, dtype=torch.bool)
    return tokens != pad_id


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the real tokens of (B, L, H) states (an all-padding row gives zeros)."""
    weights = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


class TokenTransformerTower(nn.Module):
    """Token ids (L,) -> features: embeddings + positions, pre-norm transformer, mean pool."""

    def __init__(
        self, vocab: int, length: int, hidden: int, layers: int, pad_id: int | None = None
    ) -> None:
        super().__init__()
        self.pad_id = pad_id
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
        mask = token_mask(tokens, self.pad_id)
        # a row of padding only would attend to nothing: let it attend to everything
        ignore = ~mask & mask.any(dim=1, keepdim=True)
        return self.norm(masked_mean(self.encoder(h, src_key_padding_mask=ignore), mask))


def tiny_tower(modality: Modality, hidden: int, layers: int) -> nn.Module:
    """The built-in tower that fits a modality."""
    if modality.kind == "vector":
        return MLPTower(modality.dim, hidden, layers)
    if modality.kind == "image":
        return CNNTower(modality.shape[0], hidden, layers)
    if modality.kind == "tokens":
        return TokenTransformerTower(
            modality.vocab, modality.length, hidden, layers, modality.pad_id
        )
    raise ValueError(f"no tiny tower for modality {modality.kind!r}")
