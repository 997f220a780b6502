"""benchmarks/quickstart_floors.py: the evaluations' arithmetic in the study's floor,
against torch's FLOP counter and the selection trace of a real run."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from negscale.config import load_recipe
from negscale.results import load
from negscale.train import run

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import quickstart_floors as qf


def test_evaluation_flops_match_the_flop_counter_and_the_runs_own_evaluations(
    tmp_path, tiny_overrides
):
    sets = [*tiny_overrides, "data.n_eval=96", "train.steps=37", "train.select=best"]
    recipe = load_recipe("quickstart", sets, m=8)
    run(recipe, tmp_path, device="cpu", progress=False)
    records = load(tmp_path)
    row = records.iloc[0]

    # one evaluation: both towers over n_eval pairs, then every pair scored against every other
    from negscale import data as datasets
    from negscale.encoders import build

    data = datasets.build(recipe.data, recipe.model)
    model = build(recipe.model, data)
    x, y = data.eval.fetch(torch.arange(96))
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        img, txt = model(x, y)
        img @ txt.T
    one = counter.get_total_flops() / 1e9
    evals = qf.evaluations(37, best=True)
    assert abs(qf.evaluation_gflop(records) - evals * one) < 1e-6 * evals * one

    # the run's own count: its selection trace (one pass per validation) and the final one
    from negscale.train import Trainer, resolve_runtime

    trainer = Trainer(recipe, resolve_runtime(recipe, "cpu"), data=data, progress=False)
    trainer.fit(None)
    assert evals == len(trainer.selection.trace) + 1
    assert qf.evaluations(37, best=False) == 1
    assert int(row["steps"]) == 37
