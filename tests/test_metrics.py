"""Retrieval metrics against sklearn's roc_auc_score and a brute-force ranking."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from negscale.metrics import evaluate, mean_auc, retrieval_auc, retrieval_metrics, zeroshot_top1

roc_auc_score = pytest.importorskip("sklearn.metrics").roc_auc_score


def _pair(n: int, d: int, seed: int, noise: float) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(n, d, generator=g)
    return q, q + noise * torch.randn(n, d, generator=g)


def brute(queries: torch.Tensor, keys: torch.Tensor, labels=None) -> dict[str, float]:
    s = (queries @ keys.T).numpy()
    n = s.shape[0]
    aucs, ranks = [], []
    for i in range(n):
        pos = (np.arange(n) == i) if labels is None else (labels.numpy() == labels[i].item())
        aucs.append(roc_auc_score(pos.astype(int), s[i]))
        order = sorted(range(n), key=lambda j: (-s[i, j], pos[j]))  # ties against the positive
        ranks.append(1 + next(k for k, j in enumerate(order) if pos[j]))
    ranks = np.array(ranks)
    out = {f"recall_at_{k}": float((ranks <= k).mean()) for k in (1, 5, 10)}
    out.update(auc=float(np.mean(aucs)), mean_rank=float(ranks.mean()))
    return out


@pytest.mark.parametrize("noise", [0.3, 1.5, 4.0])
def test_instance_retrieval_matches_sklearn_and_brute_force(noise: float) -> None:
    q, k = _pair(60, 8, 0, noise)
    got = retrieval_metrics(q, k, chunk=17)  # chunking must not change anything
    want = brute(q, k)
    assert got == pytest.approx(want, abs=1e-12)


def test_instance_fast_path_equals_the_masked_path_with_ties() -> None:
    q, k = _pair(90, 4, 3, 1.0)
    q, k = q.round(), k.round()  # integer scores: many ties, the positive's among them
    unique = torch.arange(90)  # one item per class: the masked path, same positives
    assert retrieval_metrics(q, k, chunk=32) == retrieval_metrics(q, k, unique, chunk=32)


def test_label_aware_retrieval_matches_sklearn() -> None:
    q, k = _pair(50, 6, 1, 2.0)
    labels = torch.arange(50) % 7
    assert retrieval_metrics(q, k, labels) == pytest.approx(brute(q, k, labels), abs=1e-12)


def test_ties_count_half_in_auc_and_against_the_positive_in_recall() -> None:
    q = torch.ones(4, 2)
    k = torch.ones(4, 2)  # every score ties
    out = retrieval_metrics(q, k)
    assert out["auc"] == 0.5
    assert out["recall_at_1"] == 0.0
    assert out["mean_rank"] == 4.0


def test_perfect_and_reversed_scorers() -> None:
    e = torch.eye(12)
    assert retrieval_metrics(e, e)["auc"] == 1.0
    assert retrieval_metrics(e, e)["recall_at_1"] == 1.0
    assert retrieval_metrics(e, -e + 1)["auc"] == 0.0


@pytest.mark.parametrize("round_to", [None, 0])
@pytest.mark.parametrize("class_level", [False, True])
def test_selection_auc_is_evaluates_auc_bit_for_bit(round_to, class_level: bool) -> None:
    """Selection ranks steps by ``mean_auc``: it must be exactly the number ``evaluate``
    reports (a last-bit difference could pick another step), ties and chunks included."""
    q, k = _pair(70, 5, 4, 1.2)
    if round_to is not None:
        q, k = q.round(decimals=round_to), k.round(decimals=round_to)  # many ties
    labels = torch.arange(70) % 6
    want = evaluate(q, k, labels, class_level=class_level)["auc"]
    assert mean_auc(q, k, labels, class_level=class_level) == want
    by = labels if class_level else None
    assert retrieval_auc(q, k, by, chunk=16) == retrieval_metrics(q, k, by, chunk=16)["auc"]
    assert retrieval_auc(q, k, by) == pytest.approx(brute(q, k, by)["auc"], abs=1e-12)


def test_zeroshot_uses_class_prototypes() -> None:
    protos = torch.eye(3)
    proto_txt = torch.cat([protos, protos])
    proto_lab = torch.tensor([0, 1, 2, 0, 1, 2])
    imgs = torch.tensor([[1.0, 0.1, 0], [0, 0, 1.0], [0.9, 1.0, 0]])
    labels = torch.tensor([0, 2, 0])
    assert zeroshot_top1(imgs, labels, proto_txt, proto_lab) == pytest.approx(2 / 3)


def test_evaluate_reports_both_directions_and_their_mean() -> None:
    q, k = _pair(40, 5, 2, 1.0)
    out = evaluate(q, k)
    i2t, t2i = retrieval_metrics(q, k), retrieval_metrics(k, q)
    for name in i2t:
        assert out[f"{name}_i2t"] == i2t[name]
        assert out[f"{name}_t2i"] == t2i[name]
        assert out[name] == pytest.approx(0.5 * (i2t[name] + t2i[name]))
    assert out["zeroshot_top1"] is None


def test_float64_scores_with_ties_match_sklearn_exactly() -> None:
    """Scores that tie in float64 and differ below float32's resolution keep their order."""
    g = torch.Generator().manual_seed(4)
    n = 80
    q = torch.randint(-2, 3, (n, 3), generator=g).double()  # small integers: many exact ties
    k = torch.randint(-2, 3, (n, 3), generator=g).double()
    k[:, 0] += 1e-9 * torch.randint(0, 3, (n,), generator=g).double()  # lost in float32
    got = retrieval_metrics(q, k)
    s = (q @ k.T).numpy()
    want = float(np.mean([roc_auc_score((np.arange(n) == i).astype(int), s[i]) for i in range(n)]))
    assert got["auc"] == pytest.approx(want, abs=1e-12)
    as32 = retrieval_metrics(q.float(), k.float())["auc"]
    assert abs(as32 - want) > 1e-6  # float32 would merge the near-ties: a different AUC


def test_auc_by_counting_matches_sklearn_with_many_positives_and_ties() -> None:
    from negscale.metrics import auc_by_counting

    g = torch.Generator().manual_seed(9)
    scores = torch.randint(0, 6, (30, 25), generator=g).double() / 5  # heavy ties
    pos = torch.rand(30, 25, generator=g) > 0.6
    pos[0], pos[1] = True, False  # rows without negatives / without positives: NaN
    got = auc_by_counting(scores, pos)
    assert torch.isnan(got[:2]).all()
    want = [roc_auc_score(pos[i].numpy().astype(int), scores[i].numpy()) for i in range(2, 30)]
    assert got[2:].tolist() == pytest.approx(want, abs=1e-12)


def test_auc_by_counting_rank_sum_paths_match_sklearn() -> None:
    """Untied float32 rows (the rank-sum fast path) and signed zeros (equal: a tie) as sklearn."""
    from negscale.metrics import auc_by_counting

    g = torch.Generator().manual_seed(11)
    scores = torch.randn(40, 300, generator=g)
    pos = torch.rand(40, 300, generator=g) > 0.8
    got = auc_by_counting(scores, pos)
    want = [roc_auc_score(pos[i].numpy().astype(int), scores[i].numpy()) for i in range(40)]
    assert got.tolist() == pytest.approx(want, abs=1e-12)
    zeros = torch.tensor([[-0.0, 0.0, 1.0, -1.0, 0.0, -0.0]])
    mask = torch.tensor([[True, False, False, False, True, False]])
    want0 = roc_auc_score(mask[0].numpy().astype(int), zeros[0].numpy())
    assert auc_by_counting(zeros, mask).item() == pytest.approx(want0, abs=1e-12)


def test_metrics_module_does_not_import_scipy() -> None:
    import os
    import subprocess
    import sys

    code = "import sys, negscale.metrics; print('scipy' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    cmd = [sys.executable, "-c", code]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "False"


def test_instance_auc_sign_sum_equals_counting_with_ties_and_nan() -> None:
    """The one-pass sign sum against the two counting passes it replaced (and a NaN row)."""
    from negscale.metrics import _instance_auc, _positive_scores

    g = torch.Generator().manual_seed(5)
    scores = torch.randint(-3, 4, (40, 40), generator=g).float()  # ties everywhere
    p = _positive_scores(scores, 0)

    def counted() -> torch.Tensor:
        return ((scores < p).sum(1).double() + 0.5 * ((scores == p).sum(1).double() - 1)) / 39

    assert torch.equal(_instance_auc(scores, p), counted())
    scores[3, 7] = float("nan")  # torch's sign(NaN) is 0; counting: NaN equals and undercuts none
    assert torch.equal(_instance_auc(scores, p), counted())


@pytest.mark.parametrize("v", [40, 300])
def test_stacked_selection_auc_equals_each_runs_mean_auc_with_ties(v: int) -> None:
    """Runs validated together against ``mean_auc`` run by run (sklearn-checked above).
    Coordinates on a quarter grid make many exact ties and exact float32 sums, so
    the batched matrix and its transpose score every pair as the per-run path does."""
    from negscale.metrics import stacked_mean_auc

    g = torch.Generator().manual_seed(v)
    img = torch.randint(-4, 5, (3, v, 4), generator=g).float() / 4
    txt = torch.randint(-4, 5, (3, v, 4), generator=g).float() / 4
    got = stacked_mean_auc(img, txt)
    assert got is not None
    for r in range(3):
        assert got[r] == pytest.approx(mean_auc(img[r], txt[r]), abs=1e-12)
    img[1, 2, 0] = float("nan")
    assert stacked_mean_auc(img, txt) is None  # the per-run path counts NaNs
