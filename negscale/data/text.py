"""Captions to token ids: the built-in word tokenizer, or a local transformers tokenizer.

The word tokenizer is deterministic and tiny (for the tiny text towers):
lowercase, words = runs of letters/digits, vocabulary = training words by
frequency then alphabetically, at most ``vocab_size`` ids with 0 = pad and
1 = unknown, fixed length. An ``hf`` text tower reads its own vocabulary: a
local transformers tokenizer folder (``data.tokenizer``, else the tower's
``model.text_path``).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import torch

from negscale.errors import NegscaleError

PAD, UNK = 0, 1
_WORD = re.compile(r"[^\W_]+")  # letters and digits (any script); everything else splits


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def build_vocab(captions: Iterable[str], size: int) -> dict[str, int]:
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


class WordTokens:
    """The built-in tokenizer as a callable: captions -> (len, length) ids."""

    name = "words"

    def __init__(self, captions: Iterable[str], size: int, length: int) -> None:
        self.table = build_vocab(captions, size)
        self.vocab, self.pad_id, self.length = len(self.table) + 2, PAD, length

    def __call__(self, captions: list[str]) -> torch.Tensor:
        return encode_words(captions, self.table, self.length)


class HFTokens:
    """A local transformers tokenizer: fixed-length ids, padded with its own pad token."""

    def __init__(self, folder: str, length: int, field: str = "data.tokenizer") -> None:
        path = Path(folder).expanduser()
        if not path.is_dir():
            raise NegscaleError(f"{field}: no tokenizer folder at {folder}")
        from transformers import AutoTokenizer

        try:
            self.tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        except Exception as exc:  # transformers raises many kinds
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise NegscaleError(f"{field}: cannot load from {folder}: {reason}") from None
        if self.tok.pad_token is None:
            if self.tok.eos_token is None:
                raise NegscaleError(f"{field}: {folder} defines no pad (or eos) token")
            self.tok.pad_token = self.tok.eos_token
        self.name, self.vocab, self.length = folder, len(self.tok), length
        self.pad_id = self.tok.pad_token_id

    def __call__(self, captions: list[str]) -> torch.Tensor:
        enc = self.tok(
            captions,
            padding="max_length",
            truncation=True,
            max_length=self.length,
            return_tensors="pt",
        )
        return enc["input_ids"].long()


def tokenizer(
    folder: str | None, text_path: str | None, captions: Iterable[str], size: int, length: int
) -> WordTokens | HFTokens:
    """``data.tokenizer`` if set, else an ``hf`` tower's own folder, else the word tokenizer."""
    from negscale.local_paths import resolve

    if folder:
        return HFTokens(resolve(folder, "data.tokenizer"), length)
    if text_path:
        return HFTokens(resolve(text_path, "model.text_path"), length, field="model.text_path")
    return WordTokens(captions, size, length)
