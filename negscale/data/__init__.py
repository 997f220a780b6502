"""Dataset registry: a name in ``data.name`` -> a loader returning :class:`PairedData`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from negscale.data.base import Modality, PairedData, Split
from negscale.errors import NegscaleError
from negscale.recipe import DataConfig


@dataclass(frozen=True)
class DatasetEntry:
    build: Callable[[DataConfig], PairedData]
    summary: str


DATASETS: dict[str, DatasetEntry] = {}


def register(name: str, summary: str):
    """Decorator: make a loader available as ``data.name = <name>``."""

    def wrap(fn: Callable[[DataConfig], PairedData]) -> Callable[[DataConfig], PairedData]:
        DATASETS[name] = DatasetEntry(fn, summary)
        return fn

    return wrap


def build(cfg: DataConfig) -> PairedData:
    if cfg.name not in DATASETS:
        raise NegscaleError(
            f"data.name: unknown dataset '{cfg.name}' (have: {', '.join(DATASETS)})"
        )
    data = DATASETS[cfg.name].build(cfg)
    if len(data.train) < cfg.n:
        raise NegscaleError(
            f"data.n: dataset '{cfg.name}' has only {len(data.train)} training pairs"
        )
    return data


@register("synthetic", "embedded generator: two noisy views of clustered latents, known true score")
def _synthetic(cfg: DataConfig) -> PairedData:
    from negscale.data.synthetic import build_synthetic

    return build_synthetic(cfg)


@register(
    "pairs",
    "your image-caption pairs: local CSV/Parquet table (data.path) + image files, in memory",
)
def _pairs(cfg: DataConfig) -> PairedData:
    from negscale.data.pairs import build_pairs

    return build_pairs(cfg)


__all__ = ["DATASETS", "Modality", "PairedData", "Split", "build", "register"]
