"""The configuration layer: what a run is, validated before torch is imported.

Everything here is torch-free, and it is the lowest layer above the plumbing:
the parts (datasets, towers, negative sources) import their sections and
specs from here, never the other way round. It holds

* the recipe schema (:mod:`.recipe`: :class:`Recipe`, files, ``--set``), its
  sections (:mod:`.sections`) and the datasets' own ``[data]`` sections
  (:mod:`.datasets`);
* the parts' specs that validation needs: each negative source's rule for a
  feasible m and the fields it reads (:mod:`.sources`), the pool's mini-batch
  defaults (:mod:`.pool_rule`), the tower table (:mod:`.towers`);
* a run's identity (:mod:`.run_id`).

``negatives.build``, ``data.build`` and ``encoders.build`` are where a recipe
meets the parts; the parts themselves take plain values or their own section.
"""

from __future__ import annotations

from negscale.config.base import Section
from negscale.config.datasets import (
    DATA_CONFIGS,
    AnimalData,
    DataConfig,
    DatasetConfig,
    DigitsData,
    FolderData,
    PairsData,
    ShardsData,
    SyntheticData,
    register_data_config,
)
from negscale.config.recipe import (
    Recipe,
    apply_overrides,
    bundled_recipes,
    check_axis_overrides,
    check_negatives,
    ignored_negative_fields,
    load_recipe,
    parse_override,
    read_recipe_file,
    resolved_m,
    switch_dataset,
    validate,
    with_design,
)
from negscale.config.sections import (
    EvalConfig,
    ModelConfig,
    NegativesConfig,
    SweepConfig,
    TrainConfig,
)
from negscale.config.sources import SPECS, SourceSpec, register_spec, setting_of

__all__ = [
    "DATA_CONFIGS",
    "SPECS",
    "AnimalData",
    "DataConfig",
    "DatasetConfig",
    "DigitsData",
    "EvalConfig",
    "FolderData",
    "ModelConfig",
    "NegativesConfig",
    "PairsData",
    "Recipe",
    "Section",
    "ShardsData",
    "SourceSpec",
    "SweepConfig",
    "SyntheticData",
    "TrainConfig",
    "apply_overrides",
    "bundled_recipes",
    "check_axis_overrides",
    "check_negatives",
    "ignored_negative_fields",
    "load_recipe",
    "parse_override",
    "read_recipe_file",
    "register_data_config",
    "register_spec",
    "resolved_m",
    "setting_of",
    "switch_dataset",
    "validate",
    "with_design",
]
