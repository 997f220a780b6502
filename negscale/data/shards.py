"""``shards``: webdataset tar shards in open_clip's and img2dataset's layout.

A sample is the tar members sharing a key (the member name up to its first
dot, as webdataset groups them): ``{key}.jpg|jpeg|png|webp`` and a caption,
``{key}.txt`` or ``{key}.json`` (caption under ``data.caption_column``,
default ``"caption"``; a class under ``data.label_column`` when set).
``data.path`` is a brace-expandable spec (``"/data/cc3m/{00000..00331}.tar"``)
or a folder of ``.tar`` files; ``data.eval_path`` optionally the same for the
evaluation set (else ``data.n_eval`` samples are held out by the seed).

Random access by id: each shard is scanned once with :mod:`tarfile` into an
index of member offsets and captions, cached beside the shard
(``{shard}.negscale-index.json``) or, when that folder is read-only, in
``$XDG_CACHE_HOME/negscale/shards``; an index is rebuilt when its shard's
size or mtime changes. A fetch seeks to the image bytes and decodes them.
img2dataset's ``{shard}_stats.json`` (``successes``) is checked against the
index, so a truncated shard is named instead of silently shrinking the set.
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from negscale.data.assemble import Rows, assemble, eval_subset, holdout, spec_of
from negscale.data.base import PairedData
from negscale.data.images import decode, header_ok
from negscale.data.packed import OneCaption, PackedBuilder, PackedStrings
from negscale.data.pairs import label_ids
from negscale.errors import NegscaleError

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
INDEX_VERSION = 1
_SUFFIX = ".negscale-index.json"


def expand(spec: str, field: str) -> list[Path]:
    """Shard paths of a brace spec, a glob, a folder of ``.tar`` files, or one tar."""
    from braceexpand import braceexpand

    path = Path(spec).expanduser()
    if path.is_dir():
        shards = sorted(path.glob("*.tar"))
        if not shards:
            raise NegscaleError(f"{field}: no .tar shards in {path}")
        return shards
    names = [
        n for pattern in braceexpand(str(path)) for n in sorted(glob.glob(pattern)) or [pattern]
    ]
    missing = [n for n in names if not Path(n).is_file()]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise NegscaleError(f"{field}: no shard file {missing[0]}{more}")
    return [Path(n) for n in names]


def _cache_file(shard: Path) -> Path:
    """Beside the shard when that folder is writable, else in the user cache."""
    if os.access(shard.parent, os.W_OK):
        return shard.with_name(shard.name + _SUFFIX)
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "negscale" / "shards"
    digest = hashlib.sha256(str(shard.resolve()).encode()).hexdigest()[:16]
    return root / f"{digest}-{shard.name}{_SUFFIX}"


def scan(shard: Path, caption_key: str, label_key: str | None) -> dict[str, Any]:
    """One pass over a tar: per sample its image member (offset, size) and caption."""
    groups: dict[str, dict[str, Any]] = {}
    try:
        with tarfile.open(shard, "r:") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                folder, _, base = member.name.rpartition("/")
                stem, dot, ext = base.partition(".")
                if not dot:
                    continue
                key = f"{folder}/{stem}" if folder else stem
                ext = ext.lower()
                g = groups.setdefault(key, {})
                if ext in IMAGE_EXTS:
                    g["image"] = (member.offset_data, member.size)
                elif ext in ("txt", "json"):
                    f = tar.extractfile(member)
                    g[ext] = f.read().decode("utf-8", errors="replace") if f else ""
    except (OSError, tarfile.TarError) as exc:
        raise NegscaleError(f"data.path: cannot read shard {shard} ({exc})") from None
    samples, bad = [], []
    for key, g in groups.items():
        caption, label = g.get("txt"), None
        if "json" in g:
            try:
                meta = json.loads(g["json"])
            except ValueError:
                meta = {}
            meta = meta if isinstance(meta, dict) else {}
            caption = caption if caption is not None else meta.get(caption_key)
            label = meta.get(label_key) if label_key else None
        if "image" not in g:
            continue  # webdataset's own samples without an image are not pairs
        if caption is None:
            bad.append([key, "no caption (.txt or .json)"])
        elif not str(caption).strip():
            bad.append([key, "empty caption"])
        else:
            off, size = g["image"]
            samples.append([key, off, size, str(caption).strip(), label])
    return {"samples": samples, "bad": bad}


def load_index(shard: Path, caption_key: str, label_key: str | None) -> dict[str, Any]:
    """The cached index of a shard, rebuilt when missing or stale."""
    st = shard.stat()
    stamp = {
        "version": INDEX_VERSION,
        "size": st.st_size,
        "mtime": st.st_mtime_ns,
        "caption_key": caption_key,
        "label_key": label_key,
    }
    cache = _cache_file(shard)
    if cache.is_file():
        try:
            index = json.loads(cache.read_text())
            if index.get("stamp") == stamp:
                return index
        except ValueError:
            pass  # a torn cache file is rebuilt
    index = {"stamp": stamp, **scan(shard, caption_key, label_key)}
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(index))
    tmp.replace(cache)  # atomic: a concurrent reader sees the old file or the new one
    return index


def _check_stats(shard: Path, count: int) -> None:
    """img2dataset's per-shard count must match what the index found."""
    stats = shard.with_name(shard.name.removesuffix(".tar") + "_stats.json")
    if not stats.is_file():
        return
    try:
        want = int(json.loads(stats.read_text())["successes"])
    except (ValueError, KeyError, TypeError):
        return
    if want != count:
        raise NegscaleError(
            f"data.path: shard {shard} holds {count} samples, its {stats.name} says {want}"
            " (truncated or rewritten shard?)"
        )


@dataclass
class ShardImages:
    """Images inside tar shards: row -> (shard, byte offset, size)."""

    shards: list[Path]
    shard_of: np.ndarray
    offset: np.ndarray
    size: np.ndarray
    keys: Sequence[str]  # PackedStrings: no Python object per sample

    def __len__(self) -> int:
        return len(self.keys)

    def _bytes(self, row: int) -> io.BytesIO:
        with open(self.shards[self.shard_of[row]], "rb") as f:
            f.seek(int(self.offset[row]))
            return io.BytesIO(f.read(int(self.size[row])))

    def open(self, row: int):
        return decode(self._bytes(row), self.name(row))

    def name(self, row: int) -> str:
        return f"{self.shards[self.shard_of[row]]}:{self.keys[row]}"

    def check(self, row: int) -> str | None:
        return header_ok(self._bytes(row))


def read_shards(spec: str, field: str, cfg) -> tuple[ShardImages, PackedStrings, list, list[str]]:
    """(images, captions, labels, bad sample names) over every shard of ``spec``.

    ``labels`` is one value per sample only with ``data.label_column`` set, else empty.

    Each shard's index is unpacked into packed strings and numpy columns as it
    is read, so the whole set never exists as Python objects per sample.
    """
    shards = expand(spec, field)
    label_key = cfg.label_column
    keys, captions = PackedBuilder(), PackedBuilder()
    shard_of, offset, size, labels = [], [], [], []
    bad: list[str] = []
    for s, shard in enumerate(shards):
        index = load_index(shard, cfg.caption_column, label_key)
        samples = index["samples"]
        _check_stats(shard, len(samples) + len(index["bad"]))
        keys.extend(r[0] for r in samples)
        captions.extend(r[3] for r in samples)
        shard_of.append(np.full(len(samples), s, dtype=np.int32))
        offset.append(np.asarray([r[1] for r in samples], dtype=np.int64))
        size.append(np.asarray([r[2] for r in samples], dtype=np.int64))
        if label_key:  # no per-sample list at all for unlabelled shards
            labels += [r[4] for r in samples]
        bad += [f"{shard}:{key} ({why})" for key, why in index["bad"]]
    if bad and not cfg.skip_bad:
        more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
        raise NegscaleError(f"{field}: shard sample {bad[0]}{more} (data.skip_bad = true skips)")
    rows_of = np.concatenate(shard_of)
    if not len(rows_of):
        raise NegscaleError(f"{field}: no image-caption samples in {spec}")
    images = ShardImages(
        shards, rows_of, np.concatenate(offset), np.concatenate(size), keys.build()
    )
    return images, captions.build(), labels, bad


def build_shards(cfg, model=None) -> PairedData:
    if not cfg.path:
        raise NegscaleError("data.path: the 'shards' dataset needs a shard spec or folder")
    images, captions, labels, bad = read_shards(cfg.path, "data.path", cfg)
    per_row = OneCaption(captions)
    label_arr, classes = None, None
    if cfg.label_column:
        if any(v is None for v in labels):
            raise NegscaleError(f"data.label_column: some samples have no '{cfg.label_column}'")
        label_arr, classes = label_ids([str(v) for v in labels])
    if cfg.eval_path:
        e_images, e_caps, e_labels, e_bad = read_shards(cfg.eval_path, "data.eval_path", cfg)
        bad += e_bad
        train_rows = np.random.default_rng([cfg.seed, 1]).permutation(len(images))
        e_arr = None
        if label_arr is not None:
            index = {c: i for i, c in enumerate(classes)}
            e_arr = np.asarray([index.get(str(v), -1) for v in e_labels], dtype=np.int64)
        held = Rows(
            e_images,
            OneCaption(e_caps),
            e_arr,
            eval_subset(np.arange(len(e_images)), cfg.n_eval, cfg.seed),
        )
    else:
        train_rows, eval_rows = holdout(len(images), cfg.n_eval, cfg.seed)
        held = Rows(images, per_row, label_arr, eval_rows)
    info = {"path": cfg.path, "shards": len(images.shards), "samples": len(images)}
    spec = spec_of(cfg, model, augment=True, info=info)
    data = assemble(Rows(images, per_row, label_arr, train_rows), held, spec, classes)
    data.info["skipped"] += len(bad)
    return data
