"""The ``[data]`` section: one class per dataset, chosen by ``data.name``.

Each dataset declares its own fields (a subclass of :class:`DatasetConfig`), so
a recipe for one dataset cannot carry another's fields. The bundled datasets'
sections are here, torch-free, so a recipe validates before torch is imported;
a plugin's dataset passes its own section to ``negscale.data.register``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SerializeAsAny

from negscale.config.base import Section
from negscale.registry import Registry


class _DataBase(Section):
    """What every dataset has: how many training pairs (n), held-out pairs, loading."""

    n: int = Field(4096, ge=2, description="training pairs (anchors)")
    n_eval: int = Field(1024, ge=2, description="held-out evaluation pairs")
    seed: int = Field(1234, ge=0, description="data seed: the fixed order (and synthetic task)")
    workers: int | None = Field(
        None, ge=0, description="DataLoader processes; default 0 in memory, up to 4 when decoding"
    )

    def vectors(self) -> bool:
        """Whether both sides are plain vectors, known without building the data (so a
        sweep knows, torch-free, which runs the built-in MLP towers train: those stack)."""
        return False


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

    def vectors(self) -> bool:
        return self.flavour == "vectors"


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


def data_tag(value: Any) -> str:
    """The union's tag: ``data.name``, "synthetic" when a recipe leaves it out."""
    if isinstance(value, dict):
        return str(value.get("name", "synthetic"))
    return str(getattr(value, "name", "synthetic"))


# Any registered dataset's section (dumped with its own fields, not the base's)
DataSection = SerializeAsAny[_DataBase]


def data_section(value: Any) -> Any:
    """The ``[data]`` mapping validated as its dataset's own section (``data.name``)."""
    if isinstance(value, _DataBase) or not isinstance(value, dict):
        return value  # an instance, or a wrong type that the field's check reports
    return DATA_CONFIGS[data_tag(value)].model_validate(value)


def DataConfig(**fields: Any) -> DatasetConfig:
    """The config class of ``fields["name"]`` (default synthetic), validated.

    One class per dataset, so a recipe for one dataset cannot carry another's
    fields: a stray field is an "unknown key" error naming it.
    """
    return DATA_CONFIGS[str(fields.get("name", "synthetic"))](**fields)
