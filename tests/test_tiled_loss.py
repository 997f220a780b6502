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

    rows = bench_loss([32], 8, None, "cpu", tile=8, repeats=1, memory=False)
    impls = {r["impl"]: r for r in rows}
    assert "tiled" in impls and all(r["m"] == 31 for r in rows)
    peer = impls[rows[0]["peer"]]
    assert peer["time_ratio"] == 1.0 and impls["tiled"]["tile"] == 8
    for r in rows:  # floor: 6 B^2 d FLOPs at the measured sgemm rate
        assert r["floor_ms"] == pytest.approx(6 * 32 * 32 * 8 / (r["sgemm_gflops"] * 1e6))
        assert r["floor_x"] == pytest.approx(r["ms"] / r["floor_ms"])
    shared = bench_loss([16], 8, 64, "cpu", tile=16, repeats=1)
    assert [r["impl"] for r in shared] == ["tiled", "dense"] and shared[0]["peer"] == "dense"
    assert all(r["ms"] > 0 for r in shared)
    assert all(r["peak_mb"] is not None for r in shared)  # measured in a child process


def test_bench_timing_leaves_the_allocator_alone(monkeypatch) -> None:
    """Only the memory child may change malloc's mmap threshold, never the timing process."""
    import negscale.bench as bench

    called: list[str] = []
    monkeypatch.setattr(bench, "_glibc_return_large_blocks", lambda: called.append("mallopt"))
    monkeypatch.setattr(bench, "_in_child", lambda func, spec: called.append(func) or {})
    rows = bench.bench_loss([16], 4, None, "cpu", repeats=1, memory=True)
    assert called == ["_memory_pass"]  # memory went to a child; this process kept malloc as is
    assert all(r["peak_mb"] is None for r in rows)


# ------------------------------------------------------- shared-tile kernel


def _masked_dense(s: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column LSE of a dense score matrix over kept entries (plain autograd)."""
    filled = s.masked_fill(~keep, float("-inf"))
    return torch.logsumexp(filled, dim=1), torch.logsumexp(filled, dim=0)


def _finite(x: torch.Tensor) -> torch.Tensor:
    return torch.where(torch.isfinite(x), x, torch.zeros_like(x))


@pytest.mark.parametrize("tau", [0.5, 0.07, 0.01, 0.003])  # 0.01 and below: online recipe
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("drop", ["none", "exclude", "mask", "both"])
def test_shared_tile_lse_both_directions_match_dense(tau: float, dtype, drop: str) -> None:
    from negscale.tiled_lse import shared_tile_lse

    b, m, d = 45, 38, 8
    g = torch.Generator().manual_seed(11)
    q = F.normalize(torch.randn(b, d, generator=g, dtype=dtype), dim=-1).requires_grad_()
    k = F.normalize(torch.randn(m, d, generator=g, dtype=dtype), dim=-1).requires_grad_()
    mask = torch.rand(b, m, generator=g) > 0.4 if drop in ("mask", "both") else None
    if mask is not None:
        mask[3], mask[:, 5] = False, False  # an empty row and an empty column
    exclude = torch.randint(-1, m, (b,), generator=g) if drop in ("exclude", "both") else None
    keep = torch.ones(b, m, dtype=torch.bool) if mask is None else mask.clone()
    if exclude is not None:
        hit = (exclude >= 0).nonzero()[:, 0]
        keep[hit, exclude[hit]] = False
    rows, cols = shared_tile_lse(q / tau, k, exclude=exclude, mask=mask, rows=7, width=5)
    want_rows, want_cols = _masked_dense((q / tau) @ k.T, keep)
    assert torch.equal(torch.isinf(rows), torch.isinf(want_rows))
    assert torch.equal(torch.isinf(cols), torch.isinf(want_cols))
    tol = {"rtol": 1e-5, "atol": 1e-5 if dtype == torch.float32 else 1e-10}
    torch.testing.assert_close(_finite(rows), _finite(want_rows), **tol)
    torch.testing.assert_close(_finite(cols), _finite(want_cols), **tol)
    w_r = torch.rand(b, generator=g, dtype=dtype)
    w_c = torch.rand(m, generator=g, dtype=dtype)

    def grads(r: torch.Tensor, c: torch.Tensor) -> list[torch.Tensor]:
        total = (w_r * _finite(r)).sum() + (w_c * _finite(c)).sum()
        return list(torch.autograd.grad(total * tau, [q, k]))  # scaled to O(1) gradients

    for got, want in zip(grads(rows, cols), grads(want_rows, want_cols), strict=True):
        torch.testing.assert_close(got, want, **tol)


@pytest.mark.parametrize("tau", [0.07, 0.01])
@pytest.mark.parametrize("tile", [None, 64, 1000])
def test_tiled_in_batch_infonce_equals_open_clip(tau: float, tile: int | None) -> None:
    open_clip_loss = pytest.importorskip("open_clip.loss")
    g = torch.Generator().manual_seed(3)
    x = torch.randn(300, 32, generator=g, requires_grad=True)
    y = torch.randn(300, 32, generator=g, requires_grad=True)
    ours = contrastive_loss(
        F.normalize(x, dim=-1), F.normalize(y, dim=-1), tau=tau, tile=tile, form="infonce"
    )
    ref = open_clip_loss.ClipLoss()(
        F.normalize(x, dim=-1), F.normalize(y, dim=-1), torch.tensor(1.0 / tau)
    )
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    for a, r in zip(
        torch.autograd.grad(ours, [x, y]), torch.autograd.grad(ref, [x, y]), strict=True
    ):
        torch.testing.assert_close(a, r, rtol=1e-5, atol=1e-5)


def _dense_in_batch(a, p, tau, form, mask):
    """Symmetric in-batch loss from one dense matrix, masks applied per direction by hand."""
    b = a.shape[0]
    keep = (
        ~torch.eye(b, dtype=torch.bool) if mask is None else mask & ~torch.eye(b, dtype=torch.bool)
    )
    if form == "infonce" and mask is None:
        keep = torch.ones(b, b, dtype=torch.bool)
    s = (a @ p.T) / tau
    pos = torch.diagonal(s)
    fwd = torch.logsumexp(s.masked_fill(~keep, float("-inf")), dim=1)
    back = torch.logsumexp(s.T.masked_fill(~keep, float("-inf")), dim=1)
    count = keep.sum(dim=1)
    if form == "infonce" and mask is None:
        return (0.5 * (fwd - pos + back - pos)).mean()
    one = loss_from_lse(pos, fwd, count, tau=tau, form=form)
    two = loss_from_lse(pos, back, count, tau=tau, form=form)
    return (0.5 * (one + two)).mean()


@pytest.mark.parametrize("form", ["paper", "infonce"])
@pytest.mark.parametrize("mask_kind", ["none", "symmetric", "asymmetric"])
@pytest.mark.parametrize("tau", [0.1, 0.01])
def test_in_batch_forms_and_masks_match_dense_reference(form: str, mask_kind: str, tau) -> None:
    g = torch.Generator().manual_seed(5)
    a = F.normalize(torch.randn(40, 6, generator=g), dim=-1).requires_grad_()
    p = F.normalize(torch.randn(40, 6, generator=g), dim=-1).requires_grad_()
    t_ours = torch.tensor(tau, requires_grad=True)
    t_ref = torch.tensor(tau, requires_grad=True)
    mask = None
    if mask_kind != "none":
        mask = torch.rand(40, 40, generator=g) > 0.5
        mask[7] = False  # pair 7 has no negative
        if mask_kind == "symmetric":
            mask = mask & mask.T
    ours = contrastive_loss(a, p, tau=t_ours, form=form, negative_mask=mask, tile=9)
    ref = _dense_in_batch(a, p, t_ref, form, mask)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    got = torch.autograd.grad(ours, [a, p, t_ours])
    want = torch.autograd.grad(ref, [a, p, t_ref])
    for x, y in zip(got, want, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-5)


def test_shared_tile_saves_no_score_matrix() -> None:
    """Both directions, backward included: the largest saved tensor is an input, not B x M."""
    from negscale.tiled_lse import shared_tile_lse

    q, k = _tensors((64, 4), (96, 4))
    sizes: list[int] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        sizes.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        r, c = shared_tile_lse(q, k, rows=16, width=16)
        (r.sum() + c.sum()).backward()
    assert max(sizes) <= 96 * 4


def test_default_in_batch_loss_keeps_no_b_by_b_tensor_for_backward() -> None:
    """val_loss's call (no tile given) is tiled too: nothing B x B is saved, any B."""
    a, p = (F.normalize(t.detach(), dim=-1).requires_grad_() for t in _tensors((600, 4), (600, 4)))
    sizes: list[int] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        sizes.append(t.numel())
        return t

    for form in ("infonce", "paper"):
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            contrastive_loss(a, p, tau=0.05, form=form).backward()
    assert max(sizes) <= 600 * 4


def test_dense_rows_without_negatives_score_zero_with_finite_gradient() -> None:
    from negscale.losses import loss_from_scores

    pos = torch.tensor([0.2, 0.4], requires_grad=True)
    neg = torch.tensor([[0.1, 0.9], [0.3, -0.2]], requires_grad=True)
    mask = torch.tensor([[True, False], [False, False]])  # anchor 1 keeps nothing
    for form in ("paper", "infonce"):
        loss = loss_from_scores(pos, neg, tau=0.1, form=form, mask=mask)
        assert float(loss[1].detach()) == 0.0
        want0 = 0.1 * (0.1 - 0.2) / 0.1 if form == "paper" else math.log1p(math.exp(-1.0))
        assert float(loss[0].detach()) == pytest.approx(want0, rel=1e-6)
        gp, gn = torch.autograd.grad(loss.sum(), [pos, neg])
        assert torch.isfinite(gp).all() and torch.isfinite(gn).all()
        assert float(gn[1].abs().sum()) == 0.0 and float(gn[0, 1]) == 0.0
