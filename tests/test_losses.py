"""Loss forms against a brute-force loop and against open_clip's ClipLoss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from negscale.losses import contrastive_loss, loss_from_scores


def _emb(b: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a = F.normalize(torch.randn(b, d, generator=g, dtype=torch.float64), dim=-1)
    p = F.normalize(torch.randn(b, d, generator=g, dtype=torch.float64), dim=-1)
    return a, p


def brute_paper(a: torch.Tensor, p: torch.Tensor, negs: list[list[torch.Tensor]], tau: float):
    """tau * log( (1/m) sum_j exp((s(x,y'_j) - s(x,y)) / tau) ), one anchor at a time."""
    total = 0.0
    for i in range(a.shape[0]):
        pos = float(a[i] @ p[i])
        terms = [math.exp((float(a[i] @ n) - pos) / tau) for n in negs[i]]
        total += tau * math.log(sum(terms) / len(terms))
    return total / a.shape[0]


@pytest.mark.parametrize("tau", [0.07, 0.5, 1.0])
def test_paper_form_in_batch_matches_brute_force(tau: float) -> None:
    a, p = _emb(7, 5, 0)
    negs_fwd = [[p[j] for j in range(7) if j != i] for i in range(7)]
    negs_bwd = [[a[j] for j in range(7) if j != i] for i in range(7)]
    want = 0.5 * (brute_paper(a, p, negs_fwd, tau) + brute_paper(p, a, negs_bwd, tau))
    got = contrastive_loss(a, p, tau=tau, form="paper")
    assert float(got) == pytest.approx(want, rel=1e-10)


def test_paper_form_shared_and_per_anchor_negatives_match_brute_force() -> None:
    a, p = _emb(5, 4, 1)
    shared, _ = _emb(9, 4, 2)
    want = brute_paper(a, p, [list(shared)] * 5, 0.2)
    assert float(contrastive_loss(a, p, shared, tau=0.2)) == pytest.approx(want, rel=1e-10)
    own = F.normalize(torch.randn(5, 3, 4, dtype=torch.float64), dim=-1)
    want = brute_paper(a, p, [list(own[i]) for i in range(5)], 0.2)
    assert float(contrastive_loss(a, p, own, tau=0.2)) == pytest.approx(want, rel=1e-10)


def test_mask_averages_over_the_negatives_each_anchor_keeps() -> None:
    a, p = _emb(4, 3, 3)
    shared, _ = _emb(6, 3, 4)
    mask = torch.rand(4, 6, generator=torch.Generator().manual_seed(0)) > 0.4
    mask[:, 0] = True
    negs = [[shared[j] for j in range(6) if mask[i, j]] for i in range(4)]
    got = contrastive_loss(a, p, shared, tau=0.3, negative_mask=mask)
    assert float(got) == pytest.approx(brute_paper(a, p, negs, 0.3), rel=1e-10)


def test_infonce_is_cross_entropy_with_the_positive_in_the_denominator() -> None:
    pos = torch.tensor([0.3, -0.1])
    neg = torch.tensor([[0.2, 0.1, -0.5], [0.4, 0.0, 0.1]])
    tau = 0.1
    want = [
        -math.log(
            math.exp(pos[i] / tau)
            / (math.exp(pos[i] / tau) + sum(math.exp(v / tau) for v in neg[i]))
        )
        for i in range(2)
    ]
    got = loss_from_scores(pos, neg, tau=tau, form="infonce")
    assert got.tolist() == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("batch,dim,tau", [(8, 16, 0.07), (33, 64, 0.5), (2, 3, 1.0)])
def test_infonce_in_batch_equals_open_clip_clip_loss(batch: int, dim: int, tau: float) -> None:
    open_clip_loss = pytest.importorskip("open_clip.loss")
    g = torch.Generator().manual_seed(batch)
    x = torch.randn(batch, dim, generator=g, requires_grad=True)
    y = torch.randn(batch, dim, generator=g, requires_grad=True)
    img, txt = F.normalize(x, dim=-1), F.normalize(y, dim=-1)
    ours = contrastive_loss(img, txt, tau=tau, form="infonce")
    gx, gy = torch.autograd.grad(ours, (x, y))

    x2, y2 = x.detach().clone().requires_grad_(), y.detach().clone().requires_grad_()
    ref = open_clip_loss.ClipLoss()(
        F.normalize(x2, dim=-1), F.normalize(y2, dim=-1), torch.tensor(1.0 / tau)
    )
    rx, ry = torch.autograd.grad(ref, (x2, y2))
    assert ours.item() == pytest.approx(ref.item(), abs=1e-5)
    torch.testing.assert_close(gx, rx, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gy, ry, atol=1e-5, rtol=1e-5)


def test_unknown_form_is_rejected() -> None:
    with pytest.raises(ValueError):
        loss_from_scores(torch.zeros(2), torch.zeros(2, 2), tau=1.0, form="nope")  # type: ignore[arg-type]


@pytest.mark.parametrize("negatives", [None, "shared"])
def test_scores_stay_float32_inside_bf16_autocast(negatives: str | None) -> None:
    """Autocast would run the score matmul in bf16; the loss promotes it back to fp32."""
    a, p = (t.float() for t in _emb(64, 32, 5))
    shared = _emb(128, 32, 6)[0].float() if negatives else None
    want = contrastive_loss(a, p, shared, tau=0.01, form="infonce")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = contrastive_loss(a.bfloat16(), p.bfloat16(), shared, tau=0.01, form="infonce")
        raw = (a @ p.T).dtype  # what an unprotected matmul gives here
    assert raw == torch.bfloat16
    want_bf16_inputs = contrastive_loss(
        a.bfloat16().float(), p.bfloat16().float(), shared, tau=0.01, form="infonce"
    )
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want_bf16_inputs, rtol=1e-6, atol=1e-6)
    assert abs(float(got) - float(want)) < 0.5  # only the inputs' rounding differs


# ------------------------------------------------------------ subsample


def _subsample_mask(order: torch.Tensor, m: int) -> torch.Tensor:
    """The mask SubsampleSource draws: anchor i keeps the first m items of order but itself."""
    b = len(order)
    keep = torch.zeros(b, b, dtype=torch.bool)
    for i in range(b):
        others = [int(j) for j in order if int(j) != i]
        keep[i, others[:m]] = True
    return keep


def _brute_subsample(a, p, order, m, tau, form) -> float:
    """Both directions, one anchor and one negative at a time, in float64 Python maths."""
    b, total = len(order), 0.0
    for i in range(b):
        negs = [int(j) for j in order if int(j) != i][:m]
        for x, y in ((a, p), (p, a)):
            pos = float(x[i] @ y[i]) / tau
            terms = [math.exp(float(x[i] @ y[j]) / tau) for j in negs]
            if form == "paper":
                total += tau * (math.log(sum(terms) / m) - pos)
            else:
                total += math.log(math.exp(pos) + sum(terms)) - pos
    return total / (2 * b)


@pytest.mark.parametrize("form", ["paper", "infonce"])
@pytest.mark.parametrize("m", [1, 2, 5, 11])
def test_subsample_loss_matches_masked_dense_and_brute_force(form: str, m: int) -> None:
    from negscale.losses import subsample_loss

    a, p = _emb(12, 6, m)
    order = torch.randperm(12, generator=torch.Generator().manual_seed(m))
    got = subsample_loss(a, p, order, m, tau=0.2, form=form)
    assert float(got) == pytest.approx(_brute_subsample(a, p, order, m, 0.2, form), rel=1e-10)

    x, y = (t.float().requires_grad_() for t in _emb(40, 8, 7 + m))
    tau = torch.tensor(0.07, requires_grad=True)
    order = torch.randperm(40, generator=torch.Generator().manual_seed(m))
    ours = subsample_loss(x, y, order, m, tau=tau, form=form)
    mask = _subsample_mask(order, m)
    ref = contrastive_loss(x, y, tau=tau, form=form, negative_mask=mask, symmetric=True)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    for g, r in zip(
        torch.autograd.grad(ours, [x, y, tau]), torch.autograd.grad(ref, [x, y, tau]), strict=True
    ):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("form", ["paper", "infonce"])
def test_subsample_of_all_other_items_is_the_batch_loss(form: str) -> None:
    from negscale.losses import subsample_loss

    a, p = _emb(9, 4, 3)
    order = torch.randperm(9, generator=torch.Generator().manual_seed(0))
    got = subsample_loss(a, p, order, 8, tau=0.3, form=form)
    assert float(got) == pytest.approx(float(contrastive_loss(a, p, tau=0.3, form=form)), rel=1e-12)
    with pytest.raises(ValueError, match="m <= B-1"):
        subsample_loss(a, p, order, 9, tau=0.3, form=form)
