"""Run records: schema, atomic writes, loading back."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from negscale.errors import NegscaleError
from negscale.results import RunRecord, is_valid_record, load, record_path, write

CONTRACT = [
    "run_id",
    "study",
    "status",
    "created_at",
    "negscale_version",
    "git_sha",
    "torch_version",
    "device",
    "world_size",
    "recipe",
    "setting",
    "negatives",
    "loss_form",
    "m",
    "n",
    "seed",
    "batch_size",
    "steps",
    "epochs",
    "tau",
    "dataset",
    "image_encoder",
    "text_encoder",
    "embed_dim",
    "precision",
    "recall_at_1",
    "recall_at_5",
    "recall_at_10",
    "auc",
    "mean_rank",
    "recall_at_1_i2t",
    "recall_at_5_i2t",
    "recall_at_10_i2t",
    "auc_i2t",
    "mean_rank_i2t",
    "recall_at_1_t2i",
    "recall_at_5_t2i",
    "recall_at_10_t2i",
    "auc_t2i",
    "mean_rank_t2i",
    "zeroshot_top1",
    "val_loss",
    "train_loss",
    "wall_s",
    "train_s",
    "samples_per_s",
    "peak_mem_mb",
    "loss_gflops",
]


def make_record(run_id: str = "abc", **kw) -> RunRecord:
    base = dict(
        run_id=run_id,
        study="s",
        status="ok",
        created_at="2026-01-01T00:00:00+00:00",
        negscale_version="0",
        git_sha=None,
        torch_version="x",
        device="cpu",
        world_size=1,
        recipe="{}",
        setting="self-supervised",
        negatives="batch",
        loss_form="infonce",
        m=3,
        n=8,
        seed=0,
        batch_size=4,
        steps=2,
        epochs=1.0,
        tau=0.1,
        dataset="synthetic",
        image_encoder="auto",
        text_encoder="auto",
        embed_dim=4,
        precision="fp32",
        auc=0.9,
    )
    base.update(kw)
    return RunRecord(**base)


def test_record_has_every_contract_column(tmp_path) -> None:
    write(make_record(), tmp_path)
    df = load(tmp_path)
    assert set(CONTRACT) <= set(df.columns)
    assert len(df) == 1 and df.loc[0, "auc"] == 0.9
    assert pd.isna(df.loc[0, "zeroshot_top1"])


def test_write_is_atomic_and_leaves_no_temporary_files(tmp_path) -> None:
    for i in range(3):
        write(make_record(f"r{i}", seed=i), tmp_path)
    write(make_record("r1", seed=1, auc=0.5), tmp_path)  # rewrite replaces whole
    files = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert files == ["r0.parquet", "r1.parquet", "r2.parquet"]
    df = load(tmp_path).set_index("run_id")
    assert df.loc["r1", "auc"] == 0.5


def test_failed_write_leaves_nothing(tmp_path, monkeypatch) -> None:
    import negscale.results as results

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(results.pq, "write_table", boom)
    with pytest.raises(OSError):
        write(make_record(), tmp_path)
    assert list((tmp_path / "runs").iterdir()) == []


def test_corrupt_records_are_detected_and_skipped(tmp_path) -> None:
    write(make_record("good"), tmp_path)
    bad = record_path(tmp_path, "bad")
    bad.write_bytes(b"PAR1 not really")
    assert is_valid_record(record_path(tmp_path, "good"))
    assert not is_valid_record(bad)
    with pytest.warns(UserWarning, match="unreadable"):
        df = load(tmp_path)
    assert list(df["run_id"]) == ["good"]
    with pytest.raises(NegscaleError):
        load(tmp_path, strict=True)


def test_load_several_studies_and_missing_paths(tmp_path) -> None:
    write(make_record("a"), tmp_path / "s1")
    write(make_record("b"), tmp_path / "s2")
    assert sorted(load([tmp_path / "s1", tmp_path / "s2"])["run_id"]) == ["a", "b"]
    with pytest.raises(NegscaleError):
        load(tmp_path / "nope")


def test_record_fields_cover_contract() -> None:
    names = {f.name for f in dataclasses.fields(RunRecord)}
    assert set(CONTRACT) <= names
