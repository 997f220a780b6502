"""Encoder registry: ``model.image_encoder`` / ``model.text_encoder`` name -> tower.

``auto`` picks the built-in tiny tower for the data's modality. Pretrained
towers (timm, transformers) plug in here with ``register`` and load weights only
from local paths.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from negscale.data.base import Modality, PairedData
from negscale.encoders.dual import DualEncoder
from negscale.encoders.tiny import tiny_tower
from negscale.errors import NegscaleError
from negscale.recipe import ModelConfig

TowerBuilder = Callable[[Modality, ModelConfig], nn.Module]


@dataclass(frozen=True)
class EncoderEntry:
    build: TowerBuilder
    kinds: tuple[str, ...]
    summary: str


ENCODERS: dict[str, EncoderEntry] = {}


def register(name: str, kinds: tuple[str, ...], summary: str):
    def wrap(fn: TowerBuilder) -> TowerBuilder:
        ENCODERS[name] = EncoderEntry(fn, kinds, summary)
        return fn

    return wrap


def _tiny(modality: Modality, cfg: ModelConfig) -> nn.Module:
    return tiny_tower(modality, cfg.hidden, cfg.layers)


for _name, _kinds, _summary in (
    ("auto", ("vector", "image", "tokens"), "the tiny built-in tower for the data's modality"),
    ("mlp", ("vector",), "MLP over vectors (CPU-fast)"),
    ("cnn", ("image",), "small strided CNN over images (CPU-fast)"),
    ("transformer", ("tokens",), "small token transformer with mean pooling (CPU-fast)"),
):
    register(_name, _kinds, _summary)(_tiny)


def _tower(field: str, name: str, modality: Modality, cfg: ModelConfig) -> nn.Module:
    entry = ENCODERS.get(name)
    if entry is None:
        raise NegscaleError(
            f"model.{field}: unknown encoder '{name}' (have: {', '.join(ENCODERS)})"
        )
    if modality.kind not in entry.kinds:
        raise NegscaleError(
            f"model.{field}: encoder '{name}' takes {'/'.join(entry.kinds)}, "
            f"the data gives {modality.kind}"
        )
    return entry.build(modality, cfg)


def build(cfg: ModelConfig, data: PairedData) -> DualEncoder:
    image = _tower("image_encoder", cfg.image_encoder, data.image, cfg)
    text = _tower("text_encoder", cfg.text_encoder, data.text, cfg)
    return DualEncoder(image, text, cfg.embed_dim, cfg.tau, cfg.learn_tau)


__all__ = ["ENCODERS", "DualEncoder", "build", "register"]
