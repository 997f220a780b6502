"""The recipe's other sections: the towers, the negatives, training, evaluation, the grid."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    Field,
    SerializeAsAny,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from negscale.config.base import Section, one_line
from negscale.config.sources import SPECS, NoOptions, owner_of_flat, setting_of
from negscale.errors import NegscaleError


class ModelConfig(Section):
    """Two towers projected to one embedding space, and the temperature."""

    image_encoder: str = "auto"
    text_encoder: str = "auto"
    embed_dim: int = Field(32, ge=1)
    hidden: int = Field(128, ge=1)
    layers: int = Field(2, ge=1)
    # house: the model clamps 1/tau at 100 (CLIP's bound), so a smaller tau would train
    # at 0.01 while run_id hashed the value asked for: refuse it instead.
    tau: float = Field(0.1, ge=0.01, description="temperature, at least 0.01 (CLIP's clamp)")
    learn_tau: bool = False
    image_path: str | None = Field(None, description="local pretrained image tower (timm)")
    text_path: str | None = Field(
        None,
        description="local pretrained text tower (transformers): a folder, or"
        " 'package:NAME/SUBDIR' for a model an installed package ships",
    )
    # per-tower training (negscale/encoders/tuning.py)
    image_lr_scale: float | None = Field(
        None, gt=0, description="image tower lr = this x train.lr (unset: 1; 0.1 with image_path)"
    )
    text_lr_scale: float | None = Field(
        None, gt=0, description="text tower lr = this x train.lr (unset: 1; 0.1 with text_path)"
    )
    image_weight_decay: float | None = Field(
        None, ge=0, description="the image tower's weight decay (unset: train.weight_decay)"
    )
    text_weight_decay: float | None = Field(
        None, ge=0, description="the text tower's weight decay (unset: train.weight_decay)"
    )
    lock_image: bool = Field(False, description="freeze the image tower (LiT)")
    lock_text: bool = Field(False, description="freeze the text tower")
    lock_image_unlocked: int = Field(
        0, ge=0, description="with lock_image: its last N layer groups still train"
    )
    lock_text_unlocked: int = Field(
        0, ge=0, description="with lock_text: its last N layers still train"
    )


class NegativesConfig(Section):
    """How the m negatives of each anchor arise, and which loss form scores them."""

    source: str = "batch"
    m: int | None = Field(
        None,
        ge=1,
        description="negatives per anchor (batch: B-1); pool: pool size; queue: queue length"
        " (an anchor sees B-1 + the queue: record column negatives_used)",
    )
    loss_form: Literal["paper", "infonce"] = "infonce"
    chunk: int = Field(
        4096, ge=1, description="independent/pool: encode extra negatives in chunks of this size"
    )
    tile: int = Field(
        4096, ge=1, description="tiled LSE above this many columns: O(B * tile) loss memory"
    )
    options: SerializeAsAny[Section] = Field(
        default_factory=NoOptions,
        description="the source's own options: the section [negatives.<source>]",
    )

    @model_validator(mode="before")
    @classmethod
    def _own_section(cls, value: Any) -> Any:
        return options_section(value)

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """The options go back under the source's name, as a recipe writes them."""
        data = handler(self)
        options = data.pop("options", None)
        if options:
            data[self.source] = options
        return data

    @field_validator("source")
    @classmethod
    def _registered(cls, source: str) -> str:
        SPECS[source]  # an unknown source is a one-line error naming the ones there are
        return source

    @property
    def setting(self) -> str:
        return setting_of(self.source)

    @staticmethod
    def flat_option_defaults() -> dict[str, Any]:
        """``negatives.<flat name>`` -> default, for every source's options: a recipe
        dumped before the sections carries them all, and at their defaults they are
        not hashed, as then."""
        specs = SPECS.values()
        fields = [(s, k, f) for s in specs for k, f in s.options.model_fields.items()]
        return {f"negatives.{s.flat_name(k)}": f.default for s, k, f in fields}


def options_section(value: Any) -> Any:
    """A raw ``[negatives]`` mapping with its source's section moved to ``options``.

    The section is ``[negatives.<source>]``; a setting in the older flat
    spelling (``negatives.gamma``) is moved into it when the source reads it.
    Another source's section, or its flat option set away from its default, is
    a one-line error: a recipe cannot carry options that its source ignores.
    (At its default a flat one is dropped: a recipe dumped before the sections,
    as records and checkpoints hold it, carries every source's options.)
    """
    if not isinstance(value, dict) or isinstance(value.get("options"), Section):
        return value  # an instance, a wrong type for the field check, or an assignment's values
    if "options" in value:
        raise NegscaleError(
            "negatives.options: unknown key; a source's own options go in its section,"
            " [negatives.<source>]"
        )
    source = value.get("source", "batch")
    spec = SPECS.get(source) if isinstance(source, str) else None
    if spec is None:
        return value  # the source field's own check names the sources there are
    out = dict(value)
    own = out.pop(source, {})
    if not isinstance(own, dict):
        raise NegscaleError(f"negatives.{source}: must be a section of options, got {own!r}")
    own = dict(own)
    for key in list(out):
        if key in SPECS and key != source:
            raise NegscaleError(
                f"negatives.{key}: options of source '{key}', but negatives.source is"
                f" '{source}'; drop the section or change the source"
            )
        found = owner_of_flat(key)
        if found is None:
            continue
        owner, option = found
        if owner.name != source and out[key] == owner.options.model_fields[option].default:
            del out[key]  # as every recipe dumped before the sections carries it: harmless
            continue
        if owner.name != source:
            raise NegscaleError(
                f"negatives.{key}: an option of source '{owner.name}' ([negatives."
                f"{owner.name}] {option}), but negatives.source is '{source}'"
            )
        if option in own:
            raise NegscaleError(
                f"negatives.{key} and negatives.{source}.{option}: the same option twice"
            )
        own[option] = out.pop(key)
    try:
        out["options"] = spec.options.model_validate(own)
    except ValidationError as exc:  # named in its section, not as a field of [negatives]
        raise NegscaleError(one_line(exc, f"negatives.{source}")) from None
    return out


class TrainConfig(Section):
    """Optimisation and execution: what makes the run reproducible and fast."""

    batch_size: int = Field(256, ge=2)
    steps: int = Field(300, ge=1)
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(0.05, ge=0)
    warmup: float = Field(0.05, ge=0, lt=1, description="warmup fraction of steps")
    grad_clip: float = Field(1.0, ge=0, description="0 disables clipping")
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    compile: Literal["auto", "on", "off"] = "auto"
    seed: int = Field(0, ge=0, description="run seed: init, batch order, negative draws")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    checkpoint_every: int = Field(0, ge=0, description="steps between checkpoints; 0: end only")
    micro_batch: int | None = Field(
        None,
        ge=0,
        description="gradient caching: embed the batch and extra negatives in chunks of this"
        " size, same gradients (None/0: off)",
    )
    epochs: float | None = Field(
        None,
        gt=0,
        description="a budget per n: steps = round(epochs * data.n / batch_size), the same"
        " epochs at every n of a study; overrides train.steps (None: train.steps, the same"
        " samples seen at every n)",
    )

    select: Literal["last", "best"] = Field(
        "last",
        description="the weights a run reports: the last step's, or the best validation AUC's"
        " (evaluated about 50 times a run on pairs the run never trains on; docs/studies.md)",
    )

    @field_validator("micro_batch")
    @classmethod
    def _off(cls, value: int | None) -> int | None:
        """0 means off, as None does: one run, one run_id."""
        return value or None


class EvalConfig(Section):
    """Held-out retrieval evaluation."""

    batch_size: int = Field(1024, ge=1)
    prototypes: int = Field(4096, ge=1, description="train captions used for zero-shot classes")
    retrieval: Literal["instance", "class"] = Field(
        "instance",
        description="positives of a query: its own pair (instance) or every item of its class",
    )


class SweepConfig(Section):
    """Default grid for ``negscale sweep`` (overridable on the command line)."""

    negatives: list[int] = Field(default_factory=list)
    ratios: list[float] = Field(default_factory=list)
    samples: list[int] = Field(default_factory=list)
    seeds: list[int] = Field(default_factory=lambda: [0])


def into_section(keys: list[str], raw: dict[str, Any]) -> list[str]:
    """An override's keys, with ``negatives.<flat option>`` moved into its source's
    section when the recipe writes that section (so ``--set negatives.gamma=0.5``
    replaces ``[negatives.pool] gamma`` instead of giving the option twice)."""
    if len(keys) != 2 or keys[0] != "negatives" or (found := owner_of_flat(keys[1])) is None:
        return keys
    (owner, option), negatives = found, raw.get("negatives")
    if not isinstance(negatives, dict) or not isinstance(negatives.get(owner.name), dict):
        return keys
    return ["negatives", owner.name, option]
