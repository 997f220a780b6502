"""Gradient caching (train.micro_batch) against the plain step: same gradients, same state."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from negscale.config import load_recipe
from negscale.negatives.step import CachedEncoder
from negscale.train import Runtime, Trainer

SMALL = [
    "data.n=40",
    "data.n_eval=64",
    "train.batch_size=8",
    "model.hidden=16",
    "model.embed_dim=8",
    "eval.prototypes=64",
    "negatives.chunk=4",
]

CASES = {
    "batch": ([], None),
    "subsample": ([], 5),
    "independent": (["negatives.source='independent'"], 12),
    "pool-exact": (["negatives.source='pool'"], 20),
    "pool-estimator": (
        ["negatives.source='pool'", "negatives.pool_exact_max=0", "negatives.pool_batch=6"],
        30,
    ),
    "queue": (["negatives.source='queue'"], 20),
    "queue-momentum": (["negatives.source='queue'", "negatives.momentum=0.5"], 20),
}


def _trainer(extra: list[str], m: int | None, micro: int | None) -> Trainer:
    sets = [*SMALL, *extra, "model.learn_tau=true", "negatives.loss_form='paper'"]
    if micro:
        sets.append(f"train.micro_batch={micro}")
    r = load_recipe("quickstart", sets, m=m)
    return Trainer(r, Runtime(torch.device("cpu"), "fp32", False), progress=False)


def _grads(trainer: Trainer) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in trainer.model.parameters() if p.grad is not None])


def _close(a, b) -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _close(a[k], b[k])
    elif isinstance(a, torch.Tensor):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, equal_nan=True)
    else:
        assert a == b


@pytest.mark.parametrize("case", list(CASES))
def test_micro_batch_gives_the_plain_steps_gradients_and_state(case: str) -> None:
    extra, m = CASES[case]
    plain, cached = _trainer(extra, m, None), _trainer(extra, m, 3)
    assert cached.stepper.micro_batch == 3 and plain.stepper.micro_batch is None
    for t in (plain, cached):  # two steps: queues fill, pool averages get a history
        t.train_step()
        t.train_step()
    for p, q in zip(plain.model.parameters(), cached.model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    outs = []
    for t in (plain, cached):
        t.optimizer.zero_grad(set_to_none=True)
        outs.append(t.stepper(t.feed(2), 2))
    g_plain, g_cached = _grads(plain), _grads(cached)
    assert g_plain.norm() > 0 and plain.model.logit_scale.grad is not None
    assert float((g_cached - g_plain).norm() / g_plain.norm()) < 1e-5
    torch.testing.assert_close(g_cached, g_plain, rtol=1e-4, atol=1e-6)
    assert float(outs[1].loss) == pytest.approx(float(outs[0].loss), rel=1e-6)
    assert outs[1].negatives_per_anchor == outs[0].negatives_per_anchor
    _close(cached.source.state_dict(), plain.source.state_dict())


def test_replay_restores_each_chunks_rng_state() -> None:
    """With dropout, the re-run chunk must draw the masks of its first (no-graph) pass."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 5), nn.Dropout(0.5))

    def forward(x, y):
        return net(x), net(y)

    x, y, w = torch.randn(10, 6), torch.randn(10, 6), torch.randn(10, 5)
    chunks = list(zip(x.split(4), y.split(4), strict=True))
    torch.manual_seed(1)
    ref = torch.cat([torch.cat(forward(a, b), 1) for a, b in chunks])
    want = torch.autograd.grad((ref * torch.cat([w, w], 1)).sum(), list(net.parameters()))

    torch.manual_seed(1)
    cache = CachedEncoder(forward, torch.device("cpu"), torch.autocast("cpu", enabled=False))
    img, txt = cache.embed(chunks)
    torch.testing.assert_close(torch.cat([img, txt], 1), ref.detach())
    ((img * w).sum() + (txt * w).sum()).backward()
    after = torch.rand(1)  # the RNG continues from where the first pass left it ...
    cache.replay()
    got = [p.grad for p in net.parameters()]
    for g, e in zip(got, want, strict=True):
        torch.testing.assert_close(g, e)
    torch.manual_seed(1)
    for a, b in chunks:
        forward(a, b)
    assert torch.equal(torch.rand(1), after)  # ... and the replay did not move it


def test_micro_batch_is_off_by_default_and_keeps_the_run_id() -> None:
    base = load_recipe("quickstart")
    assert base.train.micro_batch is None
    assert load_recipe("quickstart", ["train.micro_batch=0"]).run_id() == base.run_id()
    assert load_recipe("quickstart", ["train.micro_batch=64"]).run_id() != base.run_id()


def test_a_cached_run_records_its_micro_batch(tmp_path, tiny_overrides) -> None:
    from negscale.train import run

    sets = [*tiny_overrides, "train.steps=3", "train.micro_batch=16"]
    rec = run(load_recipe("quickstart", sets, m=20), tmp_path, progress=False)
    assert rec.status == "ok" and rec.micro_batch == 16


def test_encoder_flops_are_counted_per_step_against_the_closed_form(tmp_path) -> None:
    """MLP towers: per pair 2 * [2 (32 h + h^2) + 2 h e] forward FLOPs (matmuls only).

    A plain step embeds B pairs with graph (3 forwards' worth); a cached one also
    runs the no-graph first pass (one more forward).
    """
    from negscale.train import run

    h, e, b = 16, 8, 32
    sets = ["data.n=128", "data.n_eval=64", f"train.batch_size={b}", "train.steps=2"]
    sets += [f"model.hidden={h}", f"model.embed_dim={e}", "eval.prototypes=64", "model.layers=2"]
    per_pair = 2 * (2 * (32 * h + h * h) + 2 * h * e)
    plain = run(load_recipe("quickstart", sets), tmp_path, progress=False)
    cached = run(
        load_recipe("quickstart", [*sets, "train.micro_batch=8"]), tmp_path, progress=False
    )
    assert plain.encoder_gflops == pytest.approx(3 * b * per_pair / 1e9)
    assert cached.encoder_gflops == pytest.approx(4 * b * per_pair / 1e9)
    total = (plain.encoder_gflops + plain.loss_gflops) * 2 / plain.train_s / 1e3
    assert plain.model_tflops == pytest.approx(total)
