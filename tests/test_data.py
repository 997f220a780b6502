"""The synthetic task: determinism, nesting over n, both flavours, the exact density ratio."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from negscale.config import DataConfig
from negscale.data import build
from negscale.errors import NegscaleError
from negscale.metrics import retrieval_metrics


def test_same_seed_same_data_and_nested_train_sets() -> None:
    a = build(DataConfig(n=300, n_eval=50))
    b = build(DataConfig(n=300, n_eval=50))
    big = build(DataConfig(n=600, n_eval=50))
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.eval.y, b.eval.y)
    assert torch.equal(big.train.x[:300], a.train.x)  # studies over n use nested subsets
    assert torch.equal(big.eval.x, a.eval.x)  # held-out pairs do not depend on n
    other = build(DataConfig(n=300, n_eval=50, seed=7))
    assert not torch.equal(other.train.x, a.train.x)


def test_vectors_flavour_shapes_and_labels() -> None:
    cfg = DataConfig(n=200, n_eval=40, classes=5, input_dim=12)
    d = build(cfg)
    assert d.train.x.shape == (200, 12) and d.train.y.shape == (200, 12)
    assert d.image.kind == d.text.kind == "vector"
    assert set(d.train.labels.tolist()) <= set(range(5)) and d.num_classes == 5


def test_images_flavour_gives_images_and_token_captions() -> None:
    cfg = DataConfig(flavour="images", n=64, n_eval=16, image_size=12, caption_len=6, vocab=5)
    d = build(cfg)
    assert d.train.x.shape == (64, 1, 12, 12) and d.train.x.dtype == torch.float32
    assert d.train.y.shape == (64, 6) and d.train.y.dtype == torch.long
    # token j lives in its own block of the vocabulary
    assert (d.train.y // 5 == torch.arange(6)).all()
    assert d.text.vocab == 30 and d.oracle is None


def _joint_log_ratio(cfg: DataConfig, centres: np.ndarray, u: np.ndarray, v: np.ndarray):
    """Brute force: log p(u, v) - log p(u) - log p(v) with (u, v) | k jointly Gaussian."""
    d = u.shape[0]
    a, s = cfg.cluster_spread**2 + cfg.noise**2, cfg.cluster_spread**2
    cov = np.block([[a * np.eye(d), s * np.eye(d)], [s * np.eye(d), a * np.eye(d)]])
    k = centres.shape[0]
    joint = [multivariate_normal(np.r_[mu, mu], cov).logpdf(np.r_[u, v]) for mu in centres]
    pu = [multivariate_normal(mu, a * np.eye(d)).logpdf(u) for mu in centres]
    pv = [multivariate_normal(mu, a * np.eye(d)).logpdf(v) for mu in centres]
    lk = -np.log(k)
    return (
        logsumexp(np.array(joint) + lk)
        - logsumexp(np.array(pu) + lk)
        - logsumexp(np.array(pv) + lk)
    )


def test_oracle_is_the_exact_density_ratio() -> None:
    cfg = DataConfig(n=20, n_eval=10, classes=3, latent_dim=2, noise=0.5)
    d = build(cfg)
    oracle = d.oracle
    got = oracle.log_ratio("eval", torch.arange(4), torch.arange(5))
    u, v = (t.numpy() for t in oracle.latents["eval"])
    centres = oracle.centres.numpy()
    for i in range(4):
        for j in range(5):
            want = _joint_log_ratio(cfg, centres, u[i], v[j])
            assert float(got[i, j]) == pytest.approx(want, rel=1e-4, abs=1e-4)


def test_oracle_scorer_ranks_better_than_chance_and_beats_a_random_scorer() -> None:
    d = build(DataConfig(n=20, n_eval=200))
    scores = d.oracle.log_ratio("eval", torch.arange(200), torch.arange(200))
    best = retrieval_metrics(torch.eye(200), scores.T.contiguous())  # rows: queries
    assert best["auc"] > 0.95 and best["recall_at_1"] > 0.2


def test_unknown_dataset_and_noise_free_oracle() -> None:
    with pytest.raises(NegscaleError, match=r"data\.name"):
        build(DataConfig(name="imagenet"))
    assert build(DataConfig(n=10, n_eval=5, noise=0)).oracle is None
