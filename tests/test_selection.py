"""train.select = "best": the reported weights are the best validation AUC's (brute force)."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch
from data_fixtures import caption_rows
from sklearn.metrics import roc_auc_score

from negscale import data as datasets
from negscale.config import load_recipe, validate
from negscale.data.base import PairedData, Split
from negscale.errors import NegscaleError
from negscale.results import load
from negscale.selection import Selection, is_due, select_every, validation_pairs
from negscale.train import Runtime, Trainer, checkpoint_path, run

CPU = Runtime(torch.device("cpu"), "fp32", False)


def _sklearn_auc(img: torch.Tensor, txt: torch.Tensor) -> float:
    """Instance-level AUC, both directions: per query, sklearn's ROC AUC of its own item."""
    out = []
    for q, k in ((img, txt), (txt, img)):
        scores = (q.double() @ k.double().T).numpy()
        eye = np.eye(len(scores), dtype=int)
        out.append(np.mean([roc_auc_score(eye[i], scores[i]) for i in range(len(scores))]))
    return float(np.mean(out))


def _recipe(tiny_overrides, *extra: str):
    sets = [*tiny_overrides, "data.n_eval=64", "train.steps=30", *extra]
    return load_recipe("quickstart", sets, m=8)


def test_the_reported_weights_are_the_best_validation_auc_by_brute_force(tiny_overrides) -> None:
    # the reference: the same training with select = "last", stepped by hand, every
    # candidate's weights kept and scored with sklearn on the validation pairs
    plain = Trainer(_recipe(tiny_overrides, "train.select=last"), CPU, progress=False)
    val = plain.data.val
    candidates = {}
    while plain.step < plain.recipe.train.steps:
        plain.train_step()
        if is_due(plain.step, plain.recipe.train.steps):
            img, txt = plain.evaluator.embed(val)
            weights = copy.deepcopy(plain.model.state_dict())
            candidates[plain.step] = (_sklearn_auc(img, txt), weights)
    best = max(candidates, key=lambda s: (candidates[s][0], -s))  # ties: the earlier step

    chosen = Trainer(_recipe(tiny_overrides, "train.select=best"), CPU, progress=False)
    chosen.fit()
    assert sorted(candidates) == [s for s, _ in chosen.selection.trace]
    assert chosen.selection.best_step == best
    assert chosen.selection.best_auc == pytest.approx(candidates[best][0], abs=1e-9)
    for key, value in chosen.model.state_dict().items():
        torch.testing.assert_close(value, candidates[best][1][key], rtol=0, atol=0)
    assert best < plain.recipe.train.steps  # this run peaks before its end: the last weights lose


def test_selection_survives_a_resume_and_is_recorded(tmp_path, tiny_overrides) -> None:
    recipe = _recipe(tiny_overrides, "train.select=best", "train.checkpoint_every=10")
    whole = run(recipe, tmp_path / "whole", progress=False)
    # stop after 10 steps (the checkpoint), then finish the run from it
    part = Trainer(recipe, CPU, progress=False)
    for _ in range(10):
        part.train_step()
        if is_due(part.step, recipe.train.steps):
            part.selection.offer(part.step, part.evaluator.validation_auc(), part.model)
    part.save(checkpoint_path(tmp_path / "resumed", recipe.run_id()))
    resumed = run(recipe, tmp_path / "resumed", progress=False, notice=lambda _: None)
    assert resumed.selected_step == whole.selected_step
    assert resumed.select_auc == whole.select_auc
    assert resumed.auc == whole.auc
    table = load(tmp_path / "whole")
    assert int(table["selected_step"].iloc[0]) == whole.selected_step
    assert 1 <= whole.selected_step <= recipe.train.steps


def test_select_last_is_the_default_and_keeps_run_ids(tiny_overrides) -> None:
    last = _recipe(tiny_overrides, "train.select=last")
    raw = last.model_dump(mode="json")
    del raw["train"]["select"]  # a recipe written before the option existed
    assert validate(raw).train.select == "last"
    assert validate(raw).run_id() == last.run_id()
    assert _recipe(tiny_overrides, "train.select=best").run_id() != last.run_id()


def test_last_runs_record_no_selection(tmp_path, tiny_overrides) -> None:
    recipe = _recipe(tiny_overrides, "train.steps=5", "train.select=last")
    record = run(recipe, tmp_path, progress=False)
    assert record.selected_step is None and record.select_auc is None


def test_synthetic_validation_pairs_are_their_own_draws() -> None:
    small = load_recipe("quickstart", ["data.n=512", "data.n_eval=64"])
    large = load_recipe("quickstart", ["data.n=1024", "data.n_eval=64"])
    a = datasets.build(small.data, small.model)
    b = datasets.build(large.data, large.model)
    assert len(a.val) == 64
    torch.testing.assert_close(a.val.x, b.val.x)  # the same pairs at every n
    for other in (b.train.x, a.eval.x):  # no row of the train or eval pairs
        assert not (torch.cdist(a.val.x, other) < 1e-6).any()


def _csv_pairs(root) -> list[str]:
    """A 36-row caption table (tests/data_fixtures.py), as recipe overrides of a tiny run."""
    pd.DataFrame(caption_rows(root, 36)).to_csv(root / "pairs.csv", index=False)
    return [
        "data.name='pairs'", f"data.path='{root / 'pairs.csv'}'", "data.n_eval=8",
        "data.image_size=16", "data.workers=0", "train.batch_size=8", "train.steps=4",
        "model.hidden=16", "model.embed_dim=8", "eval.prototypes=16",
    ]  # fmt: skip


def test_a_caption_table_validates_on_the_training_rows_after_the_first_n(tmp_path) -> None:
    sets = _csv_pairs(tmp_path)
    small = load_recipe("quickstart", [*sets, "data.n=16"])
    data = datasets.build(small.data, small.model)
    val = validation_pairs(data, 16, 8)
    seen = set(data.train.rows.tolist()) | set(data.eval.rows.tolist())
    assert len(val) == 8 and not set(val.rows.tolist()) & seen
    assert validation_pairs(data, 16, 8) is val  # cut once: a sweep's runs share it
    # the rows a larger n would train on next (a smaller n is a prefix of a larger one)
    larger = load_recipe("quickstart", [*sets, "data.n=24"])
    bigger = datasets.build(larger.data, larger.model)
    assert val.rows.tolist() == bigger.train.rows[16:24].tolist()
    # 36 rows - 8 held out = 28 training rows: n = 24 leaves 4, fewer than 8
    with pytest.raises(NegscaleError, match=r"lower data\.n or data\.n_eval"):
        validation_pairs(bigger, 24, 8)
    record = run(small, tmp_path / "results", progress=False)  # quickstart's select = "best"
    assert small.train.select == "best" and 1 <= record.selected_step <= 4


def test_a_dataset_without_validation_pairs_is_a_clear_error() -> None:
    x = torch.zeros(10, 2)
    bare = PairedData(Split(x, x), Split(x, x), None, None)
    with pytest.raises(NegscaleError, match=r"train\.select = .last."):
        validation_pairs(bare, n=10, size=4)


def test_about_fifty_evaluations_a_run_and_always_the_last_step() -> None:
    for steps in (1, 7, 96, 1536, 4099):
        due = [s for s in range(1, steps + 1) if is_due(s, steps)]
        assert due[-1] == steps
        assert len(due) <= 51 and (len(due) >= 40 or len(due) == steps)
    assert select_every(96) == 2


def test_ties_keep_the_earlier_step() -> None:
    model = torch.nn.Linear(1, 1)
    pick = Selection()
    pick.offer(5, 0.9, model)
    with torch.no_grad():
        model.weight.fill_(3.0)
    pick.offer(10, 0.9, model)
    assert pick.best_step == 5 and float(pick.weights["weight"]) != 3.0


def test_train_says_which_step_it_reports(tmp_path, tiny_overrides) -> None:
    from typer.testing import CliRunner

    from negscale.cli import app

    overrides = [*tiny_overrides, "train.steps=6", "train.select=best"]
    sets = [a for o in overrides for a in ("--set", o)]
    res = CliRunner().invoke(app, ["train", "quickstart", "--results", str(tmp_path), *sets])
    assert res.exit_code == 0, res.output
    record = load(tmp_path).iloc[0]
    assert f"the weights of step {int(record.selected_step)}/6" in res.output


def test_a_run_that_stopped_before_its_first_evaluation_records_no_selection() -> None:
    from negscale.run_record import selected as _selected

    assert _selected(None) == _selected(Selection()) == {"selected_step": None, "select_auc": None}
    pick = Selection()
    pick.offer(4, 0.75, torch.nn.Linear(1, 1))
    assert _selected(pick) == {"selected_step": 4, "select_auc": 0.75}
