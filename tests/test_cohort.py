"""Runs stacked by seed (negscale.cohort) against the one-run trainer they replace.

The reference is the trainer itself: the same recipes trained one at a time
by ``negscale.train.run`` must give the same records (to float rounding: a
batched matmul sums in another order), checkpoints that hold one run each,
and the same resume and divergence behaviour.
"""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import torch
from torch.func import functional_call, vmap

from negscale.cohort import cohorts, stackable
from negscale.cohort.loss import stacked_table_loss, table_loss
from negscale.cohort.run import run_together
from negscale.config import load_recipe
from negscale.losses import in_batch_loss, subsample_columns, subsample_loss
from negscale.sweep.execute import execute
from negscale.sweep.plan import GridSpec, make_plan
from negscale.train import Trainer, checkpoint_path, resolve_runtime, run

SMALL = ["data.n_eval=256", "train.steps=24", "model.hidden=32", "train.batch_size=64"]
CLOSE = ["auc", "recall_at_1", "recall_at_5", "mean_rank", "zeroshot_top1", "val_loss",
         "train_loss", "select_auc", "auc_init", "excess_auc"]  # fmt: skip
EXACT = ["run_id", "status", "selected_step", "m", "n", "seed", "steps", "negatives_used",
         "encoder_gflops", "loss_gflops"]  # fmt: skip


def _recipes(m: int, seeds=(0, 1, 2), extra=()) -> list:
    return [load_recipe("quickstart", [*SMALL, *extra, f"train.seed={s}"], m=m, n=512)
            for s in seeds]  # fmt: skip


def _same_records(got, want) -> None:
    for a, b in zip(got, want, strict=True):
        for key in EXACT:
            assert getattr(a, key) == getattr(b, key), key
        for key in CLOSE:
            x, y = getattr(a, key), getattr(b, key)
            assert (x is None) == (y is None), key
            if x is not None:
                assert x == pytest.approx(y, abs=2e-6), key


@pytest.mark.parametrize("way", ["autograd", "fused"])
@pytest.mark.parametrize("form", ["paper", "infonce"])
@pytest.mark.parametrize("m", [1, 5, 15, "batch"])
def test_stacked_loss_equals_each_runs_loss_and_gradient(way: str, form: str, m) -> None:
    """Both stacked losses (autograd's, and the fused one a fixed temperature takes)
    against each run's own loss: a random m-subset, m = B-1 as a subset in random
    order, and the batch source's columns in order."""
    runs, b, d = 3, 16, 8
    loss_fn = stacked_table_loss if way == "autograd" else table_loss
    g = torch.Generator().manual_seed(0 if m == "batch" else m)
    img = torch.nn.functional.normalize(torch.randn(runs, b, d, generator=g), dim=-1)
    txt = torch.nn.functional.normalize(torch.randn(runs, b, d, generator=g), dim=-1)
    img.requires_grad_()
    txt.requires_grad_()
    tau = torch.tensor([0.1, 0.2, 0.5])
    orders = [torch.randperm(b, generator=g) for _ in range(runs)]
    if m == "batch":
        cols = drop = [torch.arange(b)] * runs
    else:
        cols, drop = zip(*(subsample_columns(o, m) for o in orders), strict=True)
    got = loss_fn(img, txt, torch.stack(cols), torch.stack(drop), tau=tau, form=form)
    got.sum().backward()
    g_img, g_txt = img.grad.clone(), txt.grad.clone()
    for r in range(runs):
        i, t = img[r].detach().requires_grad_(), txt[r].detach().requires_grad_()
        if m in (b - 1, "batch"):  # the batch source's loss: every other item
            want = in_batch_loss(i, t, tau=tau[r], form=form, symmetric=True)
        else:
            want = subsample_loss(i, t, orders[r], m, tau=tau[r], form=form)
        want.backward()
        assert float(got[r].detach()) == pytest.approx(float(want.detach()), abs=1e-6)
        assert torch.allclose(g_img[r], i.grad, atol=1e-6)
        assert torch.allclose(g_txt[r], t.grad, atol=1e-6)


def test_a_learnable_temperature_takes_autograd_and_gets_its_gradient() -> None:
    """The fused loss treats tau as fixed; a learnable one must reach autograd's loss."""
    b, d = 16, 8
    g = torch.Generator().manual_seed(3)
    img = torch.nn.functional.normalize(torch.randn(2, b, d, generator=g), dim=-1)
    txt = torch.nn.functional.normalize(torch.randn(2, b, d, generator=g), dim=-1)
    cols, drop = zip(*(subsample_columns(torch.randperm(b, generator=g), 4) for _ in "ab"),
                     strict=True)  # fmt: skip
    grads = []
    for fn in (stacked_table_loss, table_loss):
        tau = torch.tensor([0.1, 0.3], requires_grad=True)
        fn(img, txt, torch.stack(cols), torch.stack(drop), tau=tau, form="paper").sum().backward()
        grads.append(tau.grad)
    assert grads[1] is not None and torch.allclose(grads[0], grads[1])
    assert bool((grads[1] != 0).all())


@pytest.mark.parametrize("layers", [1, 2])
def test_the_written_out_mlp_equals_the_vmapped_module(layers: int) -> None:
    """Embeddings and gradients of the batched-op MLP against vmap(functional_call)."""
    from negscale.cohort.mlp import encode, writes_out
    from negscale.encoders.dual import DualEncoder
    from negscale.encoders.tiny import CNNTower, MLPTower

    torch.manual_seed(layers)
    models = [DualEncoder(MLPTower(12, 16, layers), MLPTower(10, 16, layers), 8, 0.2, False)
              for _ in range(3)]  # fmt: skip
    assert writes_out(models[0])
    assert not writes_out(DualEncoder(CNNTower(1, 16, 2), MLPTower(10, 16, 1), 8, 0.2, False))
    base = copy.deepcopy(models[0]).to("meta")
    x, y = torch.randn(3, 5, 12), torch.randn(3, 5, 10)
    results = []
    for way in ("vmap", "written"):
        params = {k: torch.stack([dict(m.named_parameters())[k].detach() for m in models])
                  .requires_grad_() for k, _ in models[0].named_parameters()}  # fmt: skip
        buffers = {k: torch.stack([dict(m.named_buffers())[k] for m in models])
                   for k, _ in models[0].named_buffers()}  # fmt: skip
        if way == "vmap":
            one = lambda p, b, x, y: functional_call(base, (p, b), (x, y))  # noqa: E731
            img, txt = vmap(one)(params, buffers, x, y)
        else:
            img, txt = encode(base, params, x, y)
        (img[..., 0] * txt[..., 1]).sum().backward()
        results.append((img, txt, {k: p.grad for k, p in params.items()}))
    (i0, t0, g0), (i1, t1, g1) = results
    assert torch.allclose(i0, i1, atol=1e-6) and torch.allclose(t0, t1, atol=1e-6)
    assert g0.keys() == g1.keys()
    for k in g0:
        assert torch.allclose(g0[k], g1[k], atol=1e-6), k


@pytest.mark.parametrize("form", ["paper", "infonce"])
def test_runs_of_other_m_share_a_padded_call_and_keep_their_own_loss(form: str) -> None:
    """Narrow tables padded into one call: each run's loss and gradient are still its own
    (the padding is never scored); without padding, one call per width."""
    from negscale.cohort.loop import _loss, _segments
    from negscale.negatives.base import BatchTable

    ms, b, d = [1, 1, 5, 15, 15, 1], 16, 8
    g = torch.Generator().manual_seed(7)
    img = torch.nn.functional.normalize(torch.randn(len(ms), b, d, generator=g), dim=-1)
    txt = torch.nn.functional.normalize(torch.randn(len(ms), b, d, generator=g), dim=-1)
    img.requires_grad_()
    txt.requires_grad_()
    orders = [torch.randperm(b, generator=g) for _ in ms]
    tables = [
        BatchTable(*subsample_columns(o, m), float(m), 0) for o, m in zip(orders, ms, strict=True)
    ]
    assert _segments(tables, pad=False) == [(0, 2), (2, 3), (3, 5), (5, 6)]
    assert _segments(tables) == [(0, 6)]  # widths 2 ... 16: one call is cheaper
    tau = torch.tensor([0.1, 0.2, 0.3, 0.2, 0.5, 0.2])
    got = _loss(img, txt, tables, tau, form)
    got.sum().backward()
    for r, m in enumerate(ms):
        i, t = img[r].detach().requires_grad_(), txt[r].detach().requires_grad_()
        want = subsample_loss(i, t, orders[r], m, tau=float(tau[r]), form=form)
        want.backward()
        assert float(got[r].detach()) == pytest.approx(float(want.detach()), abs=1e-6)
        assert torch.allclose(img.grad[r], i.grad, atol=1e-6)
        assert torch.allclose(txt.grad[r], t.grad, atol=1e-6)


@pytest.mark.parametrize("seed", range(6))
def test_padded_calls_are_the_cheapest_partition(seed: int) -> None:
    """Against brute force over every way to cut the runs into consecutive calls."""
    import itertools

    from negscale.cohort.loop import _cost, _segments
    from negscale.negatives.base import BatchTable

    rng = torch.Generator().manual_seed(seed)
    levels = sorted({int(w) for w in torch.randint(2, 321, (6,), generator=rng)}, reverse=True)
    widths = [w for w in levels for _ in range(int(torch.randint(1, 4, (1,), generator=rng)))]
    tables = [BatchTable(torch.arange(w), torch.zeros(320, dtype=torch.long), w - 1.0, 0)
              for w in widths]  # fmt: skip

    def total(calls):
        return sum(_cost(b - a, max(widths[a:b])) for a, b in calls)

    inner = range(1, len(widths))
    every = (list(cuts) for k in range(len(widths)) for cuts in itertools.combinations(inner, k))
    bounds = ([0, *cuts, len(widths)] for cuts in every)
    least = min(total(list(itertools.pairwise(b))) for b in bounds)
    got = _segments(tables)
    assert total(got) == least and got[0][0] == 0 and got[-1][1] == len(widths)
    assert all(a == b for (_, a), (b, _) in itertools.pairwise(got))
    assert len(_segments(tables, pad=False)) == len(levels)


@pytest.mark.parametrize("m", [6, 63])  # subsample, and the whole batch (source batch)
def test_records_equal_the_one_run_trainers(tmp_path, m: int) -> None:
    recipes = _recipes(m)
    assert recipes[0].negatives.source == ("batch" if m == 63 else "subsample")
    alone = [run(r, tmp_path / "alone", progress=False, notice=print) for r in recipes]
    together = run_together(recipes, tmp_path / "together", notice=print)
    _same_records(together, alone)
    assert all(r.status == "ok" for r in together)


def test_a_stack_of_several_m_and_sources_records_each_run_as_alone(tmp_path) -> None:
    recipes = [*_recipes(63, seeds=(0,)), *_recipes(6, seeds=(0, 1)), *_recipes(2, seeds=(1,))]
    assert len(cohorts(recipes)) == 1
    alone = [run(r, tmp_path / "alone", progress=False, notice=print) for r in recipes]
    together = run_together(recipes, tmp_path / "together", notice=print)
    _same_records(together, alone)


def test_a_checkpoint_holds_its_own_run_and_loads_into_a_trainer(tmp_path) -> None:
    recipes = _recipes(6, seeds=(0, 1))
    alone = run(recipes[1], tmp_path / "alone", progress=False, notice=print)
    run_together(recipes, tmp_path / "together", notice=print)
    mine = checkpoint_path(tmp_path / "together", alone.run_id)
    ref = checkpoint_path(tmp_path / "alone", alone.run_id)
    assert mine.stat().st_size < 1.2 * ref.stat().st_size  # not every run's stacked tensors
    state = torch.load(mine, weights_only=False)
    for name, t in state["model"].items():
        assert t.untyped_storage().nbytes() == t.numel() * t.element_size(), name
    trainer = Trainer(recipes[1], resolve_runtime(recipes[1], "cpu"), progress=False)
    trainer.load_state_dict(state)
    want = torch.load(ref, weights_only=False)
    assert trainer.step == want["step"]
    for k, v in want["optimizer"]["state"].items():
        for key in ("exp_avg", "exp_avg_sq"):
            assert torch.allclose(state["optimizer"]["state"][k][key], v[key], atol=1e-6)
        assert float(state["optimizer"]["state"][k]["step"]) == float(v["step"])
    # its LR schedule and rate too (only a stack's first run steps its scheduler)
    assert state["scheduler"]["last_epoch"] == want["scheduler"]["last_epoch"]
    assert state["scheduler"]["_last_lr"] == want["scheduler"]["_last_lr"]
    lrs = [g["lr"] for g in state["optimizer"]["param_groups"]]
    assert lrs == [g["lr"] for g in want["optimizer"]["param_groups"]]


def test_a_killed_cohort_resumes_from_its_checkpoints(tmp_path, monkeypatch) -> None:
    import negscale.cohort.loop as loop

    recipes = _recipes(6, extra=["train.checkpoint_every=8"])
    want = run_together(recipes, tmp_path / "whole", notice=print)
    real = loop._step

    def killed_at_16(stack, trainers):
        if trainers[0].step == 16:
            raise KeyboardInterrupt
        return real(stack, trainers)

    monkeypatch.setattr(loop, "_step", killed_at_16)
    with pytest.raises(KeyboardInterrupt):
        run_together(recipes, tmp_path / "killed", notice=print)
    lead = None
    for r in recipes:  # every run's checkpoint at step 16 holds the schedule at step 16
        state = torch.load(checkpoint_path(tmp_path / "killed", r.run_id()), weights_only=False)
        assert state["step"] == 16 and state["scheduler"]["last_epoch"] == 16
        lead = lead or state["scheduler"]["_last_lr"]
        assert state["scheduler"]["_last_lr"] == lead
    monkeypatch.setattr(loop, "_step", real)
    said: list[str] = []
    got = run_together(recipes, tmp_path / "killed", notice=said.append)
    assert sum("from its checkpoint at step 16/24" in s for s in said) == 3
    _same_records(got, want)


def test_runs_at_different_steps_train_apart_to_the_same_records(tmp_path) -> None:
    recipes = _recipes(6, extra=["train.checkpoint_every=8"])
    want = run_together(recipes, tmp_path / "whole", notice=print)
    for path in (tmp_path / "whole").rglob("*"):  # run 0's checkpoint (step 24) only
        if path.is_file() and recipes[0].run_id() not in path.name:
            path.unlink()
    for path in (tmp_path / "whole" / "runs").glob("*"):
        path.unlink()
    got = run_together(recipes, tmp_path / "whole", notice=print)
    _same_records(got, want)


def test_a_diverged_run_leaves_its_cohort_training(tmp_path, monkeypatch) -> None:
    import negscale.cohort.loop as loop

    recipes = _recipes(6)
    want = run_together(recipes, tmp_path / "clean", notice=print)
    real = loop.table_loss

    def nan_for_run_1(img, txt, columns, drop, *, tau, form, widths=None):
        loss = real(img, txt, columns, drop, tau=tau, form=form, widths=widths)
        return loss * torch.tensor([1.0, float("nan"), 1.0])

    monkeypatch.setattr(loop, "table_loss", nan_for_run_1)
    got = run_together(recipes, tmp_path / "nan", notice=print)
    assert [r.status for r in got] == ["ok", "diverged", "ok"]
    assert "loss became nan at step 0" in got[1].message
    _same_records([got[0], got[2]], [want[0], want[2]])


def test_cohorts_group_a_design_across_seeds_and_m_and_keep_the_rest_alone(monkeypatch) -> None:
    import negscale.cohort as cohort

    grid = GridSpec(negatives="2,4,63", samples="256,512", seeds="0,1,2")
    plan = make_plan("quickstart", SMALL, grid)  # m = 63 is the batch source
    groups = cohorts(plan.recipes)
    assert [len(g) for g in groups] == [9, 9]
    assert [r for g in groups for r in g] == plan.recipes  # order kept
    for g in groups:
        assert len({r.data.n for r in g}) == 1
    monkeypatch.setattr(cohort, "MAX_STACK", 4)
    assert [len(g) for g in cohorts(plan.recipes)] == [4, 4, 1, 4, 4, 1]
    supervised = load_recipe("quickstart-supervised", SMALL, m=4, n=256)
    assert not stackable(supervised)
    assert [len(g) for g in cohorts([supervised, supervised])] == [1, 1]
    assert not stackable(load_recipe("quickstart", [*SMALL, "train.micro_batch=16"], m=4))
    assert not stackable(load_recipe("digits-simclr"))  # a CNN tower: it would not round alike
    images = load_recipe("quickstart", [*SMALL, "data.flavour='images'"], m=4)
    assert not stackable(images)  # auto is a CNN and a token transformer there
    assert stackable(load_recipe("quickstart", [*SMALL, "model.image_encoder='mlp'"], m=4))


def test_a_group_of_other_towers_trains_one_at_a_time_to_the_same_records(tmp_path) -> None:
    """run_together's own check: towers other than the MLP train as lone runs would."""
    recipes = [load_recipe("digits-simclr", ["train.steps=6", f"train.seed={s}"], m=7)
               for s in (0, 1)]  # fmt: skip
    alone = [run(r, tmp_path / "alone", progress=False, notice=print) for r in recipes]
    together = run_together(recipes, tmp_path / "together", notice=print)
    for a, b in zip(alone, together, strict=True):
        assert (a.auc, a.train_loss, a.recall_at_1) == (b.auc, b.train_loss, b.recall_at_1)


def test_jobs_get_lanes_of_equal_work() -> None:
    """Longest first (as a sweep orders them), groups cut where a job's share of the work fills."""
    from negscale.sweep.execute import longest_first

    grid = GridSpec(negatives="2,4", samples="1024,4096", seeds="0,1,2")
    recipes = longest_first(make_plan("quickstart", ["data.n_eval=256"], grid).recipes)
    assert {r.train.steps for r in recipes} == {128, 512}  # 40 epochs of B = 320
    groups = cohorts(recipes, jobs=2)  # work 6 x 4 + 6 x 1 = 30: lanes of 15
    assert [len(g) for g in groups] == [4, 2, 6]
    assert [r for g in groups for r in g] == recipes
    work = [sum(r.train.steps for r in g) for g in groups]
    assert work[0] >= 15 * 128 and work[1] + work[2] <= 15 * 128


def test_lanes_weigh_the_loss_width_and_split_within_half_a_run() -> None:
    """The quickstart's two lanes: its widest-m runs cost more, a small n's runs more than
    their steps (their validations), and the cut falls where the lanes' work differs by at
    most the run at the cut."""
    from negscale.cohort import _work
    from negscale.sweep.execute import longest_first

    recipes = longest_first(make_plan("quickstart", [], GridSpec()).recipes)
    wide, narrow = (next(r for r in recipes if r.m == m and r.data.n == 16384) for m in (319, 1))
    assert _work(wide) / _work(narrow) == pytest.approx(1.38, abs=0.01)
    small = next(r for r in recipes if r.m == 1 and r.data.n == 1024)
    assert _work(small) / _work(narrow) == pytest.approx(0.11, abs=0.01)  # measured: 0.112
    groups = cohorts(recipes, jobs=2)
    first, rest = sum(map(_work, groups[0])), sum(_work(r) for g in groups[1:] for r in g)
    assert abs(first - rest) <= _work(groups[1][0])


def test_grouping_runs_without_torch() -> None:
    code = (
        "import sys; from negscale.cohort import cohorts; from negscale.config import "
        "load_recipe; cohorts([load_recipe('quickstart')]); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_sweep_stacks_seeds_and_writes_the_one_at_a_time_records(tmp_path) -> None:
    from negscale.results import load

    plan = make_plan("quickstart", SMALL, GridSpec(negatives="4", samples="256", seeds="0,1"))
    one = execute(plan, tmp_path / "one", stack=False)
    both = execute(plan, tmp_path / "both")
    assert sorted(one.trained) == sorted(both.trained)
    a, b = load(tmp_path / "one"), load(tmp_path / "both")
    a, b = (t.sort_values("run_id").reset_index(drop=True) for t in (a, b))
    assert list(a["run_id"]) == list(b["run_id"])
    assert (a["auc"] - b["auc"]).abs().max() < 2e-6


def test_runs_of_one_seed_share_one_feed(tmp_path) -> None:
    """A stack fetches one batch a seed a step: runs of one seed see the same batches."""
    from negscale.cohort.loop import _share_feeds

    recipes = [r for m in (2, 5) for r in _recipes(m, seeds=(0, 1))]
    runtime = resolve_runtime(recipes[0], None)
    trainers, data = [], None
    for recipe in recipes:
        trainer = Trainer(recipe, runtime, data=data, progress=False)
        data = trainer.data
        trainers.append(trainer)
    want = [t.feed(3).index for t in trainers]
    _share_feeds(trainers)
    assert len({id(t.feed) for t in trainers}) == 2
    assert all(torch.equal(t.feed(3).index, w) for t, w in zip(trainers, want, strict=True))


def test_step_0_metrics_are_evaluated_once_a_starting_model(tmp_path, monkeypatch) -> None:
    """Runs of one seed start from the same weights: 2 m x 3 seeds evaluate 3 models at
    step 0, and every run still records what a lone run records (compared above)."""
    real, steps = Trainer.evaluate, []

    def counted(self):
        steps.append(self.step)
        return real(self)

    monkeypatch.setattr(Trainer, "evaluate", counted)
    got = run_together([*_recipes(2), *_recipes(5)], tmp_path, notice=print)
    assert steps.count(0) == 3 and len(steps) == 3 + 6  # 3 starts, 6 final evaluations
    by_seed = {}
    for r in got:
        by_seed.setdefault(r.seed, set()).add(r.auc_init)
    assert all(len(v) == 1 for v in by_seed.values()) and len(by_seed) == 3


def test_bf16_runs_train_one_at_a_time_to_the_lone_records(tmp_path) -> None:
    """A batched bf16 matmul rounds unlike one run's (more than float rounding), so bf16
    runs are not grouped, and a stack handed them trains them one at a time."""
    recipes = _recipes(5, seeds=(0, 1), extra=["train.precision=bf16"])
    assert not any(stackable(r) for r in recipes)
    assert [len(g) for g in cohorts(recipes)] == [1, 1]
    want = [run(r, tmp_path / "alone", progress=False, notice=print) for r in recipes]
    got = run_together(recipes, tmp_path / "stack", notice=print)
    _same_records(got, want)


def test_the_written_out_norms_equal_torchs_with_their_gradients() -> None:
    """The stack's layer norm (forward as mean/centre/norm/scale) and output normalisation
    (gradient written out) against F.layer_norm and F.normalize, clamped rows included."""
    import torch.nn.functional as F

    from negscale.cohort.mlp import _LayerNorm, _Normalize

    torch.manual_seed(0)
    x = torch.randn(3, 7, 64, dtype=torch.float64)
    x[0, 1] = 1e-14  # F.normalize clamps this norm at 1e-12
    x[1, 2] = 0.0
    g = torch.randn_like(x)
    for ours, theirs in (
        (_Normalize.apply, lambda t: F.normalize(t, dim=-1)),
        (lambda t: _LayerNorm.apply(t, 1e-5), lambda t: F.layer_norm(t, (64,), eps=1e-5)),
    ):
        a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
        ya, yb = ours(a), theirs(b)
        torch.testing.assert_close(ya, yb)
        ya.backward(g)
        yb.backward(g)
        torch.testing.assert_close(a.grad, b.grad)
