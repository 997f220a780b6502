"""Recipes: the validated, fully resolved description of one training run.

A recipe is a TOML file with sections ``data``, ``model``, ``negatives``,
``train``, ``eval`` and ``sweep``. Every field has a default, so a recipe only
states what differs. ``--set a.b=value`` overrides are applied to the raw
mapping *before* validation, so an override is checked exactly like a file.
Every validation failure becomes one :class:`NegscaleError` line naming the
field, which the CLI prints without a traceback.

Why one module of about 600 lines: the whole schema is validated before torch
is imported, and the cross-section rules (m against B and n, epochs against
steps, the dataset's own section) need every section at once. Splitting it
into a torch-free config layer per part is planned (the house issue, item 1).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import tomllib
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    field_validator,
    model_validator,
)

from negscale.errors import NegscaleError
from negscale.negatives.catalog import SPECS
from negscale.registry import Registry


def setting_of(source: str) -> str:
    """A registered source's setting (self-supervised | supervised), as it declares it."""
    return SPECS[source].setting


class _Section(BaseModel):
    # strict: a TOML string where a number belongs is an error, never a coercion (a coerced
    # value would train under the same run id as the number)
    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True)


class _DataBase(_Section):
    """What every dataset has: how many training pairs (n), held-out pairs, loading."""

    n: int = Field(4096, ge=2, description="training pairs (anchors)")
    n_eval: int = Field(1024, ge=2, description="held-out evaluation pairs")
    seed: int = Field(1234, ge=0, description="data seed: the fixed order (and synthetic task)")
    workers: int | None = Field(
        None, ge=0, description="DataLoader processes; default 0 in memory, up to 4 when decoding"
    )


class SyntheticData(_DataBase):
    """The embedded generator (negscale.data.synthetic): its task knobs."""

    name: Literal["synthetic"] = "synthetic"
    flavour: Literal["vectors", "images"] = "vectors"
    classes: int = Field(16, ge=1, description="latent clusters (class labels)")
    latent_dim: int = Field(8, ge=1)
    input_dim: int = Field(32, ge=1, description="observed dimension of each vector view")
    cluster_spread: float = Field(0.5, gt=0, description="within-cluster sd of the latent")
    cluster_scale: float = Field(3.0, ge=0, description="sd of the cluster centres")
    noise: float = Field(0.3, ge=0, description="view noise sd: higher means harder pairs")
    image_size: int = Field(16, ge=8)
    caption_len: int = Field(8, ge=1)
    vocab: int = Field(16, ge=2, description="token bins per latent coordinate (images flavour)")


class _ImageData(_DataBase):
    """Image datasets: pixels, captions to tokens, augmentation, pairing, bad files."""

    image_size: int = Field(16, ge=8, description="square side the towers see, in pixels")
    caption_len: int = Field(8, ge=1, description="tokens per caption (padded or cut)")
    vocab_size: int = Field(
        10000, ge=3, description="word ids incl. 0 = pad, 1 = unknown (built-in tokenizer)"
    )
    tokenizer: str | None = Field(
        None, description="local transformers tokenizer folder instead of the word tokenizer"
    )
    views: Literal["pair", "two-view"] = Field(
        "pair", description="pair: image-caption; two-view: a second augmentation of the image"
    )
    augment: bool | None = Field(
        None, description="random resized crop + flip in training (default: on, off for pairs)"
    )
    crop_min: float = Field(0.08, gt=0, le=1, description="smallest area of a random crop")
    skip_bad: bool = Field(False, description="skip and count bad images instead of failing")


class PairsData(_ImageData):
    """Your own image-caption table (negscale.data.pairs)."""

    name: Literal["pairs"] = "pairs"
    path: str | None = Field(None, description="the CSV/Parquet table or COCO captions JSON")
    format: Literal["table", "coco"] = Field(
        "table", description="a CSV/Parquet table, or a COCO captions JSON"
    )
    eval_path: str | None = Field(None, description="a separate evaluation table (same format)")
    image_root: str | None = Field(
        None, description="folder image paths are relative to (default: the table's)"
    )
    image_column: str = Field("image", description="column of image file paths")
    caption_column: str = Field("caption", description="column of caption text")
    label_column: str | None = Field(
        None, description="class column (default: 'label' when the table has one)"
    )
    split_column: str | None = Field(
        None, description="train/eval column (default: 'split' when the table has one)"
    )


class _ClassData(_ImageData):
    """Labelled images whose captions come from templates."""

    templates: list[str] = Field(
        default_factory=lambda: ["a photo of a {}."],
        description="caption templates, {} = class name (zero-shot prompt ensemble)",
    )


class FolderData(_ClassData):
    """Class-per-directory images (negscale.data.folder)."""

    name: Literal["folder"] = "folder"
    path: str | None = Field(None, description="root folder: one subfolder per class")
    eval_path: str | None = Field(None, description="evaluation root of the same layout")


class ShardsData(_ImageData):
    """webdataset tar shards (negscale.data.shards)."""

    name: Literal["shards"] = "shards"
    path: str | None = Field(None, description="brace-expandable shard spec or folder of .tar")
    eval_path: str | None = Field(None, description="evaluation shards (same kinds)")
    caption_column: str = Field("caption", description="caption key inside {key}.json")
    label_column: str | None = Field(None, description="class key inside {key}.json")


class DigitsData(_ClassData):
    """scikit-learn's bundled 8x8 digits (negscale.data.bundled)."""

    name: Literal["digits"] = "digits"


class AnimalData(_ClassData):
    """animal-mnist's 28x28 silhouettes (negscale.data.bundled; extra [animal])."""

    name: Literal["animal-mnist"] = "animal-mnist"


DatasetConfig = _DataBase  # public name: the base of a dataset's own [data] section
DATA_CONFIGS: Registry[type[_DataBase]] = Registry("dataset", "data.name")


def register_data_config(config: type[_DataBase]) -> type[_DataBase]:
    """Make ``config`` the ``[data]`` section of recipes with ``data.name`` = its name
    (the ``name`` field's default); ``negscale.data.register`` calls it."""
    return DATA_CONFIGS.add(config.model_fields["name"].default, config)


for _config in (SyntheticData, PairsData, FolderData, ShardsData, DigitsData, AnimalData):
    register_data_config(_config)


def _data_tag(value: Any) -> str:
    """The union's tag: ``data.name``, "synthetic" when a recipe leaves it out."""
    if isinstance(value, dict):
        return str(value.get("name", "synthetic"))
    return str(getattr(value, "name", "synthetic"))


# Any registered dataset's section (dumped with its own fields, not the base's)
DataSection = SerializeAsAny[_DataBase]


def _data_section(value: Any) -> Any:
    """The ``[data]`` mapping validated as its dataset's own section (``data.name``)."""
    if isinstance(value, _DataBase) or not isinstance(value, dict):
        return value  # an instance, or a wrong type that the field's check reports
    return DATA_CONFIGS[_data_tag(value)].model_validate(value)


def DataConfig(**fields: Any) -> DatasetConfig:
    """The config class of ``fields["name"]`` (default synthetic), validated.

    One class per dataset, so a recipe for one dataset cannot carry another's
    fields: a stray field is an "unknown key" error naming it.
    """
    return DATA_CONFIGS[str(fields.get("name", "synthetic"))](**fields)


class ModelConfig(_Section):
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


class NegativesConfig(_Section):
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


class TrainConfig(_Section):
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


class EvalConfig(_Section):
    """Held-out retrieval evaluation."""

    batch_size: int = Field(1024, ge=1)
    prototypes: int = Field(4096, ge=1, description="train captions used for zero-shot classes")
    retrieval: Literal["instance", "class"] = Field(
        "instance",
        description="positives of a query: its own pair (instance) or every item of its class",
    )


class SweepConfig(_Section):
    """Default grid for ``negscale sweep`` (overridable on the command line)."""

    negatives: list[int] = Field(default_factory=list)
    ratios: list[float] = Field(default_factory=list)
    samples: list[int] = Field(default_factory=list)
    seeds: list[int] = Field(default_factory=lambda: [0])


class Recipe(_Section):
    """One run, fully resolved: the unit that ``run_id`` hashes."""

    name: str = "custom"
    description: str = ""
    data: DataSection = Field(default_factory=SyntheticData)
    model: ModelConfig = Field(default_factory=ModelConfig)
    negatives: NegativesConfig = Field(default_factory=NegativesConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    sweep: SweepConfig = Field(default_factory=SweepConfig)

    @field_validator("data", mode="before")
    @classmethod
    def _dataset_section(cls, value: Any) -> Any:
        return _data_section(value)

    @model_validator(mode="after")
    def _feasible(self) -> Recipe:
        neg = self.negatives
        if neg.source == "subsample" and neg.m == self.train.batch_size - 1:
            # every other batch item: that is `batch` (same run, same run_id, its faster path)
            neg.source, neg.m = "batch", None
        _steps_from_epochs(self)
        check_negatives(self)
        return self

    @property
    def m(self) -> int:
        """Negatives per anchor actually requested (batch: B-1)."""
        return resolved_m(self)

    @property
    def setting(self) -> str:
        return self.negatives.setting

    def resolved(self) -> dict[str, Any]:
        """The recipe as plain data, with m filled in."""
        data = self.model_dump(mode="json")
        data["negatives"]["m"] = self.m
        return data

    def run_id(self) -> str:
        """Stable hash of everything that determines the outcome of the run.

        Execution details that must not change results (device, checkpoint
        cadence) and the sweep grid are left out, so a run is recognised as done
        wherever it ran. Versioned so that new recipe fields never move the ids
        of existing studies: see :mod:`negscale.run_id`.
        """
        from negscale.run_id import flatten, run_id

        return run_id(flatten(self.resolved()), self.field_defaults())

    def design_id(self) -> str:
        """The design this run belongs to (run_id's fields minus m, n, seed)."""
        from negscale.run_id import design_id, flatten

        return design_id(flatten(self.resolved()), self.field_defaults())

    def field_defaults(self) -> dict[str, Any]:
        """Section.field -> the schema default of every field this recipe's sections carry."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            section = getattr(self, name)
            if not isinstance(section, BaseModel):
                continue
            for key, info in type(section).model_fields.items():
                if not info.is_required():
                    default = info.get_default(call_default_factory=True)
                    out[f"{name}.{key}"] = json.loads(json.dumps(default, default=str))
        return out


def _steps_from_epochs(recipe: Recipe) -> None:
    """With ``train.epochs``, steps follow n: the fixed-epochs budget a sweep over n needs.

    It decides ``train.steps`` (a recipe's own steps, e.g. from ``--set
    train.epochs=30`` on a bundled recipe, give way); a resolved recipe carries
    both, consistently, so validating it again gives the same run.
    """
    train = recipe.train
    if train.epochs is not None:
        train.steps = max(1, round(train.epochs * recipe.data.n / train.batch_size))


def resolved_m(recipe: Recipe) -> int:
    neg = recipe.negatives
    spec = SPECS[neg.source]
    if neg.m is None and not spec.in_batch:
        raise NegscaleError(f"negatives.m: required for source '{neg.source}'")
    return spec.resolve_m(neg.m, recipe.train.batch_size)


def check_negatives(recipe: Recipe) -> None:
    """Reject m that the chosen negative source cannot supply (the source's own rule)."""
    neg, batch, n = recipe.negatives, recipe.train.batch_size, recipe.data.n
    if batch > n:
        raise NegscaleError(f"train.batch_size: {batch} exceeds data.n = {n} training pairs")
    problem = SPECS[neg.source].check(neg.m, batch, n)
    if problem:
        raise NegscaleError(f"negatives.m: {problem}")


def ignored_negative_fields(recipe: Recipe) -> list[str]:
    """``negatives.*`` settings away from their default that the recipe's source never reads.

    Such a setting is hashed into the run_id but changes nothing in the run
    (``negatives.gamma`` with source ``batch``), so it is most likely a
    leftover or a mistyped source: the CLI warns about each, once.
    """
    neg = recipe.negatives
    reads = {"source", "m", "loss_form", *SPECS[neg.source].fields}
    return [
        f"negatives.{name} = {getattr(neg, name)!r}"
        for name, info in type(neg).model_fields.items()
        if name not in reads and getattr(neg, name) != info.default
    ]


# ---------------------------------------------------------------- loading


def bundled_recipes() -> dict[str, Path]:
    """Recipes shipped inside the package, by name."""
    root = resources.files("negscale") / "recipes"
    return {Path(p.name).stem: Path(str(p)) for p in root.iterdir() if p.name.endswith(".toml")}


def read_recipe_file(source: str) -> tuple[str, dict[str, Any]]:
    """Return (name, raw mapping) for a recipe path or bundled recipe name."""
    path = Path(source)
    if not path.is_file():
        bundled = bundled_recipes()
        if source not in bundled:
            names = ", ".join(sorted(bundled)) or "none"
            raise NegscaleError(f"recipe '{source}': no such file or bundled recipe ({names})")
        path = bundled[source]
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise NegscaleError(f"recipe {path}: invalid TOML: {exc}") from None
    return raw.get("name", path.stem), raw


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``a.b=value``; the value is read as TOML (numbers, bools, lists), else a string."""
    if "=" not in text:
        raise NegscaleError(f"--set {text!r}: expected key.path=value")
    key, value = text.split("=", 1)
    keys = [k for k in key.strip().split(".") if k]
    if not keys:
        raise NegscaleError(f"--set {text!r}: empty key")
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()
    return keys, parsed


def switch_dataset(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``--set data.name=X`` on a recipe for another dataset keeps only the file's [data]
    fields that X has (n, n_eval, seed, ...): the others belong to the dataset left behind.
    Fields set with ``--set`` are never dropped, so a stray one is still an error."""
    names = [v for k, v in map(parse_override, overrides) if k == ["data", "name"]]
    section = raw.get("data")
    if not names or not isinstance(section, dict):
        return raw
    target = DATA_CONFIGS.get(str(names[-1]))
    if target is None or str(names[-1]) == _data_tag(section):
        return raw
    out = json.loads(json.dumps(raw))
    out["data"] = {k: v for k, v in section.items() if k in target.model_fields}
    return out


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``--set`` overrides in order (see :func:`steps_replace_epochs` for steps)."""
    out = json.loads(json.dumps(raw))
    keys_set: list[list[str]] = []
    for text in overrides:
        keys, value = parse_override(text)
        keys_set.append(keys)
        node = out
        for k in keys[:-1]:
            child = node.setdefault(k, {})
            if not isinstance(child, dict):
                raise NegscaleError(f"--set {text!r}: '{k}' is not a section")
            node = child
        node[keys[-1]] = value
    return steps_replace_epochs(out, keys_set)


def steps_replace_epochs(raw: dict[str, Any], keys_set: list[list[str]]) -> dict[str, Any]:
    """``--set train.steps=K`` without ``--set train.epochs`` drops the file's epochs.

    Epochs decide the steps (:func:`_steps_from_epochs`), so on a recipe with
    ``train.epochs`` (the bundled studies) an explicit steps count would
    otherwise be silently replaced; asked for, it wins: K steps at every n.
    """
    train = raw.get("train")
    asked = ["train", "steps"] in keys_set and ["train", "epochs"] not in keys_set
    if asked and isinstance(train, dict):
        train.pop("epochs", None)
    return raw


def validate(raw: dict[str, Any]) -> Recipe:
    """Validate a raw mapping; the first problem becomes a one-line error naming its field.

    Feasibility checks (``check_negatives``) raise NegscaleError, which pydantic
    lets through unwrapped because it is not a ValueError.
    """
    try:
        return Recipe.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = list(err["loc"])
        field = ".".join(str(p) for p in loc) or "recipe"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
            if field.startswith("data."):
                msg += f" for data.name = '{_data_tag(raw.get('data', {}))}'"
        got = err.get("input")
        suffix = f" (got {got!r})" if got is not None and not isinstance(got, dict) else ""
        raise NegscaleError(f"{field}: {msg}{suffix}") from None


def load_recipe(
    source: str,
    overrides: list[str] | None = None,
    *,
    m: int | None = None,
    n: int | None = None,
    seed: int | None = None,
) -> Recipe:
    """Load, override (``--set``, then ``--negatives/--samples/--seed``), validate."""
    name, raw = read_recipe_file(source)
    raw = apply_overrides(switch_dataset(raw, list(overrides or [])), list(overrides or []))
    raw["name"] = raw.get("name", name)
    return validate(with_design(raw, m=m, n=n, seed=seed))


def check_axis_overrides(overrides: list[str], given: dict[str, tuple[Any, str]]) -> None:
    """A design axis given twice (``--negatives 8`` and ``--set negatives.m=20``) is an
    error: one would win without a word. ``given``: field -> (its flag's value, the flag)."""
    for text in overrides:
        keys, _ = parse_override(text)
        key = ".".join(keys)
        value, flag = given.get(key, (None, ""))
        if value is not None:
            raise NegscaleError(
                f"{flag} and --set {text}: {key} is given twice; give it once ({flag}, or --set)"
            )


def with_design(
    raw: dict[str, Any], *, m: int | None = None, n: int | None = None, seed: int | None = None
) -> dict[str, Any]:
    """Set the study design axes (m, n, seed) on a raw recipe mapping."""
    out = json.loads(json.dumps(raw))
    if m is not None:
        neg = out.setdefault("negatives", {})
        if neg.get("source", "batch") == "batch":
            # m below B-1 with in-batch negatives means a subsample of the batch.
            neg["source"] = "subsample"
        neg["m"] = m
    if n is not None:
        out.setdefault("data", {})["n"] = n
    if seed is not None:
        out.setdefault("train", {})["seed"] = seed
    return out
