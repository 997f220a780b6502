"""The recipe's other sections: the towers, the negatives, training, evaluation, the grid."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from negscale.config.base import Section
from negscale.config.sources import SPECS, setting_of


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
    pool_batch: int | None = Field(
        None,
        ge=1,
        description="pool estimator: negative mini-batch per step: exactly min(k, m) items"
        " (the batch's own pool members first); None: every pool member of the batch,"
        " topped up to B // 2",
    )
    pool_exact_max: int | None = Field(
        None,
        ge=0,
        description="pool: encode the whole pool, exact loss, up to this m (None: B // 2)",
    )
    gamma: float = Field(
        0.9,
        gt=0,
        le=1,
        description="pool estimator: u_i rate, max(gamma, 1/visit); 1 = no averaging",
    )
    momentum: float = Field(
        0.0, ge=0, lt=1, description="queue: EMA rate of a MoCo key encoder; 0 = the live model"
    )
    chunk: int = Field(
        4096, ge=1, description="independent/pool: encode extra negatives in chunks of this size"
    )
    tile: int = Field(
        4096, ge=1, description="tiled LSE above this many columns: O(B * tile) loss memory"
    )
    class_aware: bool = Field(
        True,
        description="independent: draw other-class items when labelled; false: the marginal"
        " (any other training item, labels ignored)",
    )

    @field_validator("source")
    @classmethod
    def _registered(cls, source: str) -> str:
        SPECS[source]  # an unknown source is a one-line error naming the ones there are
        return source

    @property
    def setting(self) -> str:
        return setting_of(self.source)


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
