"""Recipes: the validated, fully resolved description of one training run.

A recipe is a TOML file with sections ``data``, ``model``, ``negatives``,
``train``, ``eval`` and ``sweep``. Every field has a default, so a recipe only
states what differs. ``--set a.b=value`` overrides are applied to the raw
mapping *before* validation, so an override is checked exactly like a file.
Every validation failure becomes one :class:`NegscaleError` line naming the
field, which the CLI prints without a traceback.

The sections themselves are in :mod:`negscale.config.sections` and
:mod:`negscale.config.datasets`; this module holds what needs every section at
once (the cross-section rules: m against B and n, epochs against steps, the
dataset's own section) and the way from a file and ``--set`` to a recipe.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import tomllib
from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from negscale.config import run_id as identity
from negscale.config.base import Section, one_line
from negscale.config.datasets import (
    DATA_CONFIGS,
    DataSection,
    SyntheticData,
    data_section,
    data_tag,
)
from negscale.config.sections import (
    EvalConfig,
    ModelConfig,
    NegativesConfig,
    SweepConfig,
    TrainConfig,
    into_section,
)
from negscale.config.sources import SPECS, in_batch_source
from negscale.errors import NegscaleError


class Recipe(Section):
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
        return data_section(value)

    @model_validator(mode="after")
    def _feasible(self) -> Recipe:
        neg = self.negatives
        source, m = in_batch_source(neg.source, neg.m, self.train.batch_size)
        if (source, m) != (neg.source, neg.m):
            neg.source, neg.m = source, m
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
        of existing studies: see :mod:`negscale.config.run_id`.
        """
        return identity.run_id(identity.flatten(self.resolved()), self.field_defaults())

    def design_id(self) -> str:
        """The design this run belongs to (run_id's fields minus m, n, seed)."""
        return identity.design_id(identity.flatten(self.resolved()), self.field_defaults())

    def field_defaults(self) -> dict[str, Any]:
        """Section.field -> the schema default of every field this recipe's sections carry.

        A function of the sections' classes and the registered sources alone, so
        it is computed once per such combination: a sweep asks for run ids
        hundreds of times, and walking the schemas was 2 ms each (1.2 s of a
        quickstart's start and summary).
        """
        key = (tuple(type(getattr(self, n)) for n in type(self).model_fields), tuple(SPECS))
        if key not in _DEFAULTS:
            _DEFAULTS[key] = self._schema_defaults()
        return dict(_DEFAULTS[key])

    def _schema_defaults(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            section = getattr(self, name)
            if not isinstance(section, BaseModel):
                continue
            if isinstance(section, NegativesConfig):
                out.update(section.flat_option_defaults())  # keyed as run ids hash them
            for key, info in type(section).model_fields.items():
                if key == "options" and isinstance(section, NegativesConfig):
                    continue
                if not info.is_required():
                    default = info.get_default(call_default_factory=True)
                    out[f"{name}.{key}"] = json.loads(json.dumps(default, default=str))
        return out


_DEFAULTS: dict[tuple, dict[str, Any]] = {}  # Recipe.field_defaults by section classes


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
    """Shared ``negatives.*`` settings away from their default that the source never reads.

    Such a setting is hashed into the run_id but changes nothing in the run
    (``negatives.chunk`` with source ``batch``), so it is most likely a
    leftover or a mistyped source: the CLI warns about each, once. (Another
    source's own options are refused outright: see ``options_section``.)
    """
    neg = recipe.negatives
    reads = {"source", "m", "loss_form", "options", *SPECS[neg.source].fields}
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
    if target is None or str(names[-1]) == data_tag(section):
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
        keys = into_section(keys, out)
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
        field = ".".join(str(p) for p in exc.errors()[0]["loc"])
        hint = f" for data.name = '{data_tag(raw.get('data', {}))}'"
        raise NegscaleError(one_line(exc, hint=hint if field.startswith("data.") else "")) from None


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
        neg["m"] = m
    if n is not None:
        out.setdefault("data", {})["n"] = n
    if seed is not None:
        out.setdefault("train", {})["seed"] = seed
    return out
