"""Dataset registry: a name in ``data.name`` -> a loader returning :class:`PairedData`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from negscale.config import DataConfig, ModelConfig, register_data_config
from negscale.data.base import Modality, PairedData, Split
from negscale.errors import NegscaleError
from negscale.registry import Registry

Builder = Callable[[DataConfig, Any], PairedData]  # (data config, model config or None)


@dataclass(frozen=True)
class DatasetEntry:
    build: Builder
    summary: str


DATASETS: Registry[DatasetEntry] = Registry("dataset", "data.name")


def register(name: str, summary: str, config: type | None = None):
    """Decorator: make a loader available as ``data.name = <name>``.

    ``config`` is the dataset's recipe section (a ``negscale.config`` data
    config class whose ``name`` defaults to ``name``); the bundled datasets'
    sections are in ``negscale.config``, so they pass none.
    """

    def wrap(fn: Builder) -> Builder:
        if config is not None:
            register_data_config(config)
        DATASETS.add(name, DatasetEntry(fn, summary))
        return fn

    return wrap


def build(cfg: DataConfig, model: ModelConfig | None = None) -> PairedData:
    """The dataset of ``cfg``; ``model`` (the towers) picks tokenizer and image statistics."""
    data = DATASETS[cfg.name].build(cfg, model)
    if len(data.train) < cfg.n:
        raise NegscaleError(
            f"data.n: dataset '{cfg.name}' has only {len(data.train)} training pairs"
        )
    return data


@register("synthetic", "embedded generator: two noisy views of clustered latents, known true score")
def _synthetic(cfg: DataConfig, model: Any = None) -> PairedData:
    from negscale.data.synthetic import build_synthetic

    return build_synthetic(cfg)


@register(
    "pairs",
    "your image-caption pairs: a CSV/Parquet table or COCO captions JSON (data.path) + images",
)
def _pairs(cfg: DataConfig, model: Any = None) -> PairedData:
    from negscale.data.pairs import build_pairs

    return build_pairs(cfg, model)


@register("folder", "class-per-directory images (ImageNet layout), captions from data.templates")
def _folder(cfg: DataConfig, model: Any = None) -> PairedData:
    from negscale.data.folder import build_folder

    return build_folder(cfg, model)


@register("shards", "webdataset tar shards (img2dataset/open_clip layout), random access by index")
def _shards(cfg: DataConfig, model: Any = None) -> PairedData:
    from negscale.data.shards import build_shards

    return build_shards(cfg, model)


@register("digits", "scikit-learn's bundled 8x8 digits: 1797 images, 10 classes, offline")
def _digits(cfg: DataConfig, model: Any = None) -> PairedData:
    from negscale.data.bundled import build_digits

    return build_digits(cfg, model)


@register(
    "animal-mnist",
    "10,000 28x28 animal silhouettes, 10 classes (pip install --no-deps animal-mnist)",
)
def _animal(cfg: DataConfig, model: Any = None) -> PairedData:
    from negscale.data.bundled import build_animal_mnist

    return build_animal_mnist(cfg, model)


__all__ = ["DATASETS", "Modality", "PairedData", "Split", "build", "register"]
