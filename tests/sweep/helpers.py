"""Shared helpers of the sweep tests: expected plans computed independently of
:mod:`negscale.sweep` (each point loaded on its own with ``load_recipe``), and
outcomes read back from the files on disk, never from what the sweep says it did."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
from typer.testing import CliRunner

from negscale.config import load_recipe

runner = CliRunner()
# Smaller than conftest's TINY (later --set wins): well under a second per run.
FAST = ["data.n=256", "data.n_eval=128", "train.steps=12", "train.batch_size=32"]


def set_args(overrides: list[str]) -> list[str]:
    return [arg for o in overrides for arg in ("--set", o)]


def expected_ids(overrides: list[str], ms: list[int], ns: list[int], seeds: list[int]) -> set:
    """The plan's run_ids, each point loaded on its own (the reference, not the sweep code)."""
    return {
        load_recipe("quickstart", overrides, m=m, n=n, seed=s).run_id()
        for m in ms
        for n in ns
        for s in seeds
    }


def records_on_disk(results: Path) -> dict[str, dict]:
    """run_id -> record row, read with pyarrow; asserts each file holds its own run."""
    rows = {}
    for f in sorted((results / "runs").glob("*.parquet")):
        if f.name.endswith(".history.parquet"):  # a run's training curve, not a record
            continue
        table = pq.read_table(f).to_pylist()
        assert len(table) == 1 and table[0]["run_id"] == f.stem
        rows[f.stem] = table[0]
    return rows


def lock_owner(path: Path) -> int | None:
    try:
        return json.loads(path.read_text())["pid"]
    except (OSError, ValueError, KeyError):
        return None  # gone, or being written


def leftovers(results: Path) -> list[str]:
    """Anything in the study folder that is not a record or a finished checkpoint."""
    bad = [p.name for p in (results / "runs").iterdir() if p.suffix != ".parquet"]
    ckpts = results / "checkpoints"
    if ckpts.is_dir():
        bad += [p.name for p in ckpts.iterdir() if p.suffix != ".pt"]
    return bad


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "negscale", *args]


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "120"}


def run_concurrently(cmds: list[list[str]]) -> list[dict]:
    procs = [
        subprocess.Popen(c, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for c in cmds
    ]
    outs = [p.communicate(timeout=240) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
    return [json.loads(out) for out, _ in outs]
