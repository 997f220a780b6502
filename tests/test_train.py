"""The trainer end to end on the synthetic task: determinism, m matters, divergence, resume."""

from __future__ import annotations

import itertools

import pytest
import torch

from negscale.config import load_recipe
from negscale.results import load, read_history
from negscale.train import (
    Runtime,
    Trainer,
    batch_indices,
    checkpoint_path,
    resolve_runtime,
    run,
    warmup_cosine,
)

OUTCOMES = [
    "recall_at_1",
    "recall_at_5",
    "recall_at_10",
    "auc",
    "mean_rank",
    "zeroshot_top1",
    "val_loss",
    "train_loss",
]


def _reevaluate(recipe, results) -> dict:
    """Held-out metrics of the model in a run's final checkpoint, on a fresh trainer."""
    trainer = Trainer(recipe, Runtime(torch.device("cpu"), "fp32", False), progress=False)
    path = checkpoint_path(results, recipe.run_id())
    trainer.load_state_dict(torch.load(path, weights_only=False))
    return trainer.evaluate()


def test_same_seed_gives_identical_outcomes(tmp_path, tiny_overrides) -> None:
    r = load_recipe("quickstart", tiny_overrides, m=8)
    a = run(r, tmp_path / "a", progress=False)
    b = run(r, tmp_path / "b", progress=False)
    assert [getattr(a, k) for k in OUTCOMES] == [getattr(b, k) for k in OUTCOMES]
    c = run(load_recipe("quickstart", tiny_overrides, m=8, seed=1), tmp_path / "c", progress=False)
    assert c.auc != a.auc


def test_batch_negatives_beat_one_negative_on_held_out_auc(tmp_path) -> None:
    small = [
        "data.n=1024",
        "data.n_eval=512",
        "train.steps=120",
        "train.batch_size=128",
        "model.hidden=64",
    ]
    one = run(load_recipe("quickstart", small, m=1), tmp_path, progress=False)
    full = run(load_recipe("quickstart", small), tmp_path, progress=False)
    assert (one.m, full.m) == (1, 127)
    assert full.auc > one.auc + 0.003
    assert full.recall_at_1 > one.recall_at_1 + 0.03
    assert one.negatives_used == 1 and full.negatives_used == 127


def test_record_is_written_and_complete(tmp_path, tiny_overrides) -> None:
    r = load_recipe("quickstart", tiny_overrides)
    rec = run(r, tmp_path, progress=False)
    df = load(tmp_path)
    assert list(df["run_id"]) == [r.run_id()]
    row = df.iloc[0]
    assert row["status"] == "ok" and row["m"] == 63 and row["n"] == 512
    assert row["setting"] == "self-supervised" and row["negatives"] == "batch"
    assert row["epochs"] == pytest.approx(40 * 64 / 512)
    again = _reevaluate(r, tmp_path)  # the saved model, evaluated on its own
    assert (row["auc"], row["recall_at_1"]) == (again["auc"], again["recall_at_1"])
    assert row["recall_at_1"] > 10 / 256  # far above chance (1/256)
    assert row["samples_per_s"] == pytest.approx(40 * 64 / row["train_s"])
    assert row["peak_mem_mb"] > 0 and row["loss_gflops"] > 0
    assert rec.recipe and '"steps":40' in rec.recipe.replace(" ", "")


def test_nan_loss_is_recorded_as_diverged(tmp_path, tiny_overrides) -> None:
    r = load_recipe("quickstart", [*tiny_overrides, "train.lr=1e30", "train.grad_clip=0"])
    rec = run(r, tmp_path, progress=False)
    assert rec.status == "diverged" and "loss became" in rec.message
    assert rec.auc is None
    assert load(tmp_path).loc[0, "status"] == "diverged"
    curve = read_history(tmp_path, rec.run_id)  # the curve up to the divergence, for diagnosis
    step = int(rec.message.rsplit(" ", 1)[-1])
    assert curve["step"].max() <= step < r.train.steps


def test_bf16_autocast_runs_on_cpu(tmp_path, tiny_overrides) -> None:
    r = load_recipe("quickstart", [*tiny_overrides, "train.precision='bf16'", "train.steps=5"])
    rec = run(r, tmp_path, progress=False)
    assert rec.precision == "bf16" and rec.status == "ok"


def test_runtime_resolution_and_schedule() -> None:
    r = load_recipe("quickstart")
    rt = resolve_runtime(r, "cpu")
    assert (rt.device.type, rt.precision, rt.compile) == ("cpu", "fp32", False)
    lrs = [warmup_cosine(s, 100, 0.1) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[-1] < 0.01 and all(a >= b for a, b in itertools.pairwise(lrs[10:]))


def test_batches_cover_each_epoch_without_repeats() -> None:
    seen = torch.cat([batch_indices(40, 8, 0, s) for s in range(5)])
    assert sorted(seen.tolist()) == list(range(40))
    assert not torch.equal(batch_indices(40, 8, 0, 5), batch_indices(40, 8, 0, 0))


def test_batch_order_is_each_epochs_fresh_seeded_permutation_whatever_the_cache() -> None:
    """The epoch order is cached; a step's batch must equal a fresh draw's slice,
    in any order of asking (a resumed run asks for a later epoch first)."""
    from negscale.feed import BATCH_STREAM
    from negscale.negatives.base import step_generator

    n, b, seed = 50, 8, 3
    steps = [13, 0, 7, 6, 12, 1, 30, 5]  # epochs 2, 0, 1, 1, 2, 0, 5, 0
    for step in steps:
        epoch, pos = divmod(step, n // b)
        fresh = torch.randperm(n, generator=step_generator(seed, epoch, BATCH_STREAM))
        got = batch_indices(n, b, seed, step)
        assert torch.equal(got, fresh[pos * b : (pos + 1) * b])
        got[:] = -1  # a caller that writes into its batch must not change the cache
    assert torch.equal(batch_indices(n, b, seed, 13), batch_indices(n, b, seed, 13))
    assert (batch_indices(n, b, seed, 13) >= 0).all()


def test_images_and_captions_train_with_tiny_cnn_and_transformer(tmp_path, tiny_overrides) -> None:
    r = load_recipe(
        "quickstart",
        [*tiny_overrides, "data.flavour='images'", "train.steps=30", "data.image_size=8"],
    )
    rec = run(r, tmp_path, progress=False)
    assert rec.status == "ok"  # it learned: AUC well above the same model at step 0
    assert rec.auc == _reevaluate(r, tmp_path)["auc"]
    assert '"flavour":"images"' in rec.recipe.replace(" ", "")


def test_checkpoints_every_k_steps_and_at_the_end(tmp_path, tiny_overrides, monkeypatch) -> None:
    saved: list[int] = []
    original = Trainer.save

    def spy(self, path):
        saved.append(self.step)
        original(self, path)

    monkeypatch.setattr(Trainer, "save", spy)
    r = load_recipe("quickstart", [*tiny_overrides, "train.steps=10", "train.checkpoint_every=4"])
    run(r, tmp_path, progress=False)
    assert saved == [4, 8, 10]
    state = torch.load(tmp_path / "checkpoints" / f"{r.run_id()}.pt", weights_only=False)
    assert state["step"] == 10 and state["run_id"] == r.run_id()


def test_windowed_loss_sync_gives_the_same_run_and_the_same_divergence_step(
    tiny_overrides,
) -> None:
    """GPUs sync the loss every few steps; values and the diverged step must not change."""
    from negscale.train import Diverged

    r = load_recipe("quickstart", [*tiny_overrides, "train.steps=10"], m=5)
    every, windowed = (
        Trainer(r, Runtime(torch.device("cpu"), "fp32", False, loss_sync=k), progress=False)
        for k in (1, 4)
    )
    every.fit()
    windowed.fit()
    assert windowed.log.losses == every.log.losses and len(every.log.losses) == 10

    bad = load_recipe("quickstart", [*tiny_overrides, "train.lr=1e30", "train.grad_clip=0"])
    messages = []
    for k in (1, 4):
        trainer = Trainer(
            bad, Runtime(torch.device("cpu"), "fp32", False, loss_sync=k), progress=False
        )
        with pytest.raises(Diverged) as info:
            trainer.fit()
        messages.append(str(info.value))
    assert messages[0] == messages[1] and "loss became" in messages[0]


def _cpu() -> Runtime:
    return Runtime(torch.device("cpu"), "fp32", False)


def test_a_resumed_run_says_its_step_and_keeps_its_step_0_evaluation(
    tmp_path, tiny_overrides
) -> None:
    r = load_recipe("quickstart", [*tiny_overrides, "train.steps=10"], m=5)
    straight = run(r, tmp_path / "straight", progress=False)
    half = Trainer(r, _cpu(), progress=False)
    half.init_metrics = half.evaluate()
    for _ in range(4):
        half.train_step()
    half.save(checkpoint_path(tmp_path / "resumed", r.run_id()))
    said: list[str] = []
    resumed = run(r, tmp_path / "resumed", progress=False, notice=said.append)
    assert said == [f"resuming run {r.run_id()} from its checkpoint at step 4/10"]
    assert resumed.auc_init == straight.auc_init  # from the checkpoint, not re-evaluated
    assert [getattr(resumed, k) for k in OUTCOMES] == [getattr(straight, k) for k in OUTCOMES]
    one, two = (read_history(tmp_path / d, r.run_id()) for d in ("straight", "resumed"))
    assert one.equals(two)  # the curve continues across the resume


def test_a_checkpoint_that_fails_halfway_through_loading_retrains_from_step_0(
    tmp_path, tiny_overrides
) -> None:
    r = load_recipe("quickstart", [*tiny_overrides, "train.steps=10"], m=5)
    reference = run(r, tmp_path / "ref", progress=False)  # never saw a checkpoint
    half = Trainer(r, _cpu(), progress=False)
    for _ in range(4):
        half.train_step()
    state = half.state_dict()
    names = list(state["model"])
    state["model"][names[-1]] = torch.zeros(3)  # the last tensor has the wrong shape
    ckpt = checkpoint_path(tmp_path / "bad", r.run_id())
    ckpt.parent.mkdir(parents=True)
    torch.save(state, ckpt)
    # loading copies every other tensor before it fails: a half-loaded model
    probe = Trainer(r, _cpu(), progress=False)
    with pytest.raises(RuntimeError):
        probe.load_state_dict(state)
    assert torch.equal(probe.model.state_dict()[names[0]], state["model"][names[0]])
    said: list[str] = []
    rec = run(r, tmp_path / "bad", progress=False, notice=said.append)
    assert len(said) == 1 and "ignoring unreadable checkpoint" in said[0]
    assert "training from step 0" in said[0] and "\n" not in said[0]
    assert [getattr(rec, k) for k in OUTCOMES] == [getattr(reference, k) for k in OUTCOMES]


def test_each_run_keeps_its_training_curve(tmp_path, tiny_overrides, monkeypatch) -> None:
    lrs: list[float] = []
    original = Trainer.train_step

    def spy(self):  # the learning rate the optimiser actually uses at each step
        lrs.append(self.optimizer.param_groups[0]["lr"])
        return original(self)

    monkeypatch.setattr(Trainer, "train_step", spy)
    r = load_recipe("quickstart", [*tiny_overrides, "train.steps=202", "train.batch_size=16"])
    rec = run(r, tmp_path, progress=False)
    curve = read_history(tmp_path, rec.run_id)
    every = 3  # ceil(202 / 100)
    want = [*range(every, 202, every), 202]
    assert list(curve["step"]) == want
    assert curve["lr"].tolist() == pytest.approx([lrs[s - 1] for s in want], rel=1e-12)
    assert curve["tau"].tolist() == pytest.approx([r.model.tau] * len(want))
    state = torch.load(checkpoint_path(tmp_path, rec.run_id), weights_only=False)
    losses = state["losses"]
    assert curve["loss"].iloc[0] == pytest.approx(sum(losses[:every]) / every)
    assert curve["loss"].iloc[-1] == pytest.approx(losses[201])  # the window 202..202
