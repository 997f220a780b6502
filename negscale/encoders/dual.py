"""Two towers, projected to one normalised embedding space, with the temperature."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def temperature(logit_scale: torch.Tensor) -> torch.Tensor:
    """tau from the stored log(1/tau); CLIP clamps the scale at 100 (tau >= 0.01) for stability."""
    return 1.0 / logit_scale.clamp(max=math.log(100.0)).exp()


class DualEncoder(nn.Module):
    """Image tower and text tower -> L2-normalised ``embed_dim`` embeddings.

    The temperature is stored as ``log(1/tau)`` (CLIP's logit scale); it is a
    parameter only when learnable, else a buffer, so a fixed tau never drifts.
    """

    def __init__(
        self, image: nn.Module, text: nn.Module, embed_dim: int, tau: float, learn_tau: bool
    ) -> None:
        super().__init__()
        self.image_tower, self.text_tower = image, text
        self.image_proj = nn.Linear(image.out_dim, embed_dim, bias=False)
        self.text_proj = nn.Linear(text.out_dim, embed_dim, bias=False)
        scale = torch.tensor(math.log(1.0 / tau))
        if learn_tau:
            self.logit_scale = nn.Parameter(scale)
        else:
            self.register_buffer("logit_scale", scale)

    @property
    def tau(self) -> torch.Tensor:
        return temperature(self.logit_scale)

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image_proj(self.image_tower(x)), dim=-1)

    def encode_text(self, y: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text_proj(self.text_tower(y)), dim=-1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encode_image(x), self.encode_text(y)
