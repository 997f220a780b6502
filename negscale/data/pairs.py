"""Your own image-caption pairs from local files: a CSV/Parquet table or COCO JSON, plus images.

``data.path`` names a table (``.csv``, ``.parquet`` or ``.pq``) with one row
per caption: ``image`` (a file path, relative to ``data.image_root`` or the
table's folder, or absolute) and ``caption`` (text); optionally ``label``
(class name or integer id; enables zero-shot accuracy) and ``split``
(``train`` / ``eval``). Column names are ``data.image_column``,
``data.caption_column``, ``data.label_column`` and ``data.split_column``.
``data.format = "coco"`` reads a COCO captions JSON instead (``images`` with
``file_name``, ``annotations`` with ``image_id`` and ``caption``).
``data.eval_path`` (same format) is the evaluation set. Nothing is downloaded.

Why the choices:

* Several captions per image: rows with the same image (and split) are one
  item; its captions are drawn one per visit in training, the first is used in
  evaluation. Ids are images, so an image's other captions never share its
  batch and are never its negatives.
* Nested studies over n: the images are put in one order by a seeded
  permutation (``data.seed``) and a run takes the first n. The evaluation
  images never depend on n (the ``eval`` rows, a seeded ``data.n_eval`` of
  them when more; without a split, a seeded hold-out).
* Lazy: images are decoded, resized (shorter side, bicubic) and centre-cropped
  on fetch by timm's transform (:mod:`negscale.data.transforms`); only their
  headers are read up front, to report missing or non-image files at once.
  ``data.augment = true`` turns on random resized crops and flips in training.

Captions become tokens through the built-in word tokenizer (vocabulary from
all training captions) or a local transformers tokenizer
(:mod:`negscale.data.text`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from negscale.config import DataConfig
from negscale.data.assemble import one_source, spec_of
from negscale.data.base import PairedData
from negscale.data.images import FileImages
from negscale.data.packed import GroupedCaptions, PackedStrings
from negscale.errors import NegscaleError

_SHOW = 3  # how many offending rows an error names


# ---------------------------------------------------------------- table


def read_table(cfg: DataConfig, field: str = "data.path") -> tuple[pd.DataFrame, Path]:
    """The table as strings (CSV) or as stored (Parquet), and the folder images are relative to."""
    source = cfg.path if field == "data.path" else cfg.eval_path
    if not source:
        raise NegscaleError(f"{field}: the 'pairs' dataset needs a CSV or Parquet table")
    path = Path(source).expanduser()
    if not path.is_file():
        raise NegscaleError(f"{field}: no table file at {path}")
    if cfg.format == "coco":
        return read_coco(path, field), path.parent
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            # strings throughout: captions like "NA" stay text, ids keep their spelling
            table = pd.read_csv(path, dtype=str, keep_default_na=False)
        elif suffix in (".parquet", ".pq"):
            table = pd.read_parquet(path)
        else:
            raise NegscaleError(f"{field}: expected a .csv or .parquet table, got {path.name}")
    except NegscaleError:
        raise
    except Exception as exc:  # any parser failure is the user's file
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise NegscaleError(f"{field}: cannot read table {path}: {reason}") from None
    if len(table) == 0:
        raise NegscaleError(f"{field}: table {path} has no rows")
    return table.reset_index(drop=True), path.parent


def read_coco(path: Path, field: str) -> pd.DataFrame:
    """A COCO captions JSON as a table: one row per caption, ``image`` = the file name."""
    try:
        doc = json.loads(path.read_text())
        names = {int(im["id"]): str(im["file_name"]) for im in doc["images"]}
        rows = [(names[int(a["image_id"])], str(a["caption"])) for a in doc["annotations"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise NegscaleError(f"{field}: not a COCO captions JSON: {path} ({exc!r})") from None
    if not rows:
        raise NegscaleError(f"{field}: COCO file {path} has no annotations")
    return pd.DataFrame(rows, columns=["image", "caption"])


def _column(table: pd.DataFrame, field: str, name: str) -> pd.Series:
    if name not in table.columns:
        have = ", ".join(map(str, table.columns))
        raise NegscaleError(f"data.{field}: the table has no column '{name}' (have: {have})")
    return table[name]


def _optional(table: pd.DataFrame, field: str, name: str | None, default: str) -> pd.Series | None:
    """An explicitly named column must exist; the default name is used only when present."""
    if name is not None:
        return _column(table, field, name)
    return table[default] if default in table.columns else None


def _rows(index: Sequence[int] | np.ndarray) -> str:
    """Data rows numbered from 1 (the header not counted), the first few."""
    shown = ", ".join(str(int(i) + 1) for i in list(index)[:_SHOW])
    more = f" and {len(index) - _SHOW} more" if len(index) > _SHOW else ""
    return f"{shown}{more}"


def _texts(values: pd.Series, field: str, what: str) -> list[str]:
    missing = np.flatnonzero(values.isna().to_numpy())
    text = values.astype(str).str.strip()
    missing = np.union1d(missing, np.flatnonzero((text == "").to_numpy()))
    if len(missing):
        raise NegscaleError(f"data.{field}: empty {what} in table rows {_rows(missing)}")
    return text.tolist()


def label_ids(values: list[str]) -> tuple[np.ndarray, list[str]]:
    """Class names or ids -> 0..K-1: integer ids in numeric order, names alphabetically."""
    classes = sorted(set(values))
    if all(re.fullmatch(r"[+-]?\d+", c) for c in classes):
        classes = sorted(classes, key=int)
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[v] for v in values], dtype=np.int64), classes


def split_rows(table: pd.DataFrame, cfg: DataConfig) -> tuple[np.ndarray, np.ndarray]:
    """(train rows in their seeded order, eval rows): neither depends on data.n."""
    rows = np.arange(len(table))
    split = _optional(table, "split_column", cfg.split_column, "split")
    if split is None:
        if len(table) <= cfg.n_eval:
            raise NegscaleError(
                f"data.n_eval: holding out {cfg.n_eval} rows leaves none to train on "
                f"(the table has {len(table)}; set data.n_eval or add a 'split' column)"
            )
        order = np.random.default_rng([cfg.seed, 0]).permutation(rows)
        return order[cfg.n_eval :], np.sort(order[: cfg.n_eval])
    kind = split.astype(str).str.strip().str.lower().to_numpy()
    bad = np.flatnonzero(~np.isin(kind, ["train", "eval"]))
    if len(bad):
        raise NegscaleError(
            f"data.split_column: expected 'train' or 'eval', got {split.iloc[bad[0]]!r} "
            f"in table rows {_rows(bad)}"
        )
    train, held = rows[kind == "train"], rows[kind == "eval"]
    if len(train) == 0 or len(held) < 2:
        raise NegscaleError(
            f"data.split_column: need training rows and at least 2 eval rows, "
            f"got {len(train)} train and {len(held)} eval"
        )
    train = np.random.default_rng([cfg.seed, 1]).permutation(train)
    if len(held) > cfg.n_eval:
        held = np.sort(np.random.default_rng([cfg.seed, 2]).permutation(held)[: cfg.n_eval])
    return train, held


def _resolve(root: Path, name: str) -> Path:
    p = Path(name).expanduser()
    return p if p.is_absolute() else root / p


# ---------------------------------------------------------------- loader


def full_table(cfg: DataConfig) -> tuple[pd.DataFrame, Path, Path]:
    """The table, with the eval table appended as ``split = eval`` when data.eval_path is set."""
    table, root = read_table(cfg)
    eval_root = root
    if cfg.eval_path:
        held, eval_root = read_table(cfg, "data.eval_path")
        name = cfg.split_column or "split"
        table = pd.concat(
            [table.assign(**{name: "train"}), held.assign(**{name: "eval"})], ignore_index=True
        )
        table = table.astype({name: str})
    if cfg.image_root:
        root = eval_root = Path(cfg.image_root).expanduser()
    return table, root, eval_root


def group_images(table: pd.DataFrame, keys: list[str]) -> tuple[pd.DataFrame, GroupedCaptions]:
    """One row per image (first appearance order) and each image's captions, in table order,
    packed (:class:`GroupedCaptions`: no Python object per caption)."""
    # sort=False numbers the groups in order of first appearance: a code is its image's row
    codes = table.groupby(keys, sort=False).ngroup().to_numpy()
    first = np.unique(codes, return_index=True)[1]
    grouped = table.iloc[first].reset_index(drop=True)
    return grouped, GroupedCaptions.of(table["__caption"].to_numpy(), codes, len(first))


def build_pairs(cfg: DataConfig, model=None) -> PairedData:
    table, root, eval_root = full_table(cfg)
    images = _column(table, "image_column", cfg.image_column)
    table = table.assign(
        __caption=_texts(
            _column(table, "caption_column", cfg.caption_column), "caption_column", "caption"
        ),
        __image=_texts(images, "image_column", "image path"),
    )
    split_col = cfg.split_column or ("split" if "split" in table.columns else None)
    grouped, captions = group_images(table, ["__image"] + ([split_col] if split_col else []))
    label_col = _optional(grouped, "label_column", cfg.label_column, "label")
    train_rows, eval_rows = split_rows(grouped, cfg)
    kind = np.full(len(grouped), "train", dtype=object)
    kind[eval_rows] = "eval"
    paths = PackedStrings.of(
        str(_resolve(eval_root if k == "eval" else root, name))
        for k, name in zip(kind, grouped["__image"], strict=True)
    )
    labels, classes = None, None
    if label_col is not None:
        name = cfg.label_column or "label"
        labels, classes = label_ids(_texts(label_col, "label_column", f"'{name}' label"))
    source = FileImages(paths)
    info = {
        "path": str(cfg.path),
        "rows": len(table),
        "images": len(grouped),
        "train_rows": len(train_rows),
        "eval_rows": len(eval_rows),
    }
    spec = spec_of(cfg, model, augment=False, info=info)
    return one_source(source, captions, labels, (train_rows, eval_rows), spec, classes)
