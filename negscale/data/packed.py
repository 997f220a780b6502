"""Millions of strings in two numpy arrays, not millions of Python objects.

A webdataset study at the paper's scale holds 14M captions and 14M sample
keys. As Python ``str`` objects in lists that is about 150 bytes each, several
GB in the main process, and DataLoader workers forked from it touch the
objects' reference counts and so copy those pages each. :class:`PackedStrings`
keeps one UTF-8 byte buffer and an int64 offset per string (the text's own
size plus 8 bytes), decodes one string per access, and shares its two
buffers with forked workers untouched. Neither pyarrow nor numpy's fixed
width strings do this without a copy per access or padding to the longest
string, hence this small class.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence

import numpy as np


class PackedStrings(Sequence[str]):
    """An immutable sequence of strings stored as one UTF-8 buffer and offsets."""

    def __init__(self, blob: np.ndarray, offsets: np.ndarray) -> None:
        self.blob, self.offsets = blob, offsets

    @classmethod
    def of(cls, strings: Iterable[str]) -> PackedStrings:
        return PackedBuilder().extend(strings).build()

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        n = len(self)
        i = int(i)
        if not -n <= i < n:
            raise IndexError(f"string {i} of {n}")
        i %= n
        return self.blob[self.offsets[i] : self.offsets[i + 1]].tobytes().decode("utf-8")

    def __iter__(self) -> Iterator[str]:
        return (self[i] for i in range(len(self)))

    @property
    def nbytes(self) -> int:
        return int(self.blob.nbytes + self.offsets.nbytes)


class PackedBuilder:
    """Appends strings chunk by chunk (a shard at a time), then packs them once."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._lengths: list[np.ndarray] = []

    def extend(self, strings: Iterable[str]) -> PackedBuilder:
        """Append ``strings``, encoded 65536 at a time (so a build never holds a bytes
        object per string for the whole set)."""
        it = iter(strings)
        while batch := [s.encode("utf-8") for s in itertools.islice(it, 65536)]:
            self._chunks.append(b"".join(batch))
            self._lengths.append(np.fromiter(map(len, batch), dtype=np.int64, count=len(batch)))
        return self

    def build(self) -> PackedStrings:
        lengths = np.concatenate(self._lengths) if self._lengths else np.zeros(0, np.int64)
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        blob = np.frombuffer(b"".join(self._chunks), dtype=np.uint8)
        self._chunks, self._lengths = [], []
        return PackedStrings(blob, offsets)


class OneCaption(Sequence[Sequence[str]]):
    """Per image row the tuple of its captions, for sets with one caption per image."""

    def __init__(self, captions: PackedStrings) -> None:
        self.captions = captions

    def __len__(self) -> int:
        return len(self.captions)

    def __getitem__(self, row):  # type: ignore[override]
        if isinstance(row, slice):
            return [(c,) for c in self.captions[row]]
        return (self.captions[row],)


class GroupedCaptions(Sequence[Sequence[str]]):
    """Per image row the tuple of its captions: one packed buffer and each row's start.

    A caption table (CSV/COCO) of millions of rows would otherwise be a list of
    lists of ``str``, copied page by page into every forked DataLoader worker.
    """

    def __init__(self, captions: PackedStrings, starts: np.ndarray) -> None:
        self.captions, self.starts = captions, starts

    @classmethod
    def of(
        cls, captions: Sequence[str] | np.ndarray, group: np.ndarray, groups: int
    ) -> GroupedCaptions:
        """Captions in table order (indexable: a table's column, not copied), ``group[i]``
        the row caption i belongs to (0 .. groups−1); each row keeps its captions in
        table order."""
        order = np.argsort(group, kind="stable")
        starts = np.zeros(groups + 1, dtype=np.int64)
        np.cumsum(np.bincount(group, minlength=groups), out=starts[1:])
        return cls(PackedStrings.of(captions[i] for i in order), starts)

    def __len__(self) -> int:
        return len(self.starts) - 1

    def __getitem__(self, row):  # type: ignore[override]
        if isinstance(row, slice):
            return [self[r] for r in range(*row.indices(len(self)))]
        n, row = len(self), int(row)
        if not -n <= row < n:
            raise IndexError(f"row {row} of {n}")
        row %= n
        return tuple(self.captions[i] for i in range(self.starts[row], self.starts[row + 1]))

    @property
    def nbytes(self) -> int:
        return self.captions.nbytes + int(self.starts.nbytes)
