"""The embedded default task: paired views of shared latents, with a known density ratio.

Generative model (all fixed by ``data.seed``, so every run sees the same task):

    k ~ Uniform{1..K}                         class label (latent cluster)
    z = mu_k + cluster_spread * e             e ~ N(0, I_d),  mu_k ~ N(0, cluster_scale^2 I_d)
    u = z + noise * e1,   v = z + noise * e2  the two noisy views of the latent
    x = g(u),  y = h(v)                       fixed random injective nonlinear maps

``vectors`` flavour: g, h map R^d to R^D (random linear lift, then a strictly
monotone elementwise nonlinearity, then a random rotation). ``images`` flavour:
x is a small greyscale image rendered from u (tanh of a random smooth-pattern
mixture) and y a token caption quantising random projections of v.

Because g and h are injective, p(y|x) / p(y) = p(v|u) / p(v), a ratio of
Gaussian mixtures: the true score s*(x, y) = log p(v|u) - log p(v) is exact for
the vectors flavour (the Jacobian of h cancels). It gives the optimal AUC E*
and the optimal loss L* of the calibration inequality (docs/theory.md;
negscale/oracle.py computes them on the evaluation pairs of every run).

Difficulty knobs: ``noise`` (view noise: higher means a lower ceiling),
``classes`` and ``cluster_spread`` (how many look-alikes share a cluster: a
random negative is almost always from another cluster, so few negatives only
teach coarse cluster identity and the fine within-cluster ranking needs many),
``latent_dim`` and ``input_dim``. Train pairs are the first n of one fixed
stream (studies over n use nested subsets); the evaluation pairs come from a
separate stream that does not depend on n, and the validation pairs
(``train.select = "best"``) from a third, as many as the evaluation pairs.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from negscale.config import DataConfig
from negscale.data.base import Modality, PairedData, Split

_TRAIN_STREAM, _EVAL_STREAM, _VAL_STREAM = 1, 2, 3


class GaussianMixtureOracle:
    """Exact log p(v|u) - log p(v) for the latent views of a split."""

    def __init__(
        self, centres: np.ndarray, spread: float, noise: float, latents: dict[str, tuple]
    ) -> None:
        if noise <= 0:
            raise ValueError("the density ratio needs noise > 0")
        self.centres = torch.as_tensor(centres, dtype=torch.float64)
        self.view_var = spread**2 + noise**2  # var of u (or v) given k
        self.shrink = spread**2 / self.view_var  # E[z|u,k] = mu + shrink (u - mu)
        self.cond_var = spread**2 * noise**2 / self.view_var + noise**2  # var of v | u, k
        self.latents = latents

    def fingerprint(self, split: str) -> str:
        """A hash of everything ``log_ratio`` on ``split`` depends on (for caching across runs)."""
        import hashlib

        h = hashlib.sha256(repr((self.view_var, self.shrink, self.cond_var)).encode())
        for t in (self.centres, *self.latents[split]):
            h.update(t.numpy().tobytes())
        return h.hexdigest()

    @staticmethod
    def _log_normal(x: torch.Tensor, mean: torch.Tensor, var: float) -> torch.Tensor:
        d = x.shape[-1]
        sq = ((x - mean) ** 2).sum(-1)
        return -0.5 * sq / var - 0.5 * d * math.log(2 * math.pi * var)

    def log_ratio(
        self, split: str, rows: torch.Tensor, cols: torch.Tensor, *, chunk: int = 256
    ) -> torch.Tensor:
        """(len(rows), len(cols)) true log ratios, in row chunks of float64 (R, K, C) blocks.

        Squared distances are expanded (|v|^2 - 2 v.m + |m|^2), so no (R, K, C, d)
        tensor is built: the whole 1024-pair eval matrix costs a few matmuls.
        """
        u_all, v_all = self.latents[split]
        v = v_all[cols]
        mu = self.centres  # (K, d)
        d, log_pi = mu.shape[1], -math.log(mu.shape[0])
        marg = self._log_normal(v[:, None, :], mu[None], self.view_var) + log_pi  # (C, K)
        log_marg = torch.logsumexp(marg, dim=1)
        v_sq = (v**2).sum(-1)
        out = []
        for start in range(0, len(rows), chunk):
            u = u_all[rows[start : start + chunk]]
            # posterior class weights given u: (R, K)
            log_w = self._log_normal(u[:, None, :], mu[None], self.view_var) + log_pi
            log_w = log_w - torch.logsumexp(log_w, dim=1, keepdim=True)
            mean = mu[None] + self.shrink * (u[:, None, :] - mu[None])  # (R, K, d)
            # log N(v; mean, c I) + log w = const - a |mean|^2 - a |v|^2 + 2a mean.v, a = 1/(2c)
            a = 0.5 / self.cond_var
            row = log_w - 0.5 * d * math.log(2 * math.pi * self.cond_var) - a * (mean**2).sum(-1)
            logits = ((2 * a) * mean.reshape(-1, d) @ v.T).reshape(len(u), -1, len(v))
            logits += row[:, :, None]
            log_cond = torch.logsumexp(logits, dim=1) - a * v_sq[None, :]  # (R, C)
            out.append(log_cond - log_marg[None, :])
        return torch.cat(out).float() if out else torch.zeros(0, len(cols))


def _monotone(t: np.ndarray) -> np.ndarray:
    """Strictly increasing elementwise map (derivative >= 1): keeps the maps injective."""
    return t + 0.75 * np.tanh(2.0 * t)


def _lift(rng: np.random.Generator, d: int, out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    w1 = rng.normal(size=(out, d)) / math.sqrt(d)
    b1 = rng.normal(scale=0.5, size=out)
    w2, _ = np.linalg.qr(rng.normal(size=(out, out)))
    return w1, b1, w2


def _apply_lift(lift: tuple[np.ndarray, np.ndarray, np.ndarray], u: np.ndarray) -> np.ndarray:
    w1, b1, w2 = lift
    return _monotone(u @ w1.T + b1) @ w2.T


def _draw_latents(
    seed: int, stream: int, centres: np.ndarray, count: int, cfg: DataConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Item i's draws depend only on i: the first n items are the same for every count."""
    k = np.random.default_rng([seed, stream, 0]).integers(0, centres.shape[0], size=count)
    e = np.random.default_rng([seed, stream, 1]).normal(size=(count, 3, centres.shape[1]))
    z = centres[k] + cfg.cluster_spread * e[:, 0]
    return k, z + cfg.noise * e[:, 1], z + cfg.noise * e[:, 2]


def _render_images(rng_task: np.random.Generator, cfg: DataConfig):
    """Smooth random patterns, one per latent coordinate, mixed by u and squashed."""
    size = cfg.image_size
    grid = np.linspace(-1, 1, size)
    gy, gx = np.meshgrid(grid, grid, indexing="ij")
    patterns = []
    for _ in range(cfg.latent_dim):
        fx, fy = rng_task.uniform(0.5, 3.0, size=2)
        phase = rng_task.uniform(0, 2 * np.pi)
        cx, cy = rng_task.uniform(-0.6, 0.6, size=2)
        blob = np.exp(-((gx - cx) ** 2 + (gy - cy) ** 2) / 0.5)
        patterns.append(blob * np.cos(np.pi * (fx * gx + fy * gy) + phase))
    basis = np.stack(patterns).reshape(cfg.latent_dim, -1)
    basis /= np.linalg.norm(basis, axis=1, keepdims=True)

    def render(u: np.ndarray) -> np.ndarray:
        img = np.tanh((u / max(cfg.cluster_scale, 1.0)) @ basis)
        return img.reshape(-1, 1, size, size)

    return render


def _tokenizer(rng_task: np.random.Generator, cfg: DataConfig):
    """Caption token j is the quantile bin of a random projection j of v, offset by position."""
    proj = rng_task.normal(size=(cfg.caption_len, cfg.latent_dim)) / math.sqrt(cfg.latent_dim)
    scale = math.sqrt(cfg.cluster_scale**2 + cfg.cluster_spread**2 + cfg.noise**2)
    # equal-mass bins of a normal with the marginal scale of the projection
    from scipy.special import ndtri  # stats.norm.ppf, without scipy.stats' import

    edges = ndtri(np.linspace(0, 1, cfg.vocab + 1)[1:-1]) * scale

    def tokenize(v: np.ndarray) -> np.ndarray:
        bins = np.searchsorted(edges, v @ proj.T)
        return bins + cfg.vocab * np.arange(cfg.caption_len)[None, :]

    return tokenize


def build_synthetic(cfg: DataConfig) -> PairedData:
    task = np.random.default_rng([cfg.seed, 0])
    centres = task.normal(scale=cfg.cluster_scale, size=(cfg.classes, cfg.latent_dim))
    k_tr, u_tr, v_tr = _draw_latents(cfg.seed, _TRAIN_STREAM, centres, cfg.n, cfg)
    k_ev, u_ev, v_ev = _draw_latents(cfg.seed, _EVAL_STREAM, centres, cfg.n_eval, cfg)
    k_va, u_va, v_va = _draw_latents(cfg.seed, _VAL_STREAM, centres, cfg.n_eval, cfg)

    if cfg.flavour == "vectors":
        g, h = (
            _lift(task, cfg.latent_dim, cfg.input_dim),
            _lift(task, cfg.latent_dim, cfg.input_dim),
        )

        def fx(u: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(_apply_lift(g, u), dtype=torch.float32)

        def fy(v: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(_apply_lift(h, v), dtype=torch.float32)

        image = Modality("vector", dim=cfg.input_dim)
        text = Modality("vector", dim=cfg.input_dim)
    else:
        render, tokenize = _render_images(task, cfg), _tokenizer(task, cfg)

        def fx(u: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(render(u), dtype=torch.float32)

        def fy(v: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(tokenize(v), dtype=torch.long)

        image = Modality("image", shape=(1, cfg.image_size, cfg.image_size))
        text = Modality("tokens", vocab=cfg.vocab * cfg.caption_len, length=cfg.caption_len)

    train = Split(fx(u_tr), fy(v_tr), torch.as_tensor(k_tr))
    evaluation = Split(fx(u_ev), fy(v_ev), torch.as_tensor(k_ev))
    validation = Split(fx(u_va), fy(v_va), torch.as_tensor(k_va))
    oracle = None
    if cfg.flavour == "vectors" and cfg.noise > 0:
        latents = {
            "train": (torch.as_tensor(u_tr), torch.as_tensor(v_tr)),
            "eval": (torch.as_tensor(u_ev), torch.as_tensor(v_ev)),
        }
        oracle = GaussianMixtureOracle(centres, cfg.cluster_spread, cfg.noise, latents)
    return PairedData(
        train,
        evaluation,
        image,
        text,
        num_classes=cfg.classes,
        oracle=oracle,
        info={"flavour": cfg.flavour},
        val=validation,
    )
