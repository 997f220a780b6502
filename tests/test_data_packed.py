"""PackedStrings against a plain list of str: same items, same errors, the bytes it claims."""

from __future__ import annotations

import pickle
import random

import pytest

from negscale.data.packed import OneCaption, PackedBuilder, PackedStrings


def _strings(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    alphabet = "abc xyz,.é漢字🙂\n\t"
    return ["".join(rng.choices(alphabet, k=rng.randint(0, 12))) for _ in range(count)]


def test_items_slices_and_iteration_equal_the_list_it_packs() -> None:
    want = _strings(500, 0)
    builder = PackedBuilder()
    for start in range(0, 500, 120):  # chunks of unequal size, as shards are
        builder.extend(want[start : start + 120])
    got = builder.build()
    assert len(got) == 500 and list(got) == want
    assert [got[i] for i in (-1, -500, 0, 250)] == [want[i] for i in (-1, -500, 0, 250)]
    assert got[10:40:3] == want[10:40:3] and got[::-1] == want[::-1]
    assert "".join(want[:3]) in "".join(got) and want[7] in got
    for bad in (500, -501):
        with pytest.raises(IndexError):
            got[bad]


def test_storage_is_the_utf8_text_plus_one_offset_per_string() -> None:
    want = _strings(300, 1)
    packed = PackedStrings.of(want)
    text = sum(len(s.encode("utf-8")) for s in want)
    assert packed.nbytes == text + 8 * (len(want) + 1)
    again = pickle.loads(pickle.dumps(packed))  # spawned DataLoader workers get a copy
    assert list(again) == want


def test_empty_and_one_caption_rows() -> None:
    assert len(PackedStrings.of([])) == 0 and list(PackedStrings.of([])) == []
    rows = OneCaption(PackedStrings.of(["a dog", "", "a cat"]))
    assert len(rows) == 3 and rows[0] == ("a dog",) and rows[-1] == ("a cat",)
    assert rows[1:] == [("",), ("a cat",)]


def test_a_set_larger_than_one_encoding_batch_packs_every_string() -> None:
    want = [str(i) * (i % 3) for i in range(70_000)]  # > 65536: two encoding batches
    got = PackedStrings.of(iter(want))
    assert len(got) == 70_000 and got[65535] == want[65535] and got[65536] == want[65536]
    assert list(got) == want


def test_grouped_captions_equal_a_list_of_lists_built_by_hand() -> None:
    """Captions of a table with repeated images: per image, its captions in table order."""
    import numpy as np
    import pandas as pd

    from negscale.data.packed import GroupedCaptions
    from negscale.data.pairs import group_images

    rng = random.Random(3)
    texts = _strings(300, 4)
    images = [f"img{rng.randint(0, 60)}.png" for _ in texts]
    table = pd.DataFrame({"__image": images, "__caption": texts})
    grouped, got = group_images(table, ["__image"])
    # the reference: first-appearance order of images, each image's captions as listed
    firsts = list(dict.fromkeys(images))
    want = {im: [t for i, t in zip(images, texts, strict=True) if i == im] for im in firsts}
    assert list(grouped["__image"]) == firsts and len(got) == len(firsts)
    assert [list(got[r]) for r in range(len(got))] == [want[im] for im in firsts]
    assert got[-1] == tuple(want[firsts[-1]]) and got[1:3] == [tuple(want[f]) for f in firsts[1:3]]
    with pytest.raises(IndexError):
        got[len(firsts)]
    again = pickle.loads(pickle.dumps(got))  # what a spawned DataLoader worker receives
    assert [again[r] for r in range(len(again))] == [got[r] for r in range(len(got))]
    empty = GroupedCaptions.of([], np.zeros(0, np.int64), 2)  # an image row without captions
    assert (
        len(empty) == 2 and empty[0] == () and empty.nbytes == 8 * 1 + 8 * 3
    )  # one offset, three starts
