"""run_id: a stable, versioned hash of what determines a run's outcome.

Version 1 (negscale 0.1.0) hashed the whole resolved recipe of that release:
every field of every section, with ``negatives.m`` filled in, minus the
execution details that do not change results (``train.device``,
``train.checkpoint_every``; since then also ``data.workers``: batches are the
same whatever the worker count) and the study's bookkeeping (``name``,
``description``, ``sweep``). Users keep studies under those ids, so the hash
stays version 1 and grows compatibly:

* every field of the version-1 schema is hashed, at its value (or, if the
  schema no longer carries it for this recipe, at its version-1 default), so
  a version-1 recipe hashes exactly as it did;
* a field added since is hashed only when set away from its default, so adding
  an option never moves an existing id, and using it always does.

A change that must move ids (a bug fix that changes results) bumps
``RUN_ID_VERSION`` and says so in the README.

Version 2 (negscale 0.2): ``negatives.pool_exact_max`` and
``negatives.pool_batch`` default to rules that follow the batch size
(``negscale.config.pool_rule``). A ``pool`` run whose computation that
changes (left at the defaults, with B // 2 < m <= 1024, or an estimator with
B // 2 < m < n) hashes the new meaning and so gets a new id; every other run, and
every run that sets the two fields, keeps its version-1 id.

Version 3 (negscale 0.3): a tower loaded from local weights (``model.image_path``,
``model.text_path``) trains at 0.1 x ``train.lr`` unless its
``model.*_lr_scale`` says otherwise (negscale/encoders/tuning.py). Such a run,
left at the default, hashes the scale and gets a new id; every other run keeps
its id.

A source's own options moved into their own section (``[negatives.pool]
gamma``); :func:`flatten` hashes them under the flat names they had
(``negatives.gamma``, ``negatives.pool_batch``: ``SourceSpec.flat_names``), so
the move changed no id and needed no new version.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from negscale.config import pool_rule
from negscale.config.sources import SPECS
from negscale.config.towers import PRETRAINED_LR_SCALE, TOWERS

RUN_ID_VERSION = 3
# execution details that never change what a run computes, and the study's bookkeeping
EXCLUDED = (
    "name",
    "description",
    "sweep",
    "train.device",
    "train.checkpoint_every",
    "data.workers",
)

# The version-1 schema: each hashed field (section.field) and its default.
V1_DEFAULTS: dict[str, Any] = {
    "data.name": "synthetic",
    "data.flavour": "vectors",
    "data.n": 4096,
    "data.n_eval": 1024,
    "data.classes": 16,
    "data.latent_dim": 8,
    "data.input_dim": 32,
    "data.cluster_spread": 0.5,
    "data.cluster_scale": 3.0,
    "data.noise": 0.3,
    "data.image_size": 16,
    "data.caption_len": 8,
    "data.vocab": 16,
    "data.seed": 1234,
    "data.path": None,
    "data.image_column": "image",
    "data.caption_column": "caption",
    "data.label_column": None,
    "data.split_column": None,
    "data.vocab_size": 10000,
    "data.tokenizer": None,
    "model.image_encoder": "auto",
    "model.text_encoder": "auto",
    "model.embed_dim": 32,
    "model.hidden": 128,
    "model.layers": 2,
    "model.tau": 0.1,
    "model.learn_tau": False,
    "model.image_path": None,
    "model.text_path": None,
    "negatives.source": "batch",
    "negatives.loss_form": "infonce",
    "negatives.pool_batch": None,
    "negatives.pool_exact_max": 1024,
    "negatives.gamma": 0.9,
    "negatives.momentum": 0.0,
    "negatives.chunk": 4096,
    "negatives.tile": 4096,
    "train.batch_size": 256,
    "train.steps": 300,
    "train.lr": 0.002,
    "train.weight_decay": 0.05,
    "train.warmup": 0.05,
    "train.grad_clip": 1.0,
    "train.precision": "auto",
    "train.compile": "auto",
    "train.seed": 0,
    "eval.batch_size": 1024,
    "eval.prototypes": 4096,
}


def flatten(resolved: dict[str, Any]) -> dict[str, Any]:
    """Section.field -> value for the two-level recipe mapping, without EXCLUDED keys."""
    flat: dict[str, Any] = {}
    for section, value in resolved.items():
        if section in EXCLUDED:
            continue
        if not isinstance(value, dict):
            flat[section] = value
            continue
        for key, item in value.items():
            if section == "negatives" and isinstance(item, dict):
                flat.update(options_flat(key, item))  # [negatives.<source>]
            elif f"{section}.{key}" not in EXCLUDED:
                flat[f"{section}.{key}"] = item
    return flat


def options_flat(source: str, options: dict[str, Any]) -> dict[str, Any]:
    """A source's section as ``negatives.<flat name>`` keys: the names run ids hashed
    before the sections existed, so moving an option into its section moves no id."""
    spec = SPECS.get(source)
    return {f"negatives.{spec.flat_name(k) if spec else f'{source}.{k}'}": v
            for k, v in options.items()}  # fmt: skip


def hashed_fields(flat: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """What version 1 hashes: the v1 fields (filled from V1_DEFAULTS when absent), plus
    each newer field that differs from ``defaults`` (the current schema's defaults)."""
    out = {k: flat.get(k, v) for k, v in V1_DEFAULTS.items()}
    out.update(pool_rule.v1_hashed(flat))  # version 2: the pool defaults follow B
    out.update(pretrained_lr_hashed(flat))  # version 3: pretrained towers train at 0.1 x lr
    for key, value in flat.items():
        if key in out:
            continue
        if key == "negatives.m" or key not in defaults or value != defaults[key]:
            out[key] = value
    return out


def pretrained_lr_hashed(flat: dict[str, Any]) -> dict[str, Any]:
    """Version 3: a tower loaded from local weights with no lr scale of its own now trains
    at 0.1 x train.lr; that meaning is hashed, so such a run gets a new id. A run without
    local weights, or with the scale given, hashes as before (the scale only when set)."""
    out = {}
    for tower in TOWERS:
        if flat.get(f"model.{tower}_path") and flat.get(f"model.{tower}_lr_scale") is None:
            out[f"model.{tower}_lr_scale"] = PRETRAINED_LR_SCALE
    return out


def run_id(flat: dict[str, Any], defaults: dict[str, Any]) -> str:
    """16 hex digits of sha256 over the nested JSON of :func:`hashed_fields`."""
    nested: dict[str, Any] = {}
    for key, value in hashed_fields(flat, defaults).items():
        section, _, name = key.partition(".")
        nested.setdefault(section, {})[name] = value
    blob = json.dumps(nested, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


DESIGN_AXES = ("negatives.m", "data.n", "train.seed")
POOL_FIELDS = ("negatives.pool_exact_max", "negatives.pool_batch")


def design_id(flat: dict[str, Any], defaults: dict[str, Any]) -> str:
    """The study design a run belongs to: what run_id hashes, minus m, n and seed.

    ``batch`` counts as ``subsample`` (it is the subsample of all B−1 other
    items), so a sweep over m whose largest point is in-batch is one design.
    Runs of one design differ only along the axes a study varies; a fit covers
    one design at a time. With ``train.epochs`` the steps follow n (steps =
    round(epochs·n/B)), so they are an axis too: the epochs are the design.
    A pool's two mini-batch fields enter as set (version 2's run_id hashes them
    per point, by m and n). 12 hex digits.
    """
    fields = hashed_fields(flat, defaults)
    if flat.get("negatives.source") == "pool":
        # as set, not as hashed: v1_hashed depends on m and n, and a design must not
        for key in POOL_FIELDS:
            fields[key] = flat.get(key)
    for key in DESIGN_AXES:
        fields.pop(key, None)
    if fields.get("train.epochs") is not None:
        fields.pop("train.steps", None)
    if fields.get("negatives.source") == "batch":
        fields["negatives.source"] = "subsample"
    blob = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]
