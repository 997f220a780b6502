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
