"""--report-to tensorboard: the scalars read back with TensorBoard's own reader."""

from __future__ import annotations

import pytest

from negscale.config import load_recipe
from negscale.errors import NegscaleError
from negscale.report_to import check_report_to, log_dir
from negscale.results import read_history
from negscale.train import run

pytest.importorskip("tensorboard")


def _scalars(path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(path))
    acc.Reload()
    return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}


def test_tensorboard_scalars_match_the_curve_and_the_record(tmp_path, tiny_overrides) -> None:
    r = load_recipe("quickstart", [*tiny_overrides, "train.steps=10"])
    rec = run(r, tmp_path, progress=False, report_to="tensorboard")
    got = _scalars(log_dir(tmp_path, rec.run_id))
    curve = read_history(tmp_path, rec.run_id)
    assert [s for s, _ in got["train/loss"]] == list(curve["step"])
    assert [v for _, v in got["train/loss"]] == pytest.approx(list(curve["loss"]), rel=1e-6)
    assert [v for _, v in got["train/lr"]] == pytest.approx(list(curve["lr"]), rel=1e-6)
    assert got["eval/auc"] == [(0, pytest.approx(rec.auc_init)), (10, pytest.approx(rec.auc))]


def test_unknown_target_is_a_one_line_error() -> None:
    with pytest.raises(NegscaleError, match="--report-to: expected tensorboard, got 'wandb'"):
        check_report_to("wandb")
    check_report_to(None)
