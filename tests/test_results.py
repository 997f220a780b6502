"""Run records: schema, atomic writes, loading back."""

from __future__ import annotations

import dataclasses
import os
import stat

import pandas as pd
import pytest

from negscale.errors import NegscaleError
from negscale.results import (
    RunRecord,
    check_results_dir,
    is_valid_record,
    load,
    read_history,
    record_path,
    write,
    write_history,
)

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
    "n_eval",
    "num_classes",
    "design",
    "negatives_used",
    "message",
    "auc_init",
    "recall_at_1_init",
    "val_loss_init",
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
    assert set(CONTRACT) <= {f.name for f in dataclasses.fields(RunRecord)}
    write(make_record(), tmp_path)
    df = load(tmp_path)
    assert set(CONTRACT) <= set(df.columns)
    assert len(df) == 1 and df.loc[0, "auc"] == 0.9
    assert pd.isna(df.loc[0, "zeroshot_top1"])
    assert str(df["auc_init"].dtype) == "float64"  # a null float stays a float column


def test_write_is_atomic_and_leaves_no_temporary_files(tmp_path) -> None:
    for i in range(3):
        write(make_record(f"r{i}", seed=i), tmp_path)
    write(make_record("r1", seed=1, auc=0.5), tmp_path)  # rewrite replaces whole
    files = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert files == ["r0.parquet", "r1.parquet", "r2.parquet"]
    df = load(tmp_path).set_index("run_id")
    assert df.loc["r1", "auc"] == 0.5


def test_failed_write_leaves_nothing(tmp_path, monkeypatch) -> None:
    import pyarrow.parquet as pq

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", boom)
    with pytest.raises(OSError):
        write(make_record(), tmp_path)
    assert list((tmp_path / "runs").iterdir()) == []


def test_corrupt_records_are_detected_and_skipped(tmp_path, capsys) -> None:
    write(make_record("good"), tmp_path)
    bad = record_path(tmp_path, "bad")
    bad.write_bytes(b"PAR1 not really")
    assert is_valid_record(record_path(tmp_path, "good"))
    assert not is_valid_record(bad)
    df = load(tmp_path)
    notice = capsys.readouterr().err
    assert notice.startswith(f"notice: skipping unreadable run record {bad}: ")
    assert notice.count("\n") == 1 and "Warning" not in notice
    assert list(df["run_id"]) == ["good"]
    with pytest.raises(NegscaleError):
        load(tmp_path, strict=True)


def test_load_several_studies_and_missing_paths(tmp_path) -> None:
    write(make_record("a"), tmp_path / "s1")
    write(make_record("b"), tmp_path / "s2")
    assert sorted(load([tmp_path / "s1", tmp_path / "s2"])["run_id"]) == ["a", "b"]
    with pytest.raises(NegscaleError):
        load(tmp_path / "nope")


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_records_and_curves_honour_the_umask(tmp_path, umask: int) -> None:
    old = os.umask(umask)
    try:
        paths = [write(make_record(), tmp_path), write_history([], tmp_path, "abc")]
    finally:
        os.umask(old)
    for path in paths:
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_history_round_trips_and_is_not_a_record(tmp_path) -> None:
    rows = [{"step": 5, "loss": 2.5, "lr": 1e-3, "tau": 0.1}, {"step": 10, "loss": 2.0,
            "lr": 5e-4, "tau": 0.1}]  # fmt: skip
    write(make_record("abc"), tmp_path)
    write_history(rows, tmp_path, "abc")
    assert read_history(tmp_path, "abc").to_dict("records") == rows
    assert list(load(tmp_path)["run_id"]) == ["abc"]  # the curve is not read as a record


def test_results_folder_checks(tmp_path) -> None:
    assert check_results_dir(tmp_path / "new" / "study") == tmp_path / "new" / "study"
    (tmp_path / "f").write_text("x")
    for bad in (tmp_path / "f", tmp_path / "f" / "below"):
        with pytest.raises(NegscaleError, match=r"--results: .*f is a file, not a folder"):
            check_results_dir(bad)
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "runs").write_text("x")
    with pytest.raises(NegscaleError, match="runs is a file"):
        check_results_dir(tmp_path / "s")


def test_select_filters_by_status_and_design_prefix(tmp_path) -> None:
    from negscale.results import select

    specs = [("r1", "aaaa11", "ok", 4), ("r2", "aaaa11", "collapsed", 1),
             ("r3", "bbbb22", "ok", 2), ("r4", "aaaa11", "ok", 2)]  # fmt: skip
    for rid, design, status, m in specs:
        write(make_record(rid, design=design, status=status, m=m), tmp_path)
    frame = load(tmp_path)
    assert list(select(frame)["run_id"]) == ["r2", "r4", "r1", "r3"]  # design, then m
    assert list(select(frame, status="ok", design="aaaa")["run_id"]) == ["r4", "r1"]
    assert list(select(frame, status="collapsed,diverged")["run_id"]) == ["r2"]
    # a filter that matches nothing known is a typo: an error naming what is there
    with pytest.raises(
        NegscaleError, match=r"no design starts with 'cc' \(designs here: aaaa11, bbbb22\)"
    ):
        select(frame, design="cc")
    with pytest.raises(
        NegscaleError, match=r"unknown status okay \(known: ok, diverged, collapsed"
    ):
        select(frame, status="okay")
