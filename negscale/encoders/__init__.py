"""Encoder registry: ``model.image_encoder`` / ``model.text_encoder`` name -> tower.

A name is ``key`` or ``key:variant`` (``timm:resnet18``). ``auto`` picks the
built-in tiny tower for the data's modality; ``timm:<arch>`` and ``hf`` are
pretrained-capable towers that load weights only from local paths. New towers
plug in with ``register``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from negscale.config import ModelConfig
from negscale.data.base import Modality, PairedData
from negscale.encoders.dual import DualEncoder
from negscale.encoders.tiny import tiny_tower
from negscale.errors import NegscaleError
from negscale.local_paths import resolve
from negscale.registry import Registry

TowerBuilder = Callable[[Modality, ModelConfig, str | None], nn.Module]
Check = Callable[[str, ModelConfig], None]  # (variant, model config) -> raises NegscaleError


@dataclass(frozen=True)
class EncoderEntry:
    build: TowerBuilder
    kinds: tuple[str, ...]
    summary: str
    check: Check | None = None


ENCODERS: Registry[EncoderEntry] = Registry("encoder", "model.image_encoder / model.text_encoder")


def register(name: str, kinds: tuple[str, ...], summary: str, check: Check | None = None):
    """Decorator: make a tower builder available as ``model.*_encoder = <name>[:variant]``;
    ``check(variant, cfg)`` raises what a build would, without loading weights."""

    def wrap(fn: TowerBuilder) -> TowerBuilder:
        ENCODERS.add(name, EncoderEntry(fn, kinds, summary, check))
        return fn

    return wrap


# decorators apply bottom-up: "auto" is registered (and listed) first
@register("transformer", ("tokens",), "small token transformer with mean pooling (CPU-fast)")
@register("cnn", ("image",), "small strided CNN over images (CPU-fast)")
@register("mlp", ("vector",), "MLP over vectors (CPU-fast)")
@register("auto", ("vector", "image", "tokens"), "the tiny built-in tower for the data's modality")
def _tiny(modality: Modality, cfg: ModelConfig, variant: str | None) -> nn.Module:
    return tiny_tower(modality, cfg.hidden, cfg.layers)


def _entry(field: str, name: str, modality: Modality, cfg: ModelConfig) -> EncoderEntry:
    """The registry entry for a tower, after every check that needs no weights."""
    key, _, variant = name.partition(":")
    entry = ENCODERS.get(key)
    if entry is None:
        raise NegscaleError(
            f"model.{field}: unknown encoder '{name}' (have: {', '.join(ENCODERS.names())})"
        )
    if modality.kind not in entry.kinds:
        raise NegscaleError(
            f"model.{field}: encoder '{name}' takes {'/'.join(entry.kinds)}, "
            f"the data gives {modality.kind}"
        )
    if entry.check is not None:
        entry.check(variant, cfg)
    return entry


def _check_timm(variant: str, cfg: ModelConfig) -> None:
    import timm

    if not variant:
        raise NegscaleError("model.image_encoder: name the architecture, e.g. 'timm:resnet18'")
    if variant not in timm.list_models():
        raise NegscaleError(f"model.image_encoder: timm has no architecture '{variant}'")
    path = resolve(cfg.image_path, "model.image_path")
    if path is not None and not Path(path).is_file():
        raise NegscaleError(f"model.image_path: no checkpoint file at {path}")


def _check_hf(variant: str, cfg: ModelConfig) -> None:
    path = resolve(cfg.text_path, "model.text_path")
    if path is None or not Path(path).is_dir():
        raise NegscaleError(
            "model.text_path: the 'hf' text encoder needs a local transformers model folder"
        )


@register("timm", ("image",), "timm:<arch> backbone; weights from model.image_path (local file)",
          check=_check_timm)  # fmt: skip
def _timm(modality: Modality, cfg: ModelConfig, variant: str | None) -> nn.Module:
    from negscale.encoders.pretrained import timm_tower

    if not variant:
        raise NegscaleError("model.image_encoder: name the architecture, e.g. 'timm:resnet18'")
    return timm_tower(variant, modality, cfg)


@register("hf", ("tokens",), "transformers model from the local folder model.text_path",
          check=_check_hf)  # fmt: skip
def _hf(modality: Modality, cfg: ModelConfig, variant: str | None) -> nn.Module:
    from negscale.encoders.pretrained import hf_tower

    return hf_tower(modality, cfg)


def _tower(field: str, name: str, modality: Modality, cfg: ModelConfig) -> nn.Module:
    entry = _entry(field, name, modality, cfg)
    _, _, variant = name.partition(":")
    return entry.build(modality, cfg, variant or None)


def check(cfg: ModelConfig, data: PairedData) -> None:
    """Every check a tower's build would make, without building it: names, the data's
    modality, timm architectures, local weight paths (a bad one is an error before a
    run's header is printed)."""
    _entry("image_encoder", cfg.image_encoder, data.image, cfg)
    _entry("text_encoder", cfg.text_encoder, data.text, cfg)


def build(cfg: ModelConfig, data: PairedData) -> DualEncoder:
    """The two towers, their projections and the temperature; locked towers frozen."""
    from negscale.encoders.tuning import apply_locks

    image = _tower("image_encoder", cfg.image_encoder, data.image, cfg)
    text = _tower("text_encoder", cfg.text_encoder, data.text, cfg)
    model = DualEncoder(image, text, cfg.embed_dim, cfg.tau, cfg.learn_tau)
    apply_locks(model, cfg)
    return model


__all__ = ["ENCODERS", "DualEncoder", "build", "check", "register"]
