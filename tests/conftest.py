"""Test setup: one OpenMP thread (the CI machine has 2 shared cores) and small recipes."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
import torch

torch.set_num_threads(1)

# A recipe small enough for unit tests: a few seconds per run on one core.
TINY = [
    "data.n=512",
    "data.n_eval=256",
    "train.batch_size=64",
    "train.steps=40",
    "model.hidden=32",
    "model.embed_dim=16",
    "eval.prototypes=256",
    "train.select=last",  # the bundled studies' "best" is tested where it matters (test_selection)
]


@pytest.fixture
def tiny_overrides() -> list[str]:
    return list(TINY)


@pytest.fixture
def tiny_bert(tmp_path):
    """Save a tiny random BERT to a local folder and return the folder (one config for all)."""

    def make(vocab_size: int, folder: str = "bert", max_positions: int = 512):
        from transformers import BertConfig, BertModel

        config = BertConfig(
            vocab_size=vocab_size,
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=max_positions,
        )
        path = tmp_path / folder
        BertModel(config).save_pretrained(path)
        return path

    return make
