"""``shards``: tar shards read by id agree with webdataset's own sequential reader."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from data_fixtures import item, tar_shards
from PIL import Image

from negscale.data import build
from negscale.data.shards import expand, load_index
from negscale.errors import NegscaleError
from negscale.recipe import DataConfig

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
