"""Every dataset trains with every negative source, end to end, on tiny fixtures."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import torch
from data_fixtures import caption_rows, class_folder, tar_shards
from typer.testing import CliRunner

from negscale.cli import app
from negscale.config import load_recipe
from negscale.train import Runtime, Trainer, run

SOURCES = {
    "batch": [],
    "subsample": ["negatives.source='subsample'", "negatives.m=3"],
    "independent": ["negatives.source='independent'", "negatives.m=10"],
    "pool-exact": ["negatives.source='pool'", "negatives.m=12"],
    "pool-estimator": ["negatives.source='pool'", "negatives.m=12", "negatives.pool_exact_max=0"],
    "queue": ["negatives.source='queue'", "negatives.m=12"],
}
TINY = [
    "data.n=24",
    "data.n_eval=8",
    "data.image_size=16",
    "data.workers=0",
    "train.batch_size=8",
    "train.steps=2",
    "train.select=last",  # n is most of each fixture: no rows left to validate on
    "model.hidden=16",
    "model.embed_dim=8",
    "eval.prototypes=24",
]

# 8 held-out pairs are too few for the trainer's collapse check (it wants an AUC gain of
# 0.2 over initialisation): a finished run is "ok" or "collapsed", and records either way.
FINISHED = ("ok", "collapsed")


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory) -> dict[str, list[str]]:
    """Dataset name -> its recipe overrides (all built once per module)."""
    root = tmp_path_factory.mktemp("fixtures")
    rows = caption_rows(root, 36)
    pd.DataFrame(rows).to_csv(root / "pairs.csv", index=False)
    pd.DataFrame(rows).to_parquet(root / "pairs.parquet", index=False)
    class_folder(root / "classes", 36)
    tar_shards(root / "shards", [18, 18])
    return {
        "pairs-csv": ["data.name='pairs'", f"data.path='{root / 'pairs.csv'}'"],
        "pairs-parquet": ["data.name='pairs'", f"data.path='{root / 'pairs.parquet'}'"],
        "folder": ["data.name='folder'", f"data.path='{root / 'classes'}'"],
        "shards": ["data.name='shards'", f"data.path='{root / 'shards'}'"],
        "digits": ["data.name='digits'"],
        "digits-two-view": ["data.name='digits'", "data.views='two-view'"],
    }


@pytest.mark.parametrize("source", list(SOURCES))
@pytest.mark.parametrize(
    "dataset", ["pairs-csv", "pairs-parquet", "folder", "shards", "digits", "digits-two-view"]
)
def test_each_dataset_trains_with_each_source(fixtures, dataset: str, source: str) -> None:
    recipe = load_recipe("quickstart", [*TINY, *fixtures[dataset], *SOURCES[source]])
    trainer = Trainer(recipe, Runtime(torch.device("cpu"), "fp32", False), progress=False)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    for _ in range(2):
        trainer.train_step()
    assert len(trainer.log.losses) == 2 and all(math.isfinite(v) for v in trainer.log.losses)
    after = list(trainer.model.parameters())
    moved = any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert moved and trainer.log.negatives_seen[-1] >= min(recipe.m, 3)


@pytest.mark.parametrize("dataset", ["folder", "shards", "digits-two-view"])
def test_a_run_records_zero_shot_and_the_skip_count(fixtures, dataset, tmp_path: Path) -> None:
    recipe = load_recipe("quickstart", [*TINY, *fixtures[dataset]])
    rec = run(recipe, tmp_path, device="cpu", progress=False)
    assert rec.status in FINISHED and rec.data_skipped == 0 and rec.n_eval == 8
    if dataset == "shards":  # no label key asked for: no classes, no zero-shot
        assert rec.num_classes is None and rec.zeroshot_top1 is None
    else:  # two-view: class means of the second views are the prototypes
        assert rec.num_classes == {"folder": 3}.get(dataset, 10)
        assert rec.zeroshot_top1 is not None


# ---------------------------------------------------------------- bad input, from the CLI

runner = CliRunner()


def _cli(tmp_path: Path, overrides: list[str]):
    args = ["train", "quickstart", "--results", str(tmp_path / "results"), "--device", "cpu"]
    return runner.invoke(app, [*args, *(a for o in [*TINY, *overrides] for a in ("--set", o))])


def _one_line_error(res, *needles: str) -> None:
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert all(n in lines[0] for n in needles), lines[0]
    assert "Traceback" not in res.output


def test_bad_folder_and_shard_input_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    _one_line_error(
        _cli(tmp_path, ["data.name='folder'", f"data.path='{tmp_path / 'nope'}'"]),
        "data.path",
        "nope",
    )
    root = class_folder(tmp_path / "classes", 36)
    bad = root / "circle" / "000.png"
    bad.write_text("not an image")
    _one_line_error(
        _cli(tmp_path, ["data.name='folder'", f"data.path='{root}'"]), "data.path", str(bad)
    )
    _one_line_error(
        _cli(tmp_path, ["data.name='folder'", f"data.path='{root}'", "data.n=40"]), "data.n"
    )
    shards = tmp_path / "shards"
    tar_shards(shards, [20])  # 12 training samples after the hold-out of 8
    _one_line_error(
        _cli(tmp_path, ["data.name='shards'", f"data.path='{shards}'"]), "data.n", "24", "12"
    )
    assert not list((tmp_path / "results").glob("runs/*.parquet"))


def test_skip_bad_skips_counts_and_records(tmp_path: Path) -> None:
    root = class_folder(tmp_path / "classes", 40)
    (root / "circle" / "000.png").write_text("not an image")
    (root / "square" / "004.png").write_bytes(b"")
    recipe = load_recipe(
        "quickstart",
        [*TINY, "data.name='folder'", f"data.path='{root}'", "data.skip_bad=true"],
    )
    rec = run(recipe, tmp_path / "results", device="cpu", progress=False)
    assert rec.status in FINISHED and rec.data_skipped == 2 and rec.n == 24
