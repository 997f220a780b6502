"""Towers from timm (images) and transformers (text), weights from local paths only.

``model.image_encoder = "timm:<architecture>"`` builds a timm backbone without
its classifier; ``model.image_path`` (a local checkpoint file) loads weights,
else it starts from random initialisation. ``model.text_encoder = "hf"`` loads
a transformers model from the local folder ``model.text_path``
(``local_files_only``: nothing is ever downloaded) and mean-pools its last
hidden states over the tokens.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from negscale.config import ModelConfig
from negscale.data.base import Modality
from negscale.encoders.tiny import masked_mean, token_mask
from negscale.errors import NegscaleError
from negscale.local_paths import resolve


class TimmTower(nn.Module):
    def __init__(self, arch: str, modality: Modality, path: str | None) -> None:
        super().__init__()
        import timm

        if arch not in timm.list_models():
            raise NegscaleError(f"model.image_encoder: timm has no architecture '{arch}'")
        channels = modality.shape[0] if modality.shape else 3
        self.net = timm.create_model(arch, pretrained=False, num_classes=0, in_chans=channels)
        if path is not None:
            if not Path(path).is_file():
                raise NegscaleError(f"model.image_path: no checkpoint file at {path}")
            from timm.models import load_checkpoint

            load_checkpoint(self.net, path, strict=False)
        self.out_dim = int(self.net.num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class HFTextTower(nn.Module):
    def __init__(self, modality: Modality, path: str | None) -> None:
        super().__init__()
        if path is None or not Path(path).is_dir():
            raise NegscaleError(
                "model.text_path: the 'hf' text encoder needs a local transformers model folder"
            )
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a local load needs no progress bar on stderr
        try:
            self.net = AutoModel.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise NegscaleError(
                f"model.text_path: cannot load a model from {path}: {exc}"
            ) from None
        vocab = int(self.net.config.vocab_size)
        if modality.vocab > vocab:
            raise NegscaleError(
                f"model.text_encoder: the data has {modality.vocab} token ids, the model {vocab}"
            )
        self.out_dim = int(self.net.config.hidden_size)
        self.pad_id = modality.pad_id

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        mask = token_mask(tokens, self.pad_id)
        hidden = self.net(input_ids=tokens, attention_mask=mask.long()).last_hidden_state
        return masked_mean(hidden, mask)


def timm_tower(arch: str, modality: Modality, cfg: ModelConfig) -> nn.Module:
    return TimmTower(arch, modality, resolve(cfg.image_path, "model.image_path"))


def hf_tower(modality: Modality, cfg: ModelConfig) -> nn.Module:
    return HFTextTower(modality, resolve(cfg.text_path, "model.text_path"))
