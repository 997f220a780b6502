"""``shards``: tar shards read by id agree with webdataset's own sequential reader.

The index comes from :mod:`negscale.data.tarscan`'s own header scan; its
references are the ``tarfile``-based scanner it replaced (kept below) and
webdataset's reader, on shards in every format tarfile writes (GNU long names,
pax records, ustar prefixes), with odd sizes, other member types, damage.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from data_fixtures import item, png_bytes, tar_shards
from PIL import Image

from negscale.config import DataConfig
from negscale.data import build, tarscan
from negscale.data import shards as shards_mod
from negscale.data.shards import build_indexes, expand, load_index, scan
from negscale.errors import NegscaleError

COUNTS = [10, 8]


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shards")
    tar_shards(root, COUNTS)
    return root


def _cfg(path: str, **kw) -> DataConfig:
    base = {"name": "shards", "path": path, "n": 10, "n_eval": 4, "image_size": 16}
    return DataConfig(**(base | kw))


def test_index_matches_webdataset_reader(shards: Path) -> None:
    wds = pytest.importorskip("webdataset")

    urls = [str(p) for p in expand(str(shards / "{00000..00001}.tar"), "data.path")]
    theirs = []
    for sample in wds.WebDataset(urls, shardshuffle=False).decode("pil"):
        text = sample.get("txt") or sample["json"]["caption"]
        theirs.append((sample["__key__"], text, np.asarray(sample["png"])))
    d = build(_cfg(str(shards / "{00000..00001}.tar"), augment=False))
    images = d.train.images
    assert [t[0] for t in theirs] == list(images.keys)  # every sample, in shard order
    for row, (_key, text, pixels) in enumerate(theirs):
        assert np.array_equal(np.asarray(images.open(row)), pixels)
        assert text == item(row)[1]  # the fixture's own caption
    # a folder of .tar files is the same set as the brace spec
    same = build(_cfg(str(shards), augment=False))
    assert list(same.train.images.keys) == list(images.keys)
    assert np.array_equal(same.train.rows, d.train.rows)


def test_fetch_decodes_the_indexed_image(shards: Path) -> None:
    d = build(_cfg(str(shards), augment=False, image_size=24))
    x, _ = d.eval.fetch(torch.arange(len(d.eval)))
    for got, row in zip(x, d.eval.rows, strict=True):
        im = item(int(row))[0]
        # timm's eval transform = shorter side to 24 (bicubic), centre crop, ImageNet stats
        w, h = im.size  # the long side truncated, as torchvision computes it
        size = (int(24 * w / h), 24) if w >= h else (24, int(24 * h / w))
        im = im.resize(size, Image.Resampling.BICUBIC)
        left, top = round((im.size[0] - 24) / 2), round((im.size[1] - 24) / 2)
        ref = np.asarray(im.crop((left, top, left + 24, top + 24)), dtype=np.float32) / 255
        ref = (ref - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
        want = torch.tensor(ref.transpose(2, 0, 1), dtype=torch.float32)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_nested_n_and_eval_independent_of_n(shards: Path) -> None:
    small, big = build(_cfg(str(shards), n=6)), build(_cfg(str(shards), n=12))
    assert np.array_equal(big.train.rows[:6], small.train.rows)
    assert np.array_equal(big.eval.rows, small.eval.rows)
    assert not set(big.train.rows) & set(big.eval.rows)


def test_index_is_built_once_and_cached_beside_the_shards(shards: Path) -> None:
    cache = shards / "00000.tar.negscale-index.json"
    build(_cfg(str(shards)))
    stamp = cache.stat().st_mtime_ns
    build(_cfg(str(shards)))
    assert cache.stat().st_mtime_ns == stamp  # reused, not rewritten


def test_read_only_shards_index_into_the_user_cache(tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "ro"
    tar_shards(root, [6])
    os.chmod(root, 0o555)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    try:
        if os.access(root, os.W_OK):
            pytest.skip("running as a user who can write anywhere")
        load_index(root / "00000.tar", "caption", None)
        assert list((tmp_path / "cache" / "negscale" / "shards").glob("*.json"))
    finally:
        os.chmod(root, 0o755)


def test_separate_eval_shards(shards: Path) -> None:
    d = build(_cfg(str(shards / "00000.tar"), eval_path=str(shards / "00001.tar"), n_eval=5))
    assert len(d.train) == 10 and len(d.eval) == 5
    assert all(k.startswith("00001") for k in d.eval.images.keys)


def test_stats_count_mismatch_names_the_shard(tmp_path: Path) -> None:
    tar_shards(tmp_path, [6])
    (tmp_path / "00000_stats.json").write_text(json.dumps({"successes": 9}))
    with pytest.raises(NegscaleError, match=r"00000\.tar holds 6 samples"):
        build(_cfg(str(tmp_path), n=4, n_eval=2))
    (tmp_path / "00000_stats.json").write_text(json.dumps({"successes": 6}))
    assert len(build(_cfg(str(tmp_path), n=4, n_eval=2)).train) == 4


def test_member_without_caption_fails_or_is_skipped(tmp_path: Path) -> None:
    import io
    import tarfile

    path = tar_shards(tmp_path, [6])[0]
    with tarfile.open(path, "a") as tar:
        info = tarfile.TarInfo("lonely.png")
        buf = io.BytesIO()
        item(0)[0].save(buf, format="PNG")
        data = buf.getvalue()
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(NegscaleError, match=r"00000\.tar:lonely \(no caption"):
        build(_cfg(str(tmp_path), n=4, n_eval=2))
    d = build(_cfg(str(tmp_path), n=4, n_eval=2, skip_bad=True))
    assert d.info["skipped"] == 1 and "lonely" not in d.train.images.keys


def test_missing_shard_is_named(tmp_path: Path) -> None:
    tar_shards(tmp_path, [4])
    with pytest.raises(NegscaleError, match=r"data\.path: no shard file .*00001\.tar"):
        build(_cfg(str(tmp_path / "{00000..00001}.tar"), n=2, n_eval=2))


# --- the header scan against tarfile and webdataset -------------------------------


def _reference(shard: Path, caption_key: str = "caption", label_key: str | None = None) -> dict:
    """The index as the tarfile-based scanner (negscale <= INDEX_VERSION 1) built it,
    in today's columns: the reference the header scan must equal."""
    groups: dict[str, dict] = {}
    with tarfile.open(shard, "r:") as tar:
        for member in tar:
            if not member.isfile():
                continue
            folder, _, base = member.name.rpartition("/")
            stem, dot, ext = base.partition(".")
            if not dot:
                continue
            key = f"{folder}/{stem}" if folder else stem
            g = groups.setdefault(key, {})
            ext = ext.lower()
            if ext in ("jpg", "jpeg", "png", "webp"):
                g["image"] = (member.offset_data, member.size)
            elif ext in ("txt", "json"):
                g[ext] = tar.extractfile(member).read().decode("utf-8", errors="replace")
    out: dict = {"keys": [], "offset": [], "size": [], "captions": [], "labels": [], "bad": []}
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
            continue
        if caption is None:
            out["bad"].append([key, "no caption (.txt or .json)"])
        elif not str(caption).strip():
            out["bad"].append([key, "empty caption"])
        else:
            for col, value in zip(
                ("keys", "offset", "size", "captions", "labels"),
                (key, *g["image"], str(caption).strip(), label),
                strict=True,
            ):
                out[col].append(value)
    out["labels"] = out["labels"] if label_key else None
    return out


def _tar(path: Path, members: list, fmt: int = tarfile.GNU_FORMAT, **kw) -> Path:
    """A tar of ``(name, data)`` files and ``(name, None, type, linkname)`` other members."""
    with tarfile.open(path, "w", format=fmt, **kw) as tar:
        for name, data, *rest in members:
            info = tarfile.TarInfo(name)
            info.mtime = 1_700_000_000
            if data is None:
                info.type, info.linkname = rest[0], rest[1] if len(rest) > 1 else ""
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


DEEP = "d" * 70 + "/" + "e" * 70  # 141 characters: a ustar prefix, GNU 'L' or pax path


def _odd_members(long_names: bool) -> list:
    """Samples with sizes around the 512-byte blocks, folders, links, a fifo, names
    with capitals, several dots, UTF-8, keys met twice, no caption, an empty one."""
    meta = json.dumps({"caption": "from json", "label": "shape"}).encode()
    members = [
        ("00000.jpg", b"\xff"),
        ("00000.txt", b"one byte image"),
        ("folder", None, tarfile.DIRTYPE),
        ("folder/00001.png", b"p" * 511),
        ("folder/00001.json", meta),
        ("link.jpg", None, tarfile.SYMTYPE, "00000.jpg"),
        ("hard.txt", None, tarfile.LNKTYPE, "00000.txt"),
        ("fifo", None, tarfile.FIFOTYPE),
        (f"{DEEP}/00002.JPEG", b"j" * 512),
        (f"{DEEP}/00002.TXT", b"  padded caption \n"),
        ("00003.webp", b"w" * 513),
        ("00003.txt", b"  "),  # empty caption
        ("00004.jpg", b"x" * 1023),  # no caption
        ("00005.seg.png", b"s" * 7),  # not an image of key 00005: 'seg.png'
        ("00005.jpg", b"y" * 2000),
        ("00005.json", b'{"caption": "json only", "label": 3}'),
        ("README", b"no dot, no key"),
        ("ünïcode/ключ.jpg", b"u" * 100),
        ("ünïcode/ключ.txt", "подпись".encode()),
        ("00006.jpg", b"z" * 10),
        ("00007.txt", b"seven, no image"),
        ("00006.txt", b"six, met again"),  # the key seen in two runs
        ("00008.txt", b"caption first"),
        ("00008.jpg", b"i" * 5),
        ("00009.jpg", b"k" * 1536),
        ("00009.json", b"not json"),
        ("00009.txt", b"nine"),
        ("/lead.jpg", b"l" * 3),  # tarfile's key drops the leading slash
        ("/lead.txt", b"leading slash"),
        ("empty.jpg", b""),
        ("empty.txt", b"a zero-byte image"),
    ]
    if long_names:  # past ustar's 256: GNU 'L' or pax path only
        members += [("n" * 250 + ".jpg", b"n" * 77), ("n" * 250 + ".txt", b"long")]
    return members


FORMATS = {"gnu": tarfile.GNU_FORMAT, "pax": tarfile.PAX_FORMAT, "ustar": tarfile.USTAR_FORMAT}


@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("label_key", [None, "label"])
def test_header_scan_equals_the_tarfile_scanner(tmp_path: Path, fmt: str, label_key) -> None:
    path = _tar(tmp_path / "s.tar", _odd_members(fmt != "ustar"), FORMATS[fmt])
    got = scan(path, "caption", label_key)
    assert got == _reference(path, "caption", label_key)
    assert "folder/00001" in got["keys"] and "ünïcode/ключ" in got["keys"]
    assert [k for k, _ in got["bad"]] == ["00003", "00004"]
    with tarfile.open(path) as tar:  # every offset reads back the member's own bytes
        images = {
            m.name.lstrip("/").rsplit(".", 1)[0]: tar.extractfile(m).read()
            for m in tar
            if m.name.lower().endswith((".jpg", ".jpeg", ".png", ".webp")) and ".seg." not in m.name
        }
    raw = path.read_bytes()
    for key, at, size in zip(got["keys"], got["offset"], got["size"], strict=True):
        assert raw[at : at + size] == images[key]


def test_header_scan_agrees_with_webdataset(tmp_path: Path) -> None:
    wds = pytest.importorskip("webdataset")
    drop = ("00007.txt", "/lead.jpg", "/lead.txt")  # tarfile-only rules: two runs, a leading /
    members = [m for m in _odd_members(True) if m[0] not in drop]
    for fmt in ("gnu", "pax"):
        path = _tar(tmp_path / f"{fmt}.tar", members, FORMATS[fmt])
        index = scan(path, "caption", None)
        raw = path.read_bytes()
        theirs = {}
        for sample in wds.WebDataset(str(path), shardshuffle=False):
            image = next((sample[e] for e in ("jpg", "jpeg", "png", "webp") if e in sample), None)
            text = sample["txt"].decode() if "txt" in sample else None
            if text is None and "json" in sample:
                text = json.loads(sample["json"]).get("caption")
            if image is not None and text and text.strip():
                theirs[sample["__key__"]] = (text.strip(), image)
        ours = {
            key: (caption, raw[at : at + size])
            for key, at, size, caption in zip(
                index["keys"], index["offset"], index["size"], index["captions"], strict=True
            )
        }
        assert ours == theirs
        assert "n" * 250 in ours and f"{DEEP}/00002" in ours


def _pax_size_shard(path: Path) -> Path:
    """A pax header whose ``size`` record is the member's size, its ustar field 0 (as
    for files over 8 GB): the scan must take the record."""
    _tar(path, [("a.jpg", b"A" * 700), ("a.txt", b"caption a")], tarfile.USTAR_FORMAT)
    raw = bytearray(path.read_bytes())
    record = b"12 size=700\n"
    pax = tarfile.TarInfo("././@PaxHeader")
    pax.type, pax.size = tarfile.XHDTYPE, len(record)
    head = bytearray(raw[:512])
    head[124:136] = b"00000000000\0"
    head[148:156] = b"        "
    head[148:156] = b"%06o\0 " % sum(head)
    extension = pax.tobuf(tarfile.USTAR_FORMAT) + record.ljust(512, b"\0")
    path.write_bytes(extension + bytes(head) + raw[512:])
    return path


def test_pax_size_record_and_global_header(tmp_path: Path) -> None:
    path = _pax_size_shard(tmp_path / "size.tar")
    assert scan(path, "caption", None) == _reference(path)
    assert scan(path, "caption", None)["size"] == [700]
    glob_hdr = {"comment": "written by git archive"}  # a pax global header ('g') first
    path = _tar(tmp_path / "g.tar", _odd_members(True), tarfile.PAX_FORMAT, pax_headers=glob_hdr)
    assert scan(path, "caption", None) == _reference(path)


def _cut(path: Path, size: int) -> Path:
    path.write_bytes(path.read_bytes()[:size])
    return path


@pytest.mark.parametrize(
    ("where", "message"),
    [
        (lambda n: n - 1024 - 100, "runs past the end"),  # inside the last caption's data
        (lambda n: 512 + 512 + 300, "cut off"),  # inside the second header
        (lambda n: 2048, "no end-of-archive block"),  # on a header boundary
        (lambda n: 0, "empty file"),
    ],
)
def test_truncated_shard_is_a_clear_error(tmp_path: Path, where, message) -> None:
    path = tar_shards(tmp_path, [3])[0]
    path = _cut(path, where(len(path.read_bytes().rstrip(b"\0")) // 512 * 512 + 512 + 1024))
    with pytest.raises(NegscaleError, match=rf"cannot read shard .*00000\.tar \(.*{message}"):
        build(_cfg(str(tmp_path), n=2, n_eval=2))


def test_damaged_header_and_sparse_member_are_errors(tmp_path: Path) -> None:
    path = tar_shards(tmp_path, [3])[0]
    raw = bytearray(path.read_bytes())
    second = 512 + (len(png_bytes(item(0)[0])) + 511) // 512 * 512  # the first caption's header
    bad = raw.copy()
    bad[second + 5] ^= 0x01  # one bit of a name
    path.write_bytes(bytes(bad))
    with pytest.raises(NegscaleError, match=rf"bad header checksum at byte {second}\b"):
        scan(path, "caption", None)
    sparse = raw.copy()
    sparse[second + 156] = ord("S")
    sparse[second + 148 : second + 156] = b"        "
    sparse[second + 148 : second + 156] = b"%06o\0 " % sum(sparse[second : second + 512])
    path.write_bytes(bytes(sparse))
    with pytest.raises(NegscaleError, match="GNU sparse file"):
        scan(path, "caption", None)


def test_checksum_forms_tarfile_accepts(tmp_path: Path) -> None:
    """Signed sums (old Sun tars) and a 7-digit field are checksums tarfile accepts."""
    members = [("ключ.jpg", b"u" * 600), ("ключ.txt", b"signed"), ("b.jpg", b"b"), ("b.txt", b"7")]
    path = _tar(tmp_path / "s.tar", members, tarfile.GNU_FORMAT)
    raw = bytearray(path.read_bytes())
    with tarfile.open(path) as tar:
        at = [m.offset for m in tar]
    for i, pos in enumerate(at):
        head = raw[pos : pos + 512]
        head[148:156] = b" " * 8
        if i < 2:  # bytes over 127 in the name: the signed sum differs
            total = sum(b - 256 if b > 127 else b for b in head)
            head[148:156] = b"%06o\0 " % total
        else:
            head[148:156] = b"%07o\0" % sum(head)
        raw[pos : pos + 512] = head
    path.write_bytes(bytes(raw))
    assert scan(path, "caption", None) == _reference(path)
    assert scan(path, "caption", None)["captions"] == ["signed", "7"]


def test_empty_shard_has_no_samples(tmp_path: Path) -> None:
    tarfile.open(tmp_path / "00009.tar", "w").close()  # the end blocks and nothing else
    assert scan(tmp_path / "00009.tar", "caption", None) == _reference(tmp_path / "00009.tar")
    tar_shards(tmp_path, [4])
    assert len(build(_cfg(str(tmp_path), n=2, n_eval=2)).train.images.shards) == 2
    (tmp_path / "00000.tar").unlink()
    with pytest.raises(NegscaleError, match="no image-caption samples"):
        build(_cfg(str(tmp_path), n=2, n_eval=2))


def test_number_fields_octal_and_base256() -> None:
    assert tarscan._number(b"00000001750\0", 0) == 0o1750
    assert tarscan._number(b" 1750 \0     ", 0) == 0o1750
    assert tarscan._number(b"\x80" + (9 * 2**33).to_bytes(11, "big"), 0) == 9 * 2**33
    with pytest.raises(tarscan.TarError, match="invalid number field in the header at byte 7"):
        tarscan._number(b"12x4\0", 7)


def test_parallel_and_serial_builds_give_the_same_indexes(tmp_path: Path, monkeypatch) -> None:
    odd = _tar(tmp_path / "00003.tar", _odd_members(True), tarfile.PAX_FORMAT)
    paths = [*tar_shards(tmp_path, [5, 4, 6]), odd]
    monkeypatch.setattr(shards_mod, "_workers", lambda jobs: 2)
    build_indexes(paths, "caption", "label")  # a pool of 2 writes every cache file
    caches = [shards_mod._cache_file(p) for p in paths]
    parallel = [json.loads(c.read_text()) for c in caches]
    stamps = [c.stat().st_mtime_ns for c in caches]
    build_indexes(paths, "caption", "label")  # fresh: nothing rebuilt
    assert [c.stat().st_mtime_ns for c in caches] == stamps
    for c in caches:
        c.unlink()
    serial = [load_index(p, "caption", "label") for p in paths]
    assert parallel == serial
    assert [p["stamp"]["version"] for p in parallel] == [shards_mod.INDEX_VERSION] * 4


def test_index_of_an_older_version_is_rebuilt(shards: Path) -> None:
    shard = shards / "00000.tar"
    fresh = load_index(shard, "caption", None)
    cache = shards_mod._cache_file(shard)
    old = {"stamp": {**fresh["stamp"], "version": 1}, "samples": [], "bad": []}
    cache.write_text(json.dumps(old))
    assert not shards_mod._is_fresh(cache, fresh["stamp"])
    assert load_index(shard, "caption", None) == fresh
    assert shards_mod._is_fresh(cache, fresh["stamp"])


def test_an_error_in_a_pool_worker_names_the_shard(tmp_path: Path, monkeypatch) -> None:
    paths = tar_shards(tmp_path, [3, 3, 3])
    _cut(paths[1], 2048)
    monkeypatch.setattr(shards_mod, "_workers", lambda jobs: 2)
    with pytest.raises(NegscaleError, match=r"cannot read shard .*00001\.tar \(truncated"):
        build(_cfg(str(tmp_path), n=2, n_eval=2))
