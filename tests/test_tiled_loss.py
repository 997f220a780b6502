"""The tiled log-sum-exp against dense references: values, gradients, masks, memory."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from negscale.losses import (
    contrastive_loss,
    loss_from_lse,
    negative_lse,
    tiled_logsumexp,
)


def _tensors(*shapes: tuple[int, ...], seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [
        F.normalize(torch.randn(*s, generator=g), dim=-1).mul(3.0).requires_grad_() for s in shapes
    ]


def _grads(value: torch.Tensor, inputs: list[torch.Tensor], seed: int = 1) -> list[torch.Tensor]:
    """Gradients of a random linear functional of ``value`` (exercises the incoming grad)."""
    w = torch.rand(value.shape, generator=torch.Generator().manual_seed(seed))
    return list(torch.autograd.grad((w * value).sum(), inputs))


def _reference(q, k, keep):
    """LSE over kept entries, one anchor at a time (torch.logsumexp on a list of kept logits)."""
    rows = []
    for i in range(q.shape[0]):
        logits = torch.stack([q[i] @ k[j] for j in range(k.shape[0]) if keep[i][j]])
        rows.append(torch.logsumexp(logits, dim=0))
    return torch.stack(rows)


@pytest.mark.parametrize(
    "b,m,d,tile", [(6, 37, 8, 5), (16, 64, 4, 16), (3, 10, 16, 1), (9, 200, 32, 64), (1, 7, 3, 3)]
)
def test_shared_keys_match_dense_logsumexp(b: int, m: int, d: int, tile: int) -> None:
    q, k = _tensors((b, d), (m, d), seed=b + m)
    got = tiled_logsumexp(q, k, tile=tile)
    want = torch.logsumexp(q @ k.T, dim=1)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    for g, r in zip(_grads(got, [q, k]), _grads(want, [q, k]), strict=True):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("b,m,d,tile", [(5, 23, 6, 4), (12, 40, 8, 7)])
def test_exclude_and_mask_match_brute_force(b: int, m: int, d: int, tile: int) -> None:
    q, k = _tensors((b, d), (m, d), seed=3)
    g = torch.Generator().manual_seed(4)
    mask = torch.rand(b, m, generator=g) > 0.3
    mask[:, -1] = True  # at least one negative besides the excluded one
    exclude = torch.randint(-1, m - 1, (b,), generator=g)
    keep = [[bool(mask[i, j]) and j != int(exclude[i]) for j in range(m)] for i in range(b)]
    got = tiled_logsumexp(q, k, tile=tile, exclude=exclude, mask=mask)
    want = _reference(q, k, keep)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    for a, r in zip(_grads(got, [q, k]), _grads(want, [q, k]), strict=True):
        torch.testing.assert_close(a, r, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("b,m,rows,d,tile", [(4, 50, 9, 4, 12), (7, 13, 30, 8, 8), (2, 5, 5, 2, 1)])
def test_per_anchor_index_matches_gathered_dense(b: int, m: int, rows: int, d: int, tile: int):
    q, k = _tensors((b, d), (rows, d), seed=rows)
    index = torch.randint(0, rows, (b, m), generator=torch.Generator().manual_seed(5))
    got = tiled_logsumexp(q, k, tile=tile, index=index)
    want = torch.logsumexp(torch.einsum("bd,bmd->bm", q, k[index]), dim=1)  # repeats count
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    for a, r in zip(_grads(got, [q, k]), _grads(want, [q, k]), strict=True):
        torch.testing.assert_close(a, r, rtol=1e-5, atol=1e-5)


def test_rows_without_negatives_give_minus_inf_and_zero_gradient() -> None:
    q, k = _tensors((3, 4), (6, 4))
    mask = torch.ones(3, 6, dtype=torch.bool)
    mask[1] = False
    count = mask.sum(dim=1)
    for form in ("paper", "infonce"):
        lse = tiled_logsumexp(q, k, tile=4, mask=mask)
        assert lse[1] == float("-inf") and torch.isfinite(lse[[0, 2]]).all()
        loss = loss_from_lse(q[:, 0], lse, count, tau=0.5, form=form)
        assert float(loss[1].detach()) == 0.0
        gq, gk = torch.autograd.grad(loss.sum(), [q, k])
        assert torch.isfinite(gq).all() and torch.isfinite(gk).all()


@pytest.mark.parametrize("form", ["paper", "infonce"])
def test_contrastive_loss_tiled_equals_dense_including_tau_gradient(form: str) -> None:
    a, p, negs = _tensors((10, 8), (10, 8), (33, 8), seed=7)
    a, p, negs = (F.normalize(t, dim=-1) for t in (a, p, negs))
    leaves = [a, p, negs]
    tau_d = torch.tensor(0.2, requires_grad=True)
    tau_t = torch.tensor(0.2, requires_grad=True)
    mask = torch.rand(10, 10, generator=torch.Generator().manual_seed(8)) > 0.2
    for args, extra in (((), {}), ((), {"negative_mask": mask}), ((negs,), {})):
        dense = contrastive_loss(a, p, *args, tau=tau_d, form=form, **extra)
        tiled = contrastive_loss(a, p, *args, tau=tau_t, form=form, tile=3, **extra)
        torch.testing.assert_close(tiled, dense, rtol=1e-5, atol=1e-5)
        gd = torch.autograd.grad(dense, [*leaves, tau_d], allow_unused=True)
        gt = torch.autograd.grad(tiled, [*leaves, tau_t], allow_unused=True)
        for x, y in zip(gt, gd, strict=True):
            if y is None:
                assert x is None or float(x.abs().max()) == 0.0
            else:
                torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-5)


def test_negative_lse_counts_and_exclusion_match_brute_force() -> None:
    a, k = _tensors((6, 5), (11, 5), seed=9)
    exclude = torch.tensor([0, -1, 10, 3, 3, 12])  # 12: out of range, nothing excluded
    for tile in (None, 4):
        lse, count = negative_lse(a, k, tau=0.5, tile=tile, exclude=exclude)
        keep = [[j != int(exclude[i]) for j in range(11)] for i in range(6)]
        torch.testing.assert_close(lse, _reference(a / 0.5, k, keep), rtol=1e-5, atol=1e-5)
        assert count.tolist() == [10, 11, 10, 10, 10, 11]


def test_tiled_path_saves_no_batch_by_negatives_tensor() -> None:
    """Memory is O(B * tile): nothing of size B x M is kept for backward."""
    b, m, d, tile = 32, 512, 8, 16
    q, k = _tensors((b, d), (m, d))

    def largest_saved(fn) -> int:
        sizes: list[int] = []

        def pack(t: torch.Tensor) -> torch.Tensor:
            sizes.append(t.numel())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            fn().sum().backward()
        return max(sizes)

    assert largest_saved(lambda: tiled_logsumexp(q, k, tile=tile)) <= max(b * d, m * d, b)
    assert largest_saved(lambda: torch.logsumexp(q @ k.T, dim=1)) >= b * m  # dense does


def test_tiled_value_is_the_log_of_a_sum_of_exponentials() -> None:
    """Closed form: equal scores s give log(M) + s."""
    q = torch.ones(2, 1)
    k = torch.full((9, 1), 0.25)
    got = tiled_logsumexp(q, k, tile=2)
    assert got.tolist() == pytest.approx([math.log(9) + 0.25] * 2, rel=1e-6)


def test_bench_loss_reports_each_implementation_against_its_peer() -> None:
    from negscale.bench import bench_loss

    rows = bench_loss([32], 8, None, "cpu", tile=8, repeats=1)
    impls = {r["impl"]: r for r in rows}
    assert {"dense", "tiled"} <= set(impls) and all(r["m"] == 31 for r in rows)
    peer = impls[rows[0]["peer"]]
    assert peer["time_ratio"] == 1.0 and impls["tiled"]["tile"] == 8
    shared = bench_loss([16], 8, 64, "cpu", tile=16, repeats=1)
    assert [r["impl"] for r in shared] == ["dense", "tiled"] and shared[0]["peer"] == "dense"
    assert all(r["ms"] > 0 for r in shared)
