"""Your own image-caption pairs from local files: a CSV/Parquet table plus image files.

``data.path`` names a table (``.csv``, ``.parquet`` or ``.pq``) with one row
per pair: ``image`` (a file path, relative to the table's folder or absolute)
and ``caption`` (text); optionally ``label`` (class name or integer id; enables
zero-shot accuracy) and ``split`` (``train`` / ``eval``). Column names are
``data.image_column``, ``data.caption_column``, ``data.label_column`` and
``data.split_column``. Nothing is downloaded, ever.

Why the choices:

* Nested studies over n: the training rows are put in one order by a seeded
  permutation (``data.seed``) and a run takes the first n, so a smaller n is a
  prefix of a larger one. The evaluation rows never depend on n: with a split
  column they are the ``eval`` rows (a seeded subset of ``data.n_eval`` when
  there are more), without one a seeded hold-out of ``data.n_eval`` rows.
* The word vocabulary comes from *all* training captions (not the first n), so
  the token ids of a pair are the same at every n.
* Images are decoded with PIL (RGB), the shorter side resized to
  ``data.image_size`` (bicubic) and centre-cropped, scaled to [0, 1] and
  normalised with the ImageNet mean/std (what timm backbones expect). Only the
  first n training rows and the evaluation rows are decoded.
* Everything is kept in memory as one float32 tensor per split
  (3 * image_size**2 * 4 bytes per image: ~600 KB at 224 px, so 10k images is
  ~6 GB): this loader is for datasets that fit in RAM; use ``shards`` beyond.

Captions become ``Modality("tokens")`` through a deterministic built-in word
tokenizer (lowercase, words = runs of letters/digits, vocabulary = training
words by frequency then alphabetically, at most ``data.vocab_size`` ids with
0 = pad, 1 = unknown, fixed length ``data.caption_len``), or through a local
transformers tokenizer folder ``data.tokenizer`` so the ``hf`` text tower can
use its own vocabulary. ``data.flavour`` and the synthetic task's knobs
(``classes``, ``noise``, ...) have no meaning here and are ignored.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from negscale.data.base import Modality, PairedData, Split
from negscale.errors import NegscaleError
from negscale.recipe import DataConfig

PAD, UNK = 0, 1
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_WORD = re.compile(r"[^\W_]+")  # letters and digits (any script); everything else splits
_SHOW = 3  # how many offending rows or files an error names


# ---------------------------------------------------------------- table


def read_table(cfg: DataConfig) -> tuple[pd.DataFrame, Path]:
    """The table as strings (CSV) or as stored (Parquet), and the folder images are relative to."""
    if not cfg.path:
        raise NegscaleError("data.path: the 'pairs' dataset needs a CSV or Parquet table")
    path = Path(cfg.path).expanduser()
    if not path.is_file():
        raise NegscaleError(f"data.path: no table file at {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            # strings throughout: captions like "NA" stay text, ids keep their spelling
            table = pd.read_csv(path, dtype=str, keep_default_na=False)
        elif suffix in (".parquet", ".pq"):
            table = pd.read_parquet(path)
        else:
            raise NegscaleError(f"data.path: expected a .csv or .parquet table, got {path.name}")
    except NegscaleError:
        raise
    except Exception as exc:  # any parser failure is the user's file
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise NegscaleError(f"data.path: cannot read table {path}: {reason}") from None
    if len(table) == 0:
        raise NegscaleError(f"data.path: table {path} has no rows")
    return table.reset_index(drop=True), path.parent


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


# ---------------------------------------------------------------- captions


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def build_vocab(captions: list[str], size: int) -> dict[str, int]:
    """Training words by frequency, ties alphabetically; ids from 2 (0 = pad, 1 = unknown)."""
    counts = Counter(w for c in captions for w in words(c))
    ranked = sorted(counts, key=lambda w: (-counts[w], w))[: max(size - 2, 0)]
    return {w: i + 2 for i, w in enumerate(ranked)}


def encode_words(captions: list[str], vocab: dict[str, int], length: int) -> torch.Tensor:
    out = torch.full((len(captions), length), PAD, dtype=torch.long)
    for i, caption in enumerate(captions):
        ids = [vocab.get(w, UNK) for w in words(caption)][:length]
        out[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out


class _HFTokens:
    """A local transformers tokenizer: fixed-length ids, padded with its own pad token."""

    def __init__(self, folder: str) -> None:
        if not Path(folder).expanduser().is_dir():
            raise NegscaleError(f"data.tokenizer: no tokenizer folder at {folder}")
        from transformers import AutoTokenizer

        try:
            self.tok = AutoTokenizer.from_pretrained(
                str(Path(folder).expanduser()), local_files_only=True
            )
        except Exception as exc:  # transformers raises many kinds
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise NegscaleError(f"data.tokenizer: cannot load from {folder}: {reason}") from None
        if self.tok.pad_token is None:
            if self.tok.eos_token is None:
                raise NegscaleError(f"data.tokenizer: {folder} defines no pad (or eos) token")
            self.tok.pad_token = self.tok.eos_token
        self.vocab = len(self.tok)

    def __call__(self, captions: list[str], length: int) -> torch.Tensor:
        enc = self.tok(
            captions,
            padding="max_length",
            truncation=True,
            max_length=length,
            return_tensors="pt",
        )
        return enc["input_ids"].long()


# ---------------------------------------------------------------- images


def _resolve(root: Path, name: str) -> Path:
    p = Path(name).expanduser()
    return p if p.is_absolute() else root / p


def load_image(path: Path, size: int) -> np.ndarray:
    """RGB, shorter side to ``size`` (bicubic), centre crop: (3, size, size) float32 in [0, 1]."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        scale = size / min(w, h)
        nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
        im = im.resize((nw, nh), Image.Resampling.BICUBIC)
        left, top = (nw - size) // 2, (nh - size) // 2
        im = im.crop((left, top, left + size, top + size))
        arr = np.asarray(im, dtype=np.float32) / 255.0
    return arr.transpose(2, 0, 1)


def load_images(paths: list[Path], size: int, workers: int | None = None) -> torch.Tensor:
    """Decode in a small thread pool into one normalised tensor; name the first bad files."""
    out = np.empty((len(paths), 3, size, size), dtype=np.float32)
    failed: list[tuple[Path, str]] = []

    def one(i: int) -> None:
        try:
            out[i] = load_image(paths[i], size)
        except FileNotFoundError:
            failed.append((paths[i], "missing"))
        except Exception as exc:  # PIL raises many kinds for bad files
            failed.append((paths[i], type(exc).__name__))

    workers = workers or min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, range(len(paths))))
    if failed:
        failed.sort(key=lambda f: str(f[0]))
        shown = ", ".join(f"{p} ({why})" for p, why in failed[:_SHOW])
        more = f" and {len(failed) - _SHOW} more" if len(failed) > _SHOW else ""
        raise NegscaleError(
            f"data.path: {len(failed)} image file(s) missing or undecodable: {shown}{more}"
        )
    mean = np.array(IMAGENET_MEAN, dtype=np.float32)[:, None, None]
    std = np.array(IMAGENET_STD, dtype=np.float32)[:, None, None]
    out -= mean
    out /= std
    return torch.from_numpy(out)


# ---------------------------------------------------------------- loader


def build_pairs(cfg: DataConfig) -> PairedData:
    table, root = read_table(cfg)
    images = _column(table, "image_column", cfg.image_column)
    captions = _texts(
        _column(table, "caption_column", cfg.caption_column), "caption_column", "caption"
    )
    image_names = _texts(images, "image_column", "image path")
    label_col = _optional(table, "label_column", cfg.label_column, "label")

    train_rows, eval_rows = split_rows(table, cfg)
    if cfg.n > len(train_rows):
        raise NegscaleError(
            f"data.n: {cfg.n} training pairs requested, the table has {len(train_rows)}"
        )
    used = train_rows[: cfg.n]

    if cfg.tokenizer:
        hf = _HFTokens(cfg.tokenizer)
        vocab_size, tokenizer_name, pad_id = hf.vocab, cfg.tokenizer, hf.tok.pad_token_id

        def encode(rows: np.ndarray) -> torch.Tensor:
            return hf([captions[i] for i in rows], cfg.caption_len)

    else:
        vocab = build_vocab([captions[i] for i in train_rows], cfg.vocab_size)
        vocab_size, tokenizer_name, pad_id = len(vocab) + 2, "words", PAD

        def encode(rows: np.ndarray) -> torch.Tensor:
            return encode_words([captions[i] for i in rows], vocab, cfg.caption_len)

    labels: np.ndarray | None = None
    classes: list[str] = []
    if label_col is not None:
        name = cfg.label_column or "label"
        labels, classes = label_ids(_texts(label_col, "label_column", f"'{name}' label"))

    def split(rows: np.ndarray) -> Split:
        x = load_images([_resolve(root, image_names[i]) for i in rows], cfg.image_size)
        y = encode(rows)
        lab = None if labels is None else torch.as_tensor(labels[rows])
        return Split(x, y, lab)

    info: dict[str, Any] = {
        "path": str(cfg.path),
        "rows": len(table),
        "train_rows": len(train_rows),
        "eval_rows": len(eval_rows),
        "tokenizer": tokenizer_name,
        "classes": classes,
    }
    return PairedData(
        split(used),
        split(eval_rows),
        Modality("image", shape=(3, cfg.image_size, cfg.image_size)),
        Modality("tokens", vocab=vocab_size, length=cfg.caption_len, pad_id=pad_id),
        num_classes=len(classes) if labels is not None else None,
        info=info,
    )
