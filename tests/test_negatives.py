"""Negative sources against brute-force references: equivalences, draws, estimator, resume."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from scipy.stats import chisquare
from typer.testing import CliRunner

from negscale import data as datasets
from negscale import encoders
from negscale.cli import app
from negscale.config import load_recipe, setting_of
from negscale.data.base import Split
from negscale.negatives import (
    SOURCES,
    Batch,
    BatchSource,
    IndependentSource,
    PoolSource,
    QueueSource,
    SubsampleSource,
    build,
    source_params,
)
from negscale.negatives.step import staged_loss
from negscale.train import Runtime, Trainer

SMALL = ["data.n_eval=64", "model.hidden=16", "model.embed_dim=8", "eval.prototypes=64"]


def _setup(*overrides: str, n: int = 40, batch: int = 8, m: int | None = None):
    r = load_recipe(
        "quickstart", [*SMALL, f"data.n={n}", f"train.batch_size={batch}", *overrides], m=m
    )
    data = datasets.build(r.data)
    torch.manual_seed(0)
    return r, data, encoders.build(r.model, data)


def _batch(data, index: list[int] | torch.Tensor) -> Batch:
    idx = torch.as_tensor(index)
    return Batch(idx, data.train.x[idx], data.train.y[idx], data.train.labels[idx])


def _step(source, model, batch: Batch, step: int = 0):
    img, txt = model(batch.x, batch.y)
    return staged_loss(source, model, batch, img, txt, step)


def _grad(model, loss: torch.Tensor) -> torch.Tensor:
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return torch.cat(
        [
            (torch.zeros_like(p) if g is None else g).flatten()
            for p, g in zip(params, grads, strict=True)
        ]
    )


def _brute(model, data, n: int, anchors, negatives_of, form: str, stale=None) -> torch.Tensor:
    """Symmetric loss one anchor and one negative at a time (plain exp/log, no logsumexp).

    ``negatives_of(i)`` lists training ids; ``stale`` maps an id to fixed
    (image, text) embeddings used instead of the live model's (queue entries).
    """
    img_all, txt_all = model(data.train.x[:n], data.train.y[:n])
    tau = float(model.tau)
    total = torch.zeros(())
    for i in [int(a) for a in anchors]:
        for d, (a_all, b_all) in enumerate(((img_all, txt_all), (txt_all, img_all))):
            pos = a_all[i] @ b_all[i]
            scores = []
            for j in negatives_of(i):
                key = b_all[j] if stale is None or j not in stale else stale[j][1 - d]
                scores.append(a_all[i] @ key)
            if not scores:
                continue
            if form == "paper":
                terms = [torch.exp((s - pos) / tau) for s in scores]
                loss = tau * torch.log(sum(terms) / len(terms))
            else:
                pos_e = torch.exp(pos / tau)
                loss = -torch.log(pos_e / (pos_e + sum(torch.exp(s / tau) for s in scores)))
            total = total + 0.5 * loss
    return total / len(anchors)


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-4) -> None:
    torch.testing.assert_close(a, b, rtol=rtol, atol=1e-6)


# ------------------------------------------------------------------ registry & accounting


def test_every_recipe_source_is_registered_with_a_one_line_summary() -> None:
    from negscale.config.sources import SPECS

    assert set(SOURCES) == set(SPECS) == {"batch", "subsample", "independent", "pool", "queue"}
    for name, cls in SOURCES.items():
        assert cls.name == name and cls.summary and "\n" not in cls.summary


def test_sources_declare_themselves_and_recipe_validation_asks_them() -> None:
    from negscale.config.sources import SPECS
    from negscale.errors import NegscaleError

    for name, cls in SOURCES.items():
        spec = SPECS[name]
        assert cls.spec is spec and cls.setting == spec.setting == setting_of(name)
        assert cls.__module__ == f"negscale.negatives.{name}" and spec.m_means
        assert set(spec.fields) <= set(type(load_recipe("quickstart").negatives).model_fields)
    # each source's own rule, as one line naming the field
    assert SPECS["pool"].check(41, 8, 40) == "a pool holds at most data.n = 40 items, got 41"
    assert (
        SPECS["subsample"].check(8, 8, 40) is not None
        and SPECS["subsample"].check(7, 8, 40) is None
    )
    with pytest.raises(NegscaleError, match=r"^negatives\.m: a pool holds at most"):
        _setup("negatives.source='pool'", m=41)


def test_recipes_validate_without_importing_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from negscale.config import load_recipe;"
        "r = load_recipe('quickstart', m=5); assert r.setting == 'self-supervised';"
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_list_negatives_reads_the_summaries() -> None:
    res = CliRunner().invoke(app, ["list", "negatives", "--json"])
    assert res.exit_code == 0, res.output
    rows = {row["name"]: row for row in json.loads(res.stdout)}
    assert rows["pool"]["summary"] == PoolSource.summary
    assert rows["independent"]["setting"] == "supervised"
    # the shared fields each reads, then its own section's ([negatives.<name>]) options
    assert rows["pool"]["options"] == "chunk, tile; own: minibatch, exact_max, gamma"
    assert rows["batch"]["options"] == "tile"


# ------------------------------------------------------------------ equivalences


@pytest.mark.parametrize("form", ["paper", "infonce"])
def test_subsample_with_m_b_minus_1_equals_batch(form: str) -> None:
    r, data, model = _setup(f"negatives.loss_form='{form}'", m=7)
    batch = _batch(data, [3, 9, 1, 30, 22, 5, 17, 11])
    sub = _step(SubsampleSource(source_params(r), data), model, batch)
    ref = _step(BatchSource(source_params(r), data), model, batch)
    _close(sub.loss, ref.loss)
    _close(_grad(model, sub.loss), _grad(model, ref.loss))
    assert sub.negatives_per_anchor == ref.negatives_per_anchor == 7


@pytest.mark.parametrize("form", ["paper", "infonce"])
def test_empty_queue_equals_batch_then_adds_stale_detached_entries(form: str) -> None:
    r, data, model = _setup("negatives.source='queue'", f"negatives.loss_form='{form}'", m=6)
    queue = QueueSource(source_params(r), data)
    first = _batch(data, list(range(8)))
    out = _step(queue, model, first)
    ref = _step(BatchSource(source_params(r), data), model, first)
    _close(out.loss, ref.loss)
    _close(_grad(model, out.loss), _grad(model, ref.loss))
    assert out.negatives_per_anchor == 7 and queue.ids.tolist() == [2, 3, 4, 5, 6, 7]

    with torch.no_grad():  # entries of items 2, 3 are now stale: the model moves on
        old_img, old_txt = model(data.train.x[:8], data.train.y[:8])
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    second = _batch(data, list(range(4, 12)))  # items 4..7 are queued and in the batch
    out = _step(queue, model, second, step=1)
    stale = {j: (old_img[j], old_txt[j]) for j in (2, 3)}
    want = _brute(
        model,
        data,
        40,
        range(4, 12),
        lambda i: [*(j for j in range(4, 12) if j != i), 2, 3],
        form,
        stale,
    )
    _close(out.loss, want)
    _close(_grad(model, out.loss), _grad(model, want))
    assert out.negatives_per_anchor == 7 + 2
    assert queue.ids.tolist() == [6, 7, 8, 9, 10, 11]  # FIFO, an item's newest copy kept


def test_queue_records_the_negatives_each_anchor_saw(tmp_path, tiny_overrides) -> None:
    """m is the queue length; an anchor sees B-1 batch items plus the queue (issue: fit on it).

    n = 512, B = 64, m = 100: the queue holds min(100, 64 s) items before step s, none of
    them in step s's batch within the first epoch (8 steps), so steps 0..4 see
    63, 127, 163, 163, 163 negatives.
    """
    from negscale.train import run

    sets = [*tiny_overrides, "train.steps=5", "negatives.source='queue'"]
    rec = run(load_recipe("quickstart", sets, m=100), tmp_path, progress=False)
    assert rec.m == 100 and rec.negatives_store == 100
    assert rec.negatives_used == pytest.approx((63 + 127 + 3 * 163) / 5)


def test_queue_momentum_encoder_is_an_exponential_average() -> None:
    r, data, model = _setup("negatives.source='queue'", "negatives.momentum=0.5", m=16)
    queue = QueueSource(source_params(r), data)  # momentum from the recipe
    theta0 = [p.detach().clone() for p in model.parameters()]
    _step(queue, model, _batch(data, list(range(8))))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    _step(queue, model, _batch(data, list(range(8, 16))), step=1)
    for k, p0, p1 in zip(queue.key_model.parameters(), theta0, model.parameters(), strict=True):
        _close(k, 0.5 * (p0 + p1))
    with torch.no_grad():
        _, txt = queue.key_model(data.train.x[8:16], data.train.y[8:16])
    _close(queue.txt_q[-8:], txt)


@pytest.mark.parametrize(
    "form,tile,m",
    [("paper", 4096, 40), ("infonce", 4096, 40), ("paper", 7, 40), ("infonce", 5, 13)],
)
def test_pool_exact_equals_brute_force_global_loss(form: str, tile: int, m: int) -> None:
    r, data, model = _setup(
        "negatives.source='pool'",
        "negatives.pool_exact_max=1024",
        f"negatives.loss_form='{form}'",
        f"negatives.tile={tile}",
        m=m,
    )
    pool = PoolSource(source_params(r), data)
    assert pool.exact and pool.store_size == m
    members = set(pool.pool.tolist())
    batch = _batch(data, [0, 5, 39, 12, 7, 21, 33, 2])
    out = _step(pool, model, batch)
    want = _brute(model, data, 40, batch.index, lambda i: sorted(members - {i}), form)
    _close(out.loss, want)
    _close(_grad(model, out.loss), _grad(model, want))
    inside = sum(int(i) in members for i in batch.index)
    assert out.negatives_per_anchor == pytest.approx(m - inside / 8)
    assert out.scores == 2 * 8 * m


def test_pool_ids_are_fixed_by_the_seed_and_recorded() -> None:
    r, data, _ = _setup("negatives.source='pool'", m=10)
    a, b = PoolSource(source_params(r), data), PoolSource(source_params(r), data)
    r2, _, _ = _setup("negatives.source='pool'", "train.seed=1", m=10)
    c = PoolSource(source_params(r2), data)
    assert torch.equal(a.pool, b.pool) and a.ids_sha == b.ids_sha != c.ids_sha
    assert len(set(a.pool.tolist())) == 10 and a.pool.max() < 40
    full = PoolSource(source_params(_setup("negatives.source='pool'", m=40)[0]), data)
    assert full.pool.tolist() == list(range(40))


# ------------------------------------------------------------------ pool estimator


def _estimator(model_data, form: str, gamma: float, k: int, m: int = 40) -> PoolSource:
    data = model_data[1]
    r = load_recipe(
        "quickstart",
        [
            *SMALL,
            "data.n=40",
            "train.batch_size=8",
            "negatives.source='pool'",
            "negatives.pool_exact_max=0",
            f"negatives.loss_form='{form}'",
            f"negatives.gamma={gamma}",
            f"negatives.pool_batch={k}",
        ],
        m=m,
    )
    return PoolSource(source_params(r), data)


@pytest.mark.parametrize("form", ["paper", "infonce"])
def test_estimator_with_gamma_1_and_full_minibatch_is_the_exact_gradient(form: str) -> None:
    setup = _setup()
    _, data, model = setup
    pool = _estimator(setup, form, 1.0, 40)
    assert not pool.exact and pool.k == 40
    batch = _batch(data, [1, 8, 19, 26, 31, 36, 4, 13])
    out = _step(pool, model, batch)
    want = _brute(model, data, 40, batch.index, lambda i: [j for j in range(40) if j != i], form)
    _close(out.loss, want)
    _close(_grad(model, out.loss), _grad(model, want))


@pytest.mark.parametrize("form", ["paper", "infonce"])
def test_estimator_on_its_own_batch_is_the_in_batch_loss_scaled_to_the_pool(form: str) -> None:
    """m = n, pool_batch = B, gamma = 1: S is the batch, u_i its mean-exp over the others."""
    setup = _setup()
    _, data, model = setup
    pool = _estimator(setup, form, 1.0, 8)
    batch = _batch(data, [31, 2, 17, 8, 25, 39, 11, 0])
    assert torch.equal(pool.sample(batch.index, 0), batch.index)
    out = _step(pool, model, batch)
    img, txt = model(batch.x, batch.y)
    tau, total = float(model.tau), torch.zeros(())
    for a_all, b_all in ((img, txt), (txt, img)):
        for i in range(8):
            pos = a_all[i] @ b_all[i]
            terms = [torch.exp(a_all[i] @ b_all[j] / tau) for j in range(8) if j != i]
            mean = sum(terms) / len(terms)
            if form == "paper":  # tau * log(mean_j exp(s_ij / tau)) - s_ii
                total = total + 0.5 * (tau * torch.log(mean) - pos)
            else:  # the pool's 39 negatives, estimated by 39 times the batch mean
                pos_e = torch.exp(pos / tau)
                total = total - 0.5 * torch.log(pos_e / (pos_e + 39 * mean))
    want = total / 8
    _close(out.loss, want)
    _close(_grad(model, out.loss), _grad(model, want))
    assert out.scores == 2 * 8 * 8


def _rel_error(model, loss: torch.Tensor, exact: torch.Tensor) -> float:
    g, e = _grad(model, loss), _grad(model, exact)
    return float((g - e).norm() / e.norm())


@pytest.mark.parametrize("form", ["paper", "infonce"])
def test_estimator_gradient_converges_as_gamma_goes_to_1(form: str) -> None:
    """Stale averages: u_i holds the pool mean-exp at old weights; gamma weighs the fresh one."""
    setup = _setup()
    _, data, model = setup
    batch = _batch(data, list(range(0, 40, 5)))
    start = [p.detach().clone() for p in model.parameters()]
    errors = []
    for gamma in (0.5, 0.8, 0.95, 1.0):
        with torch.no_grad():
            for p, p0 in zip(model.parameters(), start, strict=True):
                p.copy_(p0)
        pool = _estimator(setup, form, gamma, 40)
        _step(pool, model, batch)  # first visit: u_i from the old weights
        torch.manual_seed(1)  # the same move for every gamma
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.2 * torch.randn_like(p))
        out = _step(pool, model, batch, step=1)
        exact = _brute(
            model, data, 40, batch.index, lambda i: [j for j in range(40) if j != i], form
        )
        errors.append(_rel_error(model, out.loss, exact))
    assert errors[0] > errors[1] > errors[2] > errors[3]
    assert errors[3] < 1e-4 < errors[0]


@pytest.mark.parametrize("form", ["paper", "infonce"])
def test_estimator_gradient_converges_as_the_minibatch_grows_to_the_pool(form: str) -> None:
    setup = _setup()
    _, data, model = setup
    batch = _batch(data, [2, 9, 14, 20, 27, 33, 38, 6])
    exact = _grad(
        model,
        _brute(model, data, 40, batch.index, lambda i: [j for j in range(40) if j != i], form),
    )
    errors = []
    for k in (4, 12, 40):
        pool = _estimator(setup, form, 1.0, k)
        errs = [
            float((_grad(model, _step(pool, model, batch, step=s).loss) - exact).norm())
            / float(exact.norm())
            for s in range(6)
        ]
        errors.append(sum(errs) / len(errs))
    assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-4


def test_estimator_minibatch_is_k_distinct_pool_items_batch_members_first() -> None:
    pool = _estimator(_setup(), "paper", 0.9, 10, m=20)
    members = set(pool.pool.tolist())
    index = torch.arange(8)
    for step in range(5):
        ids = pool.sample(index, step)
        assert len(set(ids.tolist())) == 10 and set(ids.tolist()) <= members
        assert {i for i in range(8) if i in members} <= set(ids.tolist())
    assert not torch.equal(pool.sample(index, 0), pool.sample(index, 1))


def test_moving_average_follows_the_gamma_schedule() -> None:
    """u_i <- (1 - g_v) u_i + g_v ghat_i, g_v = max(gamma, 1/v); here ghat is exact (k = m)."""
    setup = _setup()
    _, data, model = setup
    pool = _estimator(setup, "paper", 0.3, 40)
    batch = _batch(data, [3, 4])
    history = []
    for step in range(4):
        with torch.no_grad():
            img_all, txt_all = model(data.train.x[:40], data.train.y[:40])
        g = torch.stack(
            [
                torch.exp(img_all[i] @ txt_all.T / model.tau)[torch.arange(40) != i].mean()
                for i in (3, 4)
            ]
        )
        history.append(g)
        _step(pool, model, batch, step)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1 * torch.randn_like(p))
    u = history[0]
    for v, g in enumerate(history[1:], start=2):
        rate = max(0.3, 1.0 / v)
        u = (1 - rate) * u + rate * g
    _close(pool.log_u[0, [3, 4]].exp(), u, rtol=1e-4)
    assert pool.visits[0, [3, 4]].tolist() == [4, 4]


def test_pool_of_one_gives_its_own_item_no_negative_and_finite_gradients() -> None:
    for exact in (1024, 0):
        r, data, model = _setup("negatives.source='pool'", f"negatives.pool_exact_max={exact}", m=1)
        pool = PoolSource(source_params(r), data)
        member = int(pool.pool[0])
        batch = _batch(data, [member, *[i for i in range(8) if i != member][:7]])
        out = _step(pool, model, batch)
        assert torch.isfinite(out.loss) and torch.isfinite(_grad(model, out.loss)).all()
        assert out.negatives_per_anchor == pytest.approx(7 / 8)


# ------------------------------------------------------------------ independent


def test_independent_draws_avoid_the_own_pair_and_same_class_items() -> None:
    r, data, _ = _setup("negatives.source='independent'", n=512, batch=64, m=300)
    src = IndependentSource(source_params(r), data)
    labels = data.train.labels[:512]
    index = torch.arange(512)
    for step in range(3):
        draws = src.draws(index, step)
        assert draws.shape == (512, 300)
        assert (labels[draws] != labels[:, None]).all()
    unlabelled = dataclasses.replace(data, train=Split(data.train.x, data.train.y, None))
    plain = IndependentSource(source_params(r), unlabelled)
    draws = plain.draws(index, 0)
    assert (draws != index[:, None]).all() and draws.min() >= 0 and draws.max() < 512
    assert (labels[draws] == labels[:, None]).any()  # same-class items allowed without labels


def test_independent_without_class_awareness_draws_from_the_marginal() -> None:
    """class_aware = false: any other training item, labels ignored (uniform over n - 1)."""
    r, data, _ = _setup(
        "negatives.source='independent'", "negatives.class_aware=false", n=128, m=127
    )
    src = IndependentSource(source_params(r), data)
    assert src.order is None and data.train.labels is not None
    draws = torch.cat([src.draws(torch.tensor([5]), s)[0] for s in range(120)])
    counts = torch.bincount(draws, minlength=128)
    assert counts[5] == 0 and chisquare(counts[torch.arange(128) != 5].numpy()).pvalue > 1e-3
    labels = data.train.labels[:128]
    assert (labels[draws] == labels[5]).any()  # same-class items are drawn too
    one = dataclasses.replace(
        data, train=Split(data.train.x, data.train.y, torch.zeros_like(data.train.labels))
    )
    assert (
        IndependentSource(source_params(r), one).order is None
    )  # a single class is fine for the marginal


def test_independent_draws_are_uniform_over_the_allowed_items() -> None:
    r, data, _ = _setup("negatives.source='independent'", n=128, m=127)
    labels = data.train.labels[:128]
    for d in (data, dataclasses.replace(data, train=Split(data.train.x, data.train.y, None))):
        src = IndependentSource(source_params(r), d)
        draws = torch.cat([src.draws(torch.tensor([5]), s)[0] for s in range(120)])
        allowed = (
            [j for j in range(128) if j != 5]
            if d.train.labels is None
            else [j for j in range(128) if labels[j] != labels[5]]
        )
        counts = torch.bincount(draws, minlength=128)
        assert counts.sum() == counts[allowed].sum()
        assert chisquare(counts[allowed].numpy()).pvalue > 1e-3


def test_identical_seeds_give_identical_draws() -> None:
    r, data, _ = _setup("negatives.source='independent'", m=20)
    r1, _, _ = _setup("negatives.source='independent'", "train.seed=1", m=20)
    idx = torch.arange(8)
    a, b, c = (
        IndependentSource(source_params(r), data),
        IndependentSource(source_params(r), data),
        IndependentSource(source_params(r1), data),
    )
    assert torch.equal(a.draws(idx, 3), b.draws(idx, 3))
    assert not torch.equal(a.draws(idx, 3), a.draws(idx, 4))
    assert not torch.equal(a.draws(idx, 3), c.draws(idx, 3))


@pytest.mark.parametrize("form,tile", [("paper", 4096), ("infonce", 4096), ("paper", 40)])
def test_independent_loss_equals_brute_force_over_each_anchors_draws(form: str, tile: int):
    r, data, model = _setup(
        "negatives.source='independent'",
        f"negatives.loss_form='{form}'",
        f"negatives.tile={tile}",
        "negatives.chunk=5",
        n=64,
        m=30,
    )
    src = IndependentSource(source_params(r), data)
    batch = _batch(data, [0, 7, 13, 21, 40, 55, 63, 30])
    draws = src.draws(batch.index, 2)
    rows = {int(a): draws[k].tolist() for k, a in enumerate(batch.index)}
    out = _step(src, model, batch, step=2)
    want = _brute(model, data, 64, batch.index, lambda i: rows[i], form)
    _close(out.loss, want)
    _close(_grad(model, out.loss), _grad(model, want))
    assert out.negatives_per_anchor == 30 and out.scores == 2 * 8 * 30


def test_independent_rejects_a_single_class() -> None:
    r, data, _ = _setup("negatives.source='independent'", m=4)
    one = dataclasses.replace(
        data, train=Split(data.train.x, data.train.y, torch.zeros_like(data.train.labels))
    )
    with pytest.raises(Exception, match="single class"):
        build(r, one)


# ------------------------------------------------------------------ resume & CLI


@pytest.mark.parametrize(
    "overrides,m",
    [
        (["negatives.source='subsample'"], 5),
        (["negatives.source='queue'"], 100),
        (["negatives.source='pool'", "negatives.pool_exact_max=0", "negatives.gamma=0.5"], 300),
        (["negatives.source='independent'"], 70),
    ],
)
def test_resume_continues_exactly(tiny_overrides, overrides: list[str], m: int) -> None:
    """A trainer restored from a mid-run state ends with the same losses and weights."""
    r = load_recipe("quickstart", [*tiny_overrides, "train.steps=10", *overrides], m=m)
    rt = Runtime(torch.device("cpu"), "fp32", False)
    straight = Trainer(r, rt, progress=False)
    for _ in range(10):
        straight.train_step()
    first = Trainer(r, rt, progress=False)
    for _ in range(4):
        first.train_step()
    second = Trainer(r, rt, progress=False)
    second.load_state_dict(first.state_dict())
    for _ in range(6):
        second.train_step()
    assert second.log.losses == straight.log.losses
    for p, q in zip(second.model.parameters(), straight.model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


@pytest.mark.parametrize("m", [1, 512])
def test_cli_trains_with_a_pool_of_any_size(tmp_path, tiny_overrides, m: int) -> None:
    sets = [a for o in [*tiny_overrides, "train.steps=5"] for a in ("--set", o)]
    res = CliRunner().invoke(
        app,
        [
            "train",
            "quickstart",
            "--set",
            "negatives.source=pool",
            "--negatives",
            str(m),
            "--results",
            str(tmp_path),
            "--json",
            *sets,
        ],
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["status"] == "ok" and doc["m"] == m and doc["negatives"] == "pool"
    assert doc["negatives_store"] == m and len(doc["negatives_ids_sha"]) == 64
    assert 0 < doc["negatives_used"] <= m


@pytest.mark.parametrize(
    "name,source",
    [
        ("quickstart", "batch"),
        ("quickstart-supervised", "independent"),
        ("self-supervised", "pool"),
    ],
)
def test_bundled_recipes_validate(name: str, source: str) -> None:
    from negscale.config import bundled_recipes

    path = bundled_recipes()[name]
    assert path.read_text().startswith("# ")
    r = load_recipe(name)
    assert r.negatives.source == source and r.description
    assert r.sweep.seeds and (r.sweep.negatives or r.sweep.ratios) and r.sweep.samples


def test_infeasible_queue_and_pool_sizes_are_one_line_errors() -> None:
    from negscale.errors import NegscaleError

    with pytest.raises(NegscaleError, match="queue keeps distinct items"):
        _setup("negatives.source='queue'", m=41)
    with pytest.raises(NegscaleError, match="pool holds at most"):
        _setup("negatives.source='pool'", m=41)


def test_bench_pool_step_times_each_pool_size_and_the_batch_reference(tiny_overrides) -> None:
    from negscale.bench import bench_pool_step

    rows = bench_pool_step(
        [4, 512], [*tiny_overrides, "negatives.pool_exact_max=64"], steps=1, warmup=1
    )
    assert [(r["source"], r["m"], r["mode"]) for r in rows] == [
        ("pool", 4, "exact"),
        ("pool", 512, "estimator"),
        ("batch", 63, "in-batch"),
    ]
    assert rows[0]["ratio"] == 1.0 and all(r["step_ms"] > 0 for r in rows)
