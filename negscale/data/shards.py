"""``shards``: webdataset tar shards in open_clip's and img2dataset's layout.

A sample is the tar members sharing a key (the member name up to its first
dot, as webdataset groups them): ``{key}.jpg|jpeg|png|webp`` and a caption,
``{key}.txt`` or ``{key}.json`` (caption under ``data.caption_column``,
default ``"caption"``; a class under ``data.label_column`` when set).
``data.path`` is a brace-expandable spec (``"/data/cc3m/{00000..00331}.tar"``)
or a folder of ``.tar`` files; ``data.eval_path`` optionally the same for the
evaluation set (else ``data.n_eval`` samples are held out by the seed).

Random access by id: each shard is scanned once into an index of member
offsets and captions, by :mod:`negscale.data.tarscan`, which reads the tar
headers itself because :mod:`tarfile`'s object per member made indexing 20x
slower than the header scan it needs; stale shards are indexed in parallel, one
process per core, each index written to its cache file as it is done. The
index is cached beside the shard (``{shard}.negscale-index.json``: a stamp,
then columns ``keys``, ``offset``, ``size``, ``captions``, ``labels`` and the
``bad`` samples; ``INDEX_VERSION`` 2, an older cache is rebuilt) or, when that
folder is read-only, in ``$XDG_CACHE_HOME/negscale/shards``; an index is
rebuilt when its shard's size or mtime changes. A fetch seeks to the image
bytes and decodes them. img2dataset's ``{shard}_stats.json`` (``successes``)
is checked against the index, so a truncated shard is named instead of
silently shrinking the set (the scan itself refuses a shard cut off inside a
member or before its end-of-archive block).

Why one module of about 470 lines: the layout rules, the index (built,
cached, checked) and the random-access reader must agree on keys and
offsets, and are tested together against webdataset's own reader.
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
import mmap
import multiprocessing
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from negscale.data import tarscan
from negscale.data.assemble import Rows, assemble, eval_subset, holdout, spec_of
from negscale.data.base import PairedData
from negscale.data.images import decode, header_ok
from negscale.data.packed import OneCaption, PackedBuilder, PackedStrings
from negscale.data.pairs import label_ids
from negscale.errors import NegscaleError

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
INDEX_VERSION = 2  # 2: columns (keys, offset, size, captions, labels), from tarscan
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


IMAGE, TXT, JSON, OTHER = range(4)
_EXT_KIND = {**dict.fromkeys(IMAGE_EXTS, IMAGE), "txt": TXT, "json": JSON}
_PACKED_EXT = {int.from_bytes(e.encode(), "little"): k for e, k in _EXT_KIND.items()}  # 3-4 letters
_PAD = 5


def _key_ext(name: str) -> tuple[str, int] | None:
    """webdataset's split of a member name: the key ends at the first dot of the base name."""
    folder, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    if not dot:
        return None
    return (f"{folder}/{stem}" if folder else stem), _EXT_KIND.get(ext.lower(), OTHER)


def _split(cols: np.ndarray, names: dict[int, str]) -> tuple[np.ndarray, np.ndarray, dict]:
    """:func:`_key_ext` for every name field at once, in numpy.

    ``cols`` is :func:`_columns`. Returns per member where its key ends (-1: no
    dot, no key; ``len(cols)``: the key is in the returned dict, for long names
    and a name whose only slash leads) and its kind. Byte-wise is exact: '/'
    and '.' never occur inside a UTF-8 character.
    """
    n = cols.shape[1]
    alive = np.ones(n, dtype=bool)  # still before the name's first NUL
    last = np.full(n, -1, dtype=np.int32)  # the last slash
    end = np.full(n, -1, dtype=np.int32)  # the first dot after it
    for j, c in enumerate(cols[:-_PAD]):
        alive &= c != 0
        slash = alive & (c == ord("/"))
        last[slash], end[slash] = j, -1
        end[alive & (c == ord(".")) & (end < 0)] = j
    every = np.arange(n)
    ext = [cols[end + k, every].astype(np.uint32) for k in range(1, 6)]  # 0 past the name
    packed = ext[3] | np.where(ext[3] != 0, 0x20, 0)  # 3 letters: a NUL 4th byte
    for k in range(3):
        packed = packed << 8 | ext[2 - k] | 0x20  # ASCII lower case
    ends = (ext[3] == 0) | (ext[4] == 0)  # 4 letters: then a NUL
    kind = np.full(n, OTHER, dtype=np.int8)
    for value, k in _PACKED_EXT.items():
        kind[ends & (packed == value)] = k
    keys = {}
    for row in sorted({*names, *np.flatnonzero(last == 0).tolist()}):
        got = _key_ext(names[row] if row in names else tarscan.name_of(cols[:, row]))
        end[row] = -1 if got is None else len(cols)
        if got is not None:
            keys[row], kind[row] = got
    return end, kind, keys


def _columns(fields: np.ndarray) -> np.ndarray:
    """The name fields column by column (one row per byte position, so each step of
    :func:`_split` is one vector operation over all members), cut after the last used
    column (names are short), then ``_PAD`` zero rows: an extension's end is there."""
    used = np.flatnonzero(fields.any(axis=0))
    width = used[-1] + 1 if len(used) else 0
    cols = np.zeros((width + _PAD, len(fields)), dtype=np.uint8)
    cols[:width] = fields[:, :width].T
    return cols


def _runs(cols: np.ndarray, end: np.ndarray, alone: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Where runs of members with equal keys start, and the key of each run."""
    if not len(end):
        return np.zeros(0, dtype=np.int64), []
    same = ~(alone[1:] | alone[:-1]) & (end[1:] == end[:-1])  # a Python key: a run of its own
    top = max(1, int(end[~alone].max(initial=0)))
    for j, c in enumerate(cols[:top]):
        same &= (c[1:] == c[:-1]) | (end[1:] <= j)
    starts = np.flatnonzero(np.concatenate([[True], ~same]))
    key_bytes = np.where(np.arange(top)[:, None] < end[starts], cols[:top, starts], 0)
    flat = np.ascontiguousarray(key_bytes.T.astype(np.uint8)).view(f"S{top}").ravel()
    # keys hold no NUL: one decode for all of them
    keys = b"\0".join(flat.tolist()).decode("utf-8", "surrogateescape").split("\0")
    return starts, keys


def _group(fields: np.ndarray, names: dict[int, str]) -> tuple[list[str], np.ndarray]:
    """Members grouped into samples by key, in the order of each key's first member.

    Returns the keys and per sample the row of its last image, txt and json
    member (-1: none), as a dict of a key would hold them. Members of a sample
    are consecutive in webdataset shards, so runs of equal keys are found in
    numpy and only a key seen in two runs needs merging in Python.
    """
    cols = _columns(fields)
    end, kind, py_keys = _split(cols, names)
    rows = np.flatnonzero(end >= 0)
    sub = cols if len(rows) == cols.shape[1] else cols[:, rows]
    starts, keys = _runs(sub, end[rows], end[rows] == len(cols))
    for run in np.flatnonzero(end[rows[starts]] == len(cols)).tolist():
        keys[run] = py_keys[int(rows[starts[run]])]
    last = np.full((3, len(starts)), -1, dtype=np.int64)
    for k in (IMAGE, TXT, JSON):
        if len(rows):
            last[k] = np.maximum.reduceat(np.where(kind[rows] == k, rows, -1), starts)
    if len(set(keys)) == len(keys):
        return keys, last
    merged: dict[str, list[int]] = {}
    for key, *found in zip(keys, *last.tolist(), strict=True):
        have = merged.setdefault(key, [-1, -1, -1])
        merged[key] = [f if f >= 0 else h for f, h in zip(found, have, strict=True)]
    return list(merged), np.asarray(list(merged.values()), dtype=np.int64).reshape(-1, 3).T


def _meta(text: str) -> dict:
    """A sample's .json as a dict ({} when it is not a JSON object)."""
    try:
        meta = json.loads(text)
    except ValueError:
        return {}
    return meta if isinstance(meta, dict) else {}


def _texts(mm: mmap.mmap, members: tarscan.Members, rows: np.ndarray) -> list[str]:
    """The data of members ``rows`` as text (captions, metadata): small, read from the map."""
    at, size = members.offset[rows].tolist(), members.size[rows].tolist()
    return [mm[o : o + n].decode("utf-8", "replace") for o, n in zip(at, size, strict=True)]


def _captions(
    mm: mmap.mmap,
    members: tarscan.Members,
    last: np.ndarray,
    caption_key: str,
    label_key: str | None,
) -> tuple[list, list | None]:
    """Per group: its caption (None: none) from its .txt, else its .json, and its
    label from the .json when ``label_key`` is set (else no list at all)."""
    _, txt, meta = last
    has_txt = np.flatnonzero(txt >= 0)
    if len(has_txt) == len(txt):
        captions: list[Any] = _texts(mm, members, txt)
    else:
        captions = [None] * len(txt)
        for i, text in zip(has_txt.tolist(), _texts(mm, members, txt[has_txt]), strict=True):
            captions[i] = text
    labels = [None] * len(txt) if label_key else None
    rows = np.flatnonzero((meta >= 0) & ((txt < 0) | bool(label_key)))  # parse only if used
    for i, text in zip(rows.tolist(), _texts(mm, members, meta[rows]), strict=True):
        parsed = _meta(text)
        captions[i] = parsed.get(caption_key) if captions[i] is None else captions[i]
        if labels is not None:
            labels[i] = parsed.get(label_key)
    return captions, labels


def _samples(
    mm: mmap.mmap,
    members: tarscan.Members,
    keys: list[str],
    last: np.ndarray,
    caption_key: str,
    label_key: str | None,
) -> dict[str, Any]:
    """The index columns: per group with an image its key, image offset and size,
    caption and label (``labels`` None without ``label_key``); the rest in ``bad``.

    Columns, not a list per sample: no Python container per sample, so building
    (and loading) an index does not wake the garbage collector 500 times a shard.
    """
    image = last[0]
    with_image = np.flatnonzero(image >= 0)  # webdataset's samples without an image are no pairs
    keys = keys if len(with_image) == len(keys) else [keys[i] for i in with_image.tolist()]
    captions, labels = _captions(mm, members, last[:, with_image], caption_key, label_key)
    if all(isinstance(c, str) for c in captions):  # the usual .txt captions
        clean = [c.strip() for c in captions]
    else:
        clean = [c if c is None else str(c).strip() for c in captions]
    offset, size = members.offset[image[with_image]], members.size[image[with_image]]
    bad = []
    if not all(clean):
        keep = [i for i, c in enumerate(clean) if c]
        why = {None: "no caption (.txt or .json)", "": "empty caption"}
        bad = [[keys[i], why[c]] for i, c in enumerate(clean) if not c]
        keys, clean = [keys[i] for i in keep], [clean[i] for i in keep]
        offset, size = offset[keep], size[keep]
        labels = None if labels is None else [labels[i] for i in keep]
    return {
        "keys": keys,
        "offset": offset.tolist(),
        "size": size.tolist(),
        "captions": clean,
        "labels": labels,
        "bad": bad,
    }


def scan(shard: Path, caption_key: str, label_key: str | None) -> dict[str, Any]:
    """One pass over a tar's headers: per sample its image member (offset, size) and caption."""
    try:
        with tarscan.open_map(shard) as mm:
            members = tarscan.members(mm)
            keys, last = _group(members.name_field, members.names)
            return _samples(mm, members, keys, last, caption_key, label_key)
    except (OSError, tarscan.TarError) as exc:
        raise NegscaleError(f"data.path: cannot read shard {shard} ({exc})") from None


def _stamp(shard: Path, caption_key: str, label_key: str | None) -> dict[str, Any]:
    """What a cached index must have been built from: this shard file, these keys."""
    st = shard.stat()
    return {
        "version": INDEX_VERSION,
        "size": st.st_size,
        "mtime": st.st_mtime_ns,
        "caption_key": caption_key,
        "label_key": label_key,
    }


def _is_fresh(cache: Path, stamp: dict[str, Any]) -> bool:
    """Whether ``cache`` was built for ``stamp``, from its first bytes (the stamp is
    written first), without parsing the whole index."""
    try:
        with open(cache, encoding="utf-8") as f:
            head = f.read(1 << 16)
        found, _ = json.JSONDecoder().raw_decode(head, len('{"stamp": '))
    except (OSError, ValueError):
        return False
    return head.startswith('{"stamp": ') and found == stamp


def load_index(shard: Path, caption_key: str, label_key: str | None) -> dict[str, Any]:
    """The cached index of a shard, rebuilt when missing or stale."""
    stamp = _stamp(shard, caption_key, label_key)
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


def _build(job: tuple[Path, str, str | None]) -> None:
    """Index one shard into its cache file (in a pool worker: nothing large goes back)."""
    load_index(*job)


def _workers(jobs: int) -> int:
    """Processes for ``jobs`` index builds: one per core, 1 (serial) for one job or core.

    The pool forks (Linux only): a worker runs only this module's scan, no torch,
    and a spawned one would import torch again (seconds and hundreds of MB each).
    """
    if sys.platform != "linux" or multiprocessing.current_process().daemon:
        return 1  # macOS and Windows spawn; a daemonic process may not have children
    return max(1, min(jobs, len(os.sched_getaffinity(0))))


def build_indexes(shards: Sequence[Path], caption_key: str, label_key: str | None) -> None:
    """Build the missing or stale indexes of ``shards`` in parallel, each streamed to
    its cache file, so memory holds one shard's index per worker. With one stale shard
    or one core this does nothing: :func:`load_index` then builds them as they are read."""
    stale = [s for s in shards if not _is_fresh(_cache_file(s), _stamp(s, caption_key, label_key))]
    workers = _workers(len(stale))
    if workers < 2:
        return
    stale.sort(key=lambda s: s.stat().st_size, reverse=True)  # big ones first: no long tail
    jobs = [(s, caption_key, label_key) for s in stale]
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        for _ in pool.imap_unordered(_build, jobs):
            pass


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

    def check(self, row: int, full: bool = False) -> str | None:
        return header_ok(self._bytes(row), full)


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
    build_indexes(shards, cfg.caption_column, label_key)
    for s, shard in enumerate(shards):
        index = load_index(shard, cfg.caption_column, label_key)
        count = len(index["keys"])
        _check_stats(shard, count + len(index["bad"]))
        keys.extend(index["keys"])
        captions.extend(index["captions"])
        shard_of.append(np.full(count, s, dtype=np.int32))
        offset.append(np.asarray(index["offset"], dtype=np.int64))
        size.append(np.asarray(index["size"], dtype=np.int64))
        if label_key:  # no per-sample list at all for unlabelled shards
            labels += index["labels"]
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
