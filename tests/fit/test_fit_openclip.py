"""`negscale fit LOGS --from open_clip`: open_clip's own log folders, fitted directly.

The fixtures are written the way open_clip's training script writes them (see
open_clip_train/main.py: every argument of the run as ``name: value`` lines,
sorted, in ``<logs>/<name>/params.txt``; open_clip_train/train.py: one
``json.dumps(metrics)`` line per evaluation in ``<logs>/<name>/checkpoints/results.jsonl``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from negscale.cli import app
from negscale.errors import NegscaleError
from negscale.fit.openclip import read_open_clip
from negscale.fit.simulate import hill

runner = CliRunner()


def write_run(logs: Path, name: str, *, batch: int, world: int, n: int, seed: int,
              top1: list[float], accum: int = 1, model: str = "ViT-B-32") -> Path:  # fmt: skip
    """One run folder as open_clip leaves it."""
    run = logs / name
    (run / "checkpoints").mkdir(parents=True)
    args = {"accum_freq": accum, "batch_size": batch, "epochs": len(top1), "gather_with_grad": True,
            "local_loss": True, "logs": str(logs), "lr": 0.0005, "model": model, "name": name,
            "precision": "amp", "pretrained": "", "save_logs": True, "seed": seed,
            "train_data": "/data/{00000..00099}.tar", "train_num_samples": n, "wd": 0.2,
            "warmup": 500, "world_size": world}  # fmt: skip
    with open(run / "params.txt", "w") as f:
        for key in sorted(args):
            f.write(f"{key}: {args[key]}\n")
    with open(run / "checkpoints" / "results.jsonl", "a+") as f:
        for epoch, acc in enumerate(top1, start=1):
            metrics = {"imagenet-zeroshot-val-top1": acc, "imagenet-zeroshot-val-top5": acc + 0.2,
                       "image_to_text_R@1": acc / 2, "text_to_image_R@1": acc / 3,
                       "clip_val_loss": 3.0 - acc, "epoch": epoch, "num_samples": 5000}  # fmt: skip
            f.write(json.dumps(metrics))
            f.write("\n")
    return run


def study(logs: Path) -> dict[tuple[int, int], float]:
    """Batch sizes 32 .. 4096 on 8 ranks at two n, 2 seeds: m = 8·B − 1."""
    truth = {}
    rng = np.random.default_rng(0)
    for n in (1_000_000, 4_000_000):
        for b in (32, 64, 128, 256, 512, 1024, 2048, 4096):
            m = 8 * b - 1
            acc = 0.3 + 0.3 * float(hill(np.array([m]), 2000.0 * n / 1e6, 2.0)[0])
            for seed in (0, 1):
                last = acc + 0.002 * rng.standard_normal()
                write_run(logs, f"n{n}-b{b}-s{seed}", batch=b, world=8, n=n, seed=seed,
                          top1=[last - 0.05, last])  # fmt: skip
                truth[(m, n)] = acc
    return truth


def test_runs_become_rows_with_m_from_the_global_batch(tmp_path):
    write_run(tmp_path, "a", batch=256, world=8, accum=2, n=10_000, seed=3, top1=[0.1, 0.2])
    df = read_open_clip([tmp_path])
    (row,) = df.to_dict("records")
    assert (row["m"], row["n"], row["seed"]) == (256 * 8 * 2 - 1, 10_000, 3)
    assert row["zeroshot_top1"] == 0.2 and row["recall_at_1"] == pytest.approx((0.1 + 0.2 / 3) / 2)
    assert row["val_loss"] == pytest.approx(2.8)
    first = read_open_clip([tmp_path / "a"], epoch=1).iloc[0]
    assert first["zeroshot_top1"] == 0.1
    assert "global batch" in df.attrs["negscale_notes"][0]
    with pytest.raises(NegscaleError, match="no evaluation at epoch 7"):
        read_open_clip([tmp_path], epoch=7)


def test_a_run_without_the_sample_count_or_logs_is_named(tmp_path):
    run = write_run(tmp_path, "x", batch=8, world=1, n=100, seed=0, top1=[0.1])
    text = (
        (run / "params.txt")
        .read_text()
        .replace("train_num_samples: 100", "train_num_samples: None")
    )
    (run / "params.txt").write_text(text)
    with pytest.raises(NegscaleError, match="no train_num_samples"):
        read_open_clip([tmp_path])
    with pytest.raises(NegscaleError, match="no open_clip run here"):
        read_open_clip([tmp_path / "nothing"])


def test_fit_from_open_clip_logs(tmp_path):
    study(tmp_path)
    res = runner.invoke(app, ["fit", str(tmp_path), "--from", "open_clip", "--bootstrap", "100",
                              "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["metric"] == "zeroshot_top1" and doc["runs"] == 32
    assert [g["n"] for g in doc["groups"]] == [1_000_000, 4_000_000]
    assert any("global batch" in w for w in doc["warnings"])
    text = runner.invoke(app, ["fit", str(tmp_path), "--from", "open_clip", "--metric",
                               "recall_at_1", "--bootstrap", "50"]).stdout  # fmt: skip
    assert text.startswith("negscale fit · recall_at_1")
