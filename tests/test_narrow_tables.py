"""Every command's table at 80 columns, piped: no key cell is cut ("…"), no line is longer.

Rendered in a subprocess with COLUMNS=80 and stdout a pipe, as a user sees `| cat`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--set", "train.steps=4", "--set", "data.n=256", "--set", "data.n_eval=128",
        "--set", "train.batch_size=32", "--set", "train.select='last'"]  # fmt: skip


def piped(*args: str, ok: tuple[int, ...] = (0,)) -> str:
    env = {**os.environ, "COLUMNS": "80", "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-m", "negscale", *args], capture_output=True,
                         text=True, env=env, cwd=ROOT)  # fmt: skip
    assert res.returncode in ok, res.stderr[-2000:]
    return res.stdout


def uncut(text: str) -> None:
    assert text.strip()
    assert "…" not in text, text
    assert max(len(line) for line in text.splitlines()) <= 80, text


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("study")
    piped("sweep", "quickstart", "-m", "1,4,31", "--samples", "256,512", "--seeds", "0,1",
          "--results", str(folder), *FAST)  # fmt: skip
    return folder


def test_train_table(tmp_path):
    uncut(piped("train", "quickstart", "-m", "4", "--results", str(tmp_path), *FAST, ok=(0, 1)))


def test_sweep_summary_and_plan(study):
    args = ["sweep", "quickstart", "-m", "1,4,31", "--samples", "256,512", "--seeds", "0,1",
            "--results", str(study), *FAST]  # fmt: skip
    uncut(piped(*args))
    uncut(piped(*args, "--dry-run"))


def test_results_table(study):
    out = piped("results", str(study))
    uncut(out)
    assert "recall_at_1" in out and "seed" in out  # the headers whole


def test_fit_report(study):
    uncut(piped("fit", str(study), "--bootstrap", "30", "-v", "--suggest", "3"))


@pytest.mark.parametrize("what", ["datasets", "encoders", "recipes", "negatives"])
def test_list_tables(what):
    uncut(piped("list", what))
