"""data.* is a union on data.name: one config class per dataset, run ids unmoved."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner
from v1_recipes import QUICKSTART_V1, SELF_SUPERVISED_V1, write

from negscale.cli import app
from negscale.config import DATA_CONFIGS, FolderData, PairsData, load_recipe, validate
from negscale.data import DATASETS
from negscale.errors import NegscaleError

PAIRS = [
    "data.name='pairs'",
    "data.path='/x/t.csv'",
    "data.n=3000",
    "data.n_eval=100",
    "data.image_size=32",
    "model.image_encoder='timm:resnet18'",
]


def test_a_dataset_cannot_carry_another_datasets_fields() -> None:
    with pytest.raises(NegscaleError, match=r"^data\.noise: unknown key for data\.name = 'folder'"):
        validate({"data": {"name": "folder", "noise": 0.1}})
    with pytest.raises(NegscaleError, match=r"^data\.templates: unknown key"):
        validate({"data": {"name": "pairs", "templates": ["{}"]}})
    with pytest.raises(NegscaleError, match=r"^data\.name: unknown dataset 'imagenet'"):
        validate({"data": {"name": "imagenet"}})
    assert isinstance(validate({"data": {"name": "folder", "path": "/x"}}).data, FolderData)


def test_switching_dataset_on_the_command_line_drops_the_files_other_fields() -> None:
    r = load_recipe("quickstart", PAIRS)  # quickstart's [data] sets flavour = "vectors"
    assert isinstance(r.data, PairsData) and r.data.n == 3000
    with pytest.raises(NegscaleError, match=r"^data\.flavour: unknown key"):
        load_recipe("quickstart", [*PAIRS, "data.flavour='vectors'"])  # asked for: an error


def test_run_ids_of_existing_recipes_do_not_move(tmp_path) -> None:
    # values computed by the single-class DataConfig before the union, on 0.1.0's recipes
    quick = write(tmp_path, QUICKSTART_V1, "quickstart")
    pool = write(tmp_path, SELF_SUPERVISED_V1, "self-supervised")
    assert load_recipe(quick, m=8).run_id() == "2853f5654adc32ee"
    assert load_recipe(quick, PAIRS, m=8).run_id() == "9d0da6e8e9cb692b"
    assert load_recipe(quick, PAIRS, m=8).design_id() == "8db89304cfc9"
    images = ["data.flavour='images'", "data.n=512"]
    assert load_recipe(pool, images, m=8).run_id() == "769a39ee9eaf9cf2"


def test_every_registered_loader_has_a_config_and_is_listed() -> None:
    assert set(DATASETS) == set(DATA_CONFIGS)
    res = CliRunner().invoke(app, ["list", "datasets"])
    assert res.exit_code == 0
    for name, entry in DATASETS.items():
        assert name in res.stdout and entry.summary.split()[0] in res.stdout
