"""Image transforms from timm, so normalisation and crops match the towers that read them.

For a ``timm:<arch>`` tower the mean, std and interpolation come from the
architecture's pretrained config (``timm.data.resolve_data_config``); for the
tiny towers from timm's defaults (ImageNet statistics, bicubic). Train: random
resized crop (scale ``(crop_min, 1)``) and horizontal flip; eval: shorter side
resized to the size and centre crop (``crop_pct = 1``: nothing is cut beyond
the square). ``timm.data.create_transform`` builds both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class Transform:
    """PIL images -> one normalised float32 batch (3, size, size) per image.

    timm's per-image pipeline stops at uint8 (``normalize=False``); scaling
    and normalising with timm's mean/std happen once on the stacked batch,
    the same arithmetic as ``ToTensor`` + ``Normalize`` at a fraction of the
    per-image cost.
    """

    per_image: Callable[[Any], torch.Tensor]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __call__(self, images: Sequence[Any]) -> torch.Tensor:
        x = torch.stack([self.per_image(im) for im in images]).float().div_(255)
        mean = torch.tensor(self.mean, dtype=x.dtype)[:, None, None]
        std = torch.tensor(self.std, dtype=x.dtype)[:, None, None]
        return x.sub_(mean).div_(std)


def timm_data_config(image_encoder: str | None, size: int) -> dict[str, Any]:
    """input size, mean, std, interpolation for an encoder; timm's defaults for non-timm towers."""
    from timm.data import resolve_data_config

    key, _, arch = (image_encoder or "").partition(":")
    pretrained: dict[str, Any] | None = None
    if key == "timm" and arch:
        import timm

        try:
            cfg = timm.models.get_pretrained_cfg(arch)
        except Exception:  # unknown architecture: the tower reports it by name
            cfg = None
        pretrained = cfg.to_dict() if cfg is not None else None
    return resolve_data_config({"input_size": (3, size, size)}, pretrained_cfg=pretrained)


def image_transform(
    size: int, train: bool, image_encoder: str | None = None, crop_min: float = 0.08
) -> Transform:
    """timm's transform at ``size`` px: augmenting for training, deterministic otherwise."""
    from timm.data import create_transform

    cfg = timm_data_config(image_encoder, size)
    common = {
        "input_size": cfg["input_size"],
        "interpolation": cfg["interpolation"],
        "normalize": False,
    }
    if train:
        per_image = create_transform(
            **common, is_training=True, scale=(crop_min, 1.0), hflip=0.5, color_jitter=None
        )
    else:
        per_image = create_transform(**common, is_training=False, crop_pct=1.0)
    return Transform(per_image, tuple(cfg["mean"]), tuple(cfg["std"]))
