"""folder, digits, animal-mnist, multi-caption pairs and COCO JSON: each against a reference."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from data_fixtures import SHAPES, class_folder, item

from negscale.config import DataConfig, ModelConfig
from negscale.data import build
from negscale.errors import NegscaleError


def _all(pairs) -> tuple[torch.Tensor, torch.Tensor]:
    return pairs.fetch(torch.arange(len(pairs)))


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return class_folder(tmp_path_factory.mktemp("classes"), 36)


# ---------------------------------------------------------------- folder


def test_folder_classes_are_subfolders_and_captions_fill_the_templates(folder: Path) -> None:
    templates = ["a photo of a {}.", "the {}"]
    d = build(DataConfig(name="folder", path=str(folder), n=24, n_eval=12, templates=templates))
    assert d.info["classes"] == sorted(SHAPES) and d.num_classes == 3
    assert len(d.train) == 24 and len(d.eval) == 12
    paths = d.train.images.paths
    for i, row in enumerate(d.train.rows):
        name = Path(paths[row]).parent.name  # the class is the folder of the file
        assert int(d.train.labels[i]) == sorted(SHAPES).index(name)
        assert list(d.train.captions[row]) == [f"a photo of a {name}.", f"the {name}"]
    # eval captions are the first template, so the eval text of one class is one sequence
    _, y = _all(d.eval)
    for k in range(3):
        rows = y[d.eval.labels == k]
        assert (rows == rows[0]).all()


def test_zero_shot_uses_every_template_of_every_class(folder: Path, tiny_overrides) -> None:
    """Prompt ensembling: a class prototype is the mean embedding of its templates' captions."""
    from negscale.config import load_recipe
    from negscale.train import Runtime, Trainer

    templates = ["a photo of a {}.", "the {}", "a drawing of a {}"]
    sets = [*tiny_overrides, "data.name='folder'", f"data.path='{folder}'", "data.n=24"]
    sets += ["data.n_eval=12", f"data.templates={json.dumps(templates)}", "train.steps=3"]
    sets += ["train.batch_size=8", "data.image_size=16"]
    r = load_recipe("quickstart", sets)
    trainer = Trainer(r, Runtime(torch.device("cpu"), "fp32", False), progress=False)
    tokens, ids = trainer.data.prompts
    names = sorted(SHAPES)
    assert ids.tolist() == [k for k in range(3) for _ in templates]
    # the prompts are the templates filled with each class name, tokenised like captions
    table = trainer.data.train.encode  # the split's tokenizer
    expected = [t.replace("{}", name) for name in names for t in templates]
    assert torch.equal(tokens, table(expected))
    for _ in range(3):
        trainer.train_step()
    out = trainer.evaluate()
    img, _ = trainer.evaluator.embed(trainer.data.eval)
    with torch.no_grad():
        txt = trainer.model.encode_text(tokens)
    protos = torch.stack([txt[ids == k].mean(0) for k in range(3)])
    protos = torch.nn.functional.normalize(protos, dim=-1)
    pred = (img @ protos.T).argmax(dim=1)
    assert out["zeroshot_top1"] == pytest.approx(
        float((pred == trainer.data.eval.labels).double().mean())
    )


def test_folder_eval_path_and_class_mismatch(tmp_path: Path, folder: Path) -> None:
    val = class_folder(tmp_path / "val", 9)
    d = build(DataConfig(name="folder", path=str(folder), eval_path=str(val), n=30, n_eval=6))
    assert len(d.train) == 30 and len(d.eval) == 6
    assert all(str(d.eval.images.paths[r]).startswith(str(val)) for r in d.eval.rows)
    (val / "hexagon").mkdir()
    with pytest.raises(NegscaleError, match=r"data\.eval_path: classes not in .*hexagon"):
        build(DataConfig(name="folder", path=str(folder), eval_path=str(val), n=30, n_eval=6))


def test_folder_nested_over_n(folder: Path) -> None:
    small = build(DataConfig(name="folder", path=str(folder), n=10, n_eval=8))
    big = build(DataConfig(name="folder", path=str(folder), n=28, n_eval=8))
    assert np.array_equal(big.train.rows[:10], small.train.rows)
    assert np.array_equal(big.eval.rows, small.eval.rows)


def test_a_timm_tower_gets_its_own_normalisation(tmp_path: Path) -> None:
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
    from PIL import Image

    for k, colour in enumerate([(200, 40, 90), (10, 250, 130)]):
        (tmp_path / f"c{k}").mkdir()
        for i in range(4):
            Image.new("RGB", (20 + i, 18), colour).save(tmp_path / f"c{k}" / f"{i}.png")
    cfg = DataConfig(name="folder", path=str(tmp_path), n=4, n_eval=4, image_size=16)
    clip = ModelConfig(image_encoder="timm:vit_base_patch16_clip_224.openai")
    d = build(cfg, clip)
    x, _ = _all(d.eval)
    for img, row in zip(x, d.eval.rows, strict=True):
        rgb = np.array(Image.open(d.eval.images.paths[row]).getpixel((0, 0))) / 255
        want = (rgb - np.array(OPENAI_DATASET_MEAN)) / np.array(OPENAI_DATASET_STD)
        torch.testing.assert_close(img[:, 5, 5], torch.tensor(want, dtype=torch.float32))
    assert not torch.allclose(_all(build(cfg).eval)[0], x)  # tiny towers: ImageNet statistics


# ---------------------------------------------------------------- bundled


def test_digits_are_sklearns_digits() -> None:
    from sklearn.datasets import load_digits

    ref = load_digits()
    d = build(DataConfig(name="digits", n=1000, n_eval=797, image_size=8, augment=False))
    assert len(d.train) + len(d.eval) == 1797 == len(ref.target)
    rows = np.concatenate([d.train.rows, d.eval.rows])
    assert sorted(rows.tolist()) == list(range(1797))
    labels = torch.cat([d.train.labels, d.eval.labels])
    assert labels.tolist() == ref.target[rows].tolist()
    # pixels: 0..16 scaled to 0..255, then timm's ImageNet normalisation (red channel)
    x, _ = d.eval.fetch(torch.arange(3))
    want = np.round(ref.images[d.eval.rows[:3]] * 255 / 16) / 255
    torch.testing.assert_close(
        x[:, 0], torch.tensor((want - 0.485) / 0.229, dtype=torch.float32), atol=1e-5, rtol=0
    )


def test_two_view_positive_is_a_second_augmentation_of_the_same_image() -> None:
    cfg = {"name": "digits", "n": 64, "n_eval": 32, "image_size": 16, "views": "two-view"}
    d = build(DataConfig(**cfg, crop_min=1.0))  # full-area crops: only the flips vary
    plain = build(DataConfig(**cfg, augment=False)).train  # same items, no augmentation
    assert d.text.kind == "image" and d.text.shape == d.image.shape
    x, y = _all(d.train)
    ref, _ = _all(plain)
    flips = 0
    for view in (x, y):
        same = (view - ref).abs().amax((1, 2, 3)) < 1e-5
        mirrored = (view - ref.flip(-1)).abs().amax((1, 2, 3)) < 1e-5
        assert (same | mirrored).all()  # every view is the item's own image (or its mirror)
        flips += int(mirrored.sum())
    assert 0 < flips < 128 and not torch.equal(x, y)  # the two views are drawn separately
    ex, ey = _all(d.eval)
    assert torch.equal(ex, ey)  # evaluation: the same deterministic view on both sides


def test_animal_mnist_when_installed() -> None:
    pytest.importorskip("animal_mnist")
    d = build(DataConfig(name="animal-mnist", n=9000, n_eval=1000, image_size=28))
    labels = torch.cat([d.train.labels, d.eval.labels])
    assert torch.bincount(labels).tolist() == [1000] * 10  # the package's 1000 per class
    assert d.info["classes"][0] == "bear" and d.num_classes == 10


def test_animal_mnist_missing_says_how_to_install(monkeypatch) -> None:
    from importlib import util

    real = util.find_spec
    monkeypatch.setattr(
        util, "find_spec", lambda name, *a: None if name == "animal_mnist" else real(name, *a)
    )
    with pytest.raises(NegscaleError, match=r"pip install --no-deps animal-mnist"):
        build(DataConfig(name="animal-mnist", n=100, n_eval=10))


# ---------------------------------------------------------------- pairs: captions, COCO


@pytest.fixture(scope="module")
def captioned(tmp_path_factory) -> Path:
    """12 images, each with two captions (one row per caption), plus the same as COCO JSON."""
    root = tmp_path_factory.mktemp("captioned")
    rows, images, notes = [], [], []
    for i in range(12):
        im, caption, _ = item(i)
        im.save(root / f"{i:02d}.png")
        images.append({"id": 100 + i, "file_name": f"{i:02d}.png"})
        for j, text in enumerate((caption, f"picture number {i}")):
            rows.append({"image": f"{i:02d}.png", "caption": text})
            notes.append({"id": 2 * i + j, "image_id": 100 + i, "caption": text})
    pd.DataFrame(rows).to_csv(root / "t.csv", index=False)
    (root / "coco.json").write_text(json.dumps({"images": images, "annotations": notes}))
    return root


def _pairs(path: Path, **kw) -> DataConfig:
    base = {"name": "pairs", "path": str(path), "n": 8, "n_eval": 4, "image_size": 16}
    return DataConfig(**(base | kw))


def test_several_captions_per_image_are_one_item_drawn_per_visit(captioned: Path) -> None:
    d = build(_pairs(captioned / "t.csv"))
    assert d.info["images"] == 12 and d.info["rows"] == 24
    assert len(d.train) + len(d.eval) == 12  # ids are images, not captions
    seen: dict[int, set] = {}
    for _ in range(12):
        _, y = _all(d.train)
        for i, row in enumerate(y.tolist()):
            seen.setdefault(i, set()).add(tuple(row))
    assert all(len(v) == 2 for v in seen.values())  # both captions of every image come up
    # an image occurs once per set, so its second caption can never be its negative
    assert len(set(d.train.rows.tolist())) == len(d.train)
    _, ey = _all(d.eval)  # evaluation takes the first caption, every time
    assert torch.equal(ey, _all(d.eval)[1])


def test_coco_json_equals_the_same_table(captioned: Path) -> None:
    a = build(_pairs(captioned / "t.csv"))
    b = build(_pairs(captioned / "coco.json", format="coco"))
    assert np.array_equal(a.train.rows, b.train.rows)
    assert [list(c) for c in a.train.captions] == [list(c) for c in b.train.captions]
    assert torch.equal(_all(a.eval)[0], _all(b.eval)[0])
    assert torch.equal(_all(a.eval)[1], _all(b.eval)[1])


def test_coco_eval_path_and_bad_json(captioned: Path, tmp_path: Path) -> None:
    d = build(
        _pairs(captioned / "coco.json", format="coco", eval_path=str(captioned / "coco.json"))
    )
    assert len(d.train) == 8 and len(d.eval) == 4
    (tmp_path / "x.json").write_text('{"images": []}')
    with pytest.raises(NegscaleError, match=r"data\.path: not a COCO captions JSON"):
        build(_pairs(tmp_path / "x.json", format="coco"))
