"""Encoder registry: tiny towers, timm and transformers towers from local files only."""

from __future__ import annotations

import pytest
import torch

from negscale.config import DataConfig, ModelConfig
from negscale.data import build as build_data
from negscale.encoders import build
from negscale.errors import NegscaleError


@pytest.fixture(scope="module")
def images():
    return build_data(DataConfig(flavour="images", n=16, n_eval=8, image_size=16, vocab=4))


def test_embeddings_are_unit_norm_and_tau_is_fixed_unless_learned(images) -> None:
    model = build(ModelConfig(embed_dim=8, hidden=16, tau=0.2), images)
    img, txt = model(images.train.x[:4], images.train.y[:4])
    assert img.shape == txt.shape == (4, 8)
    torch.testing.assert_close(img.norm(dim=-1), torch.ones(4))
    assert float(model.tau) == pytest.approx(0.2)
    assert "logit_scale" not in dict(model.named_parameters())
    learned = build(ModelConfig(hidden=16, learn_tau=True), images)
    assert "logit_scale" in dict(learned.named_parameters())


def test_timm_image_tower_loads_local_checkpoint(images, tmp_path) -> None:
    timm = pytest.importorskip("timm")
    ref = timm.create_model("test_resnet", pretrained=False, num_classes=0, in_chans=1)
    path = tmp_path / "weights.pth"
    torch.save(ref.state_dict(), path)
    cfg = ModelConfig(image_encoder="timm:test_resnet", image_path=str(path), hidden=16)
    model = build(cfg, images)
    ref.eval()
    model.eval()
    x = images.train.x[:2]
    torch.testing.assert_close(model.image_tower(x), ref(x))


def test_hf_text_tower_from_local_folder(images, tiny_bert) -> None:
    folder = tiny_bert(64)
    model = build(ModelConfig(text_encoder="hf", text_path=str(folder), hidden=16), images)
    _, txt = model(images.train.x[:3], images.train.y[:3])
    assert txt.shape == (3, 32)


@pytest.mark.parametrize(
    "cfg,needle",
    [
        (dict(image_encoder="nope"), "unknown encoder"),
        (dict(image_encoder="mlp"), "takes vector"),
        (dict(image_encoder="timm"), "name the architecture"),
        (dict(image_encoder="timm:no_such_net"), "no architecture"),
        (dict(image_encoder="timm:test_resnet", image_path="/nope.pth"), "no checkpoint"),
        (dict(text_encoder="hf"), "local transformers model folder"),
    ],
)
def test_bad_encoder_choices_are_clear_errors(images, cfg, needle) -> None:
    with pytest.raises(NegscaleError, match=needle):
        build(ModelConfig(hidden=16, **cfg), images)


def test_padding_does_not_change_a_caption_embedding(tiny_bert) -> None:
    from negscale.encoders.pretrained import HFTextTower
    from negscale.encoders.tiny import TokenTransformerTower

    torch.manual_seed(0)
    tiny = TokenTransformerTower(vocab=10, length=6, hidden=16, layers=1, pad_id=0).eval()
    short, long = torch.tensor([[5, 6, 0, 0]]), torch.tensor([[5, 6, 0, 0, 0, 0]])
    torch.testing.assert_close(tiny(short), tiny(long))
    unpadded = TokenTransformerTower(vocab=10, length=6, hidden=16, layers=1, pad_id=None).eval()
    unpadded.load_state_dict(tiny.state_dict())
    assert not torch.allclose(unpadded(short), unpadded(long))  # without pad_id, 0 is a word

    from negscale.data.base import Modality

    folder = tiny_bert(10)
    hf = HFTextTower(Modality("tokens", vocab=10, length=6, pad_id=0), str(folder)).eval()
    torch.testing.assert_close(hf(short), hf(long))
