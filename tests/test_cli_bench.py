"""`negscale bench loss`: rows per implementation, ratios against the peer of the same run."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from negscale.cli import app

runner = CliRunner()


def test_bench_loss_in_batch_compares_against_open_clip() -> None:
    pytest.importorskip("open_clip")
    res = runner.invoke(
        app,
        [
            "bench",
            "loss",
            "--batch",
            "16,32",
            "--dim",
            "8",
            "--repeats",
            "1",
            "--device",
            "cpu",
            "--no-memory",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    rows = doc["rows"]
    assert {(r["batch"], r["impl"]) for r in rows} == {
        (b, i) for b in (16, 32) for i in ("tiled", "open_clip")
    }
    for r in rows:
        assert r["peer"] == "open_clip" and r["m"] == r["batch"] - 1
        peer = next(p for p in rows if p["batch"] == r["batch"] and p["impl"] == "open_clip")
        assert r["time_ratio"] == pytest.approx(r["ms"] / peer["ms"])
        floor = 6 * r["batch"] ** 2 * 8 / (r["sgemm_gflops"] * 1e6)  # 6 B^2 d FLOPs
        assert r["floor_ms"] == pytest.approx(floor) and r["peak_mb"] is None


def test_bench_loss_shared_negatives_table() -> None:
    res = runner.invoke(
        app,
        [
            "bench",
            "loss",
            "--batch",
            "8",
            "--dim",
            "4",
            "-m",
            "64",
            "--repeats",
            "1",
            "--device",
            "cpu",
            "--no-memory",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "tiled" in res.stdout and "ratio to dense" in res.stdout
    assert "×floor" in res.stdout and "GFLOP/s" in res.stdout


@pytest.mark.parametrize("args", [["--batch", "x"], ["--batch", "1"], ["--device", "tpu"]])
def test_bench_loss_bad_input(args: list[str]) -> None:
    res = runner.invoke(app, ["bench", "loss", *args])
    assert res.exit_code == 2 and res.stderr.startswith("error:")
