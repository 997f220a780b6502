"""Ground truth in every run with an oracle: E*, L*, excess AUC and the calibration bound."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import multivariate_normal
from sklearn.metrics import roc_auc_score

from negscale import oracle
from negscale.config import DataConfig, load_recipe
from negscale.data import build
from negscale.results import load
from negscale.train import Runtime, Trainer, run

# an easy 2-d task: a tiny model gets near its optimum in a couple of seconds
EASY = [
    "data.n=1024",
    "data.n_eval=256",
    "data.latent_dim=2",
    "data.classes=4",
    "data.input_dim=8",
    "data.noise=0.5",
    "data.cluster_scale=1.5",
    "train.batch_size=128",
    "train.steps=150",
    "model.hidden=32",
    "model.embed_dim=16",
    "eval.prototypes=256",
]


def _brute_scores(cfg: DataConfig, data) -> np.ndarray:
    """s*(x_i, y_j) = log p(u_i, v_j) - log p(u_i) - log p(v_j), (u, v) | k jointly Gaussian."""
    u, v = (t.numpy() for t in data.oracle.latents["eval"])
    centres, d = data.oracle.centres.numpy(), u.shape[1]
    a, s = cfg.cluster_spread**2 + cfg.noise**2, cfg.cluster_spread**2
    cov = np.block([[a * np.eye(d), s * np.eye(d)], [s * np.eye(d), a * np.eye(d)]])
    lk = -np.log(len(centres))
    pu = logsumexp([multivariate_normal(c, a * np.eye(d)).logpdf(u) for c in centres], 0) + lk
    pv = logsumexp([multivariate_normal(c, a * np.eye(d)).logpdf(v) for c in centres], 0) + lk
    pairs = np.concatenate(np.broadcast_arrays(u[:, None], v[None, :]), axis=-1)  # (N, N, 2d)
    joint = [multivariate_normal(np.r_[c, c], cov).logpdf(pairs) for c in centres]
    return logsumexp(joint, 0) + lk - pu[:, None] - pv[None, :]


def test_oracle_columns_match_a_brute_force_computation() -> None:
    cfg = DataConfig(n=20, n_eval=40, classes=3, latent_dim=2, noise=0.6, cluster_scale=1.0)
    data, tau = build(cfg), 0.2
    s = _brute_scores(cfg, data)
    n = len(s)
    auc_rows = [roc_auc_score(np.arange(n) == i, s[i]) for i in range(n)]
    auc_cols = [roc_auc_score(np.arange(n) == j, s[:, j]) for j in range(n)]
    r1 = 0.5 * (np.mean(s.argmax(1) == np.arange(n)) + np.mean(s.argmax(0) == np.arange(n)))
    off = ~np.eye(n, dtype=bool)
    lme_rows = [logsumexp(s[i][off[i]]) - math.log(n - 1) - s[i, i] for i in range(n)]
    lme_cols = [logsumexp(s[:, j][off[j]]) - math.log(n - 1) - s[j, j] for j in range(n)]
    got = oracle.oracle_reference(data, tau)
    assert got["auc_oracle"] == pytest.approx(0.5 * (np.mean(auc_rows) + np.mean(auc_cols)))
    assert got["recall_at_1_oracle"] == pytest.approx(r1)
    assert got["loss_oracle"] == pytest.approx(-tau * np.mean(np.diag(s)), rel=1e-5)
    want_finite = tau * 0.5 * (np.mean(lme_rows) + np.mean(lme_cols))
    assert got["loss_oracle_finite"] == pytest.approx(want_finite, rel=1e-5)


def test_finite_negative_loss_of_the_true_scorer_is_biased_low() -> None:
    """Jensen: log-mean-exp over N-1 negatives underestimates L*; the bound corrects for it."""
    ref = oracle.oracle_reference(build(DataConfig(n=20, n_eval=512)), 0.1)
    bias_nats = (ref["loss_oracle_finite"] - ref["loss_oracle"]) / 0.1
    assert -1.5 < bias_nats < -0.1
    # the oracle itself has bound 0, and a noisy negative excess is clamped, never rooted
    assert oracle.calibration_bound(ref["loss_oracle_finite"], ref["loss_oracle_finite"], 0.1) == 0
    assert oracle.calibration_bound(-0.7, -0.6, 0.1) == 0.0
    assert oracle.calibration_bound(-0.5, -0.6, 0.1) == pytest.approx(math.sqrt(20 * 0.1))


def test_near_optimal_run_obeys_the_calibration_inequality(tmp_path) -> None:
    rec = run(load_recipe("quickstart", EASY), tmp_path, progress=False)
    assert rec.status == "ok"
    assert rec.auc_oracle >= rec.auc
    assert rec.excess_auc == pytest.approx(rec.auc_oracle - rec.auc)
    assert 0 <= rec.excess_auc < 0.03  # near its optimum
    assert rec.excess_auc <= rec.calibration_bound
    assert rec.val_loss_paper > rec.loss_oracle_finite  # the model is worse than s*
    want = math.sqrt((2 / rec.tau) * (rec.val_loss_paper - rec.loss_oracle_finite))
    assert rec.calibration_bound == pytest.approx(want)


def test_records_carry_oracle_columns_for_vectors_and_null_for_images(
    tmp_path, tiny_overrides
) -> None:
    vec = load_recipe("quickstart", [*tiny_overrides, "train.steps=5"])
    img = load_recipe(
        "quickstart",
        [*tiny_overrides, "train.steps=3", "data.flavour='images'", "data.image_size=8"],
    )
    run(vec, tmp_path, progress=False)
    run(img, tmp_path, progress=False)
    df = load(tmp_path).set_index("run_id")
    for col in oracle.COLUMNS:
        assert np.isfinite(df.loc[vec.run_id(), col]), col
        assert pd.isna(df.loc[img.run_id(), col]), col
    assert np.isfinite(df.loc[[vec.run_id(), img.run_id()], "val_loss_paper"]).all()


def test_val_losses_use_the_tiled_path_and_match_a_dense_reference(
    tiny_overrides, monkeypatch
) -> None:
    import negscale.losses as losses

    calls: list[int | None] = []
    original = losses.shared_tile_lse

    def spy(queries, keys, **kw):
        calls.append(kw.get("width"))
        return original(queries, keys, **kw)

    monkeypatch.setattr(losses, "shared_tile_lse", spy)
    r = load_recipe("quickstart", [*tiny_overrides, "train.steps=2", "negatives.tile=64"])
    trainer = Trainer(r, Runtime(torch.device("cpu"), "fp32", False), progress=False)
    trainer.train_step()
    trainer.train_step()
    calls.clear()
    out = trainer.evaluate()
    assert calls and set(calls) == {64}  # every val-loss LSE went through 64-column tiles
    img, txt = trainer.evaluator.embed(trainer.data.eval)
    logits = (img @ txt.T).double() / trainer.model.tau
    target = torch.arange(len(img))
    ce = 0.5 * (
        torch.nn.functional.cross_entropy(logits, target)
        + torch.nn.functional.cross_entropy(logits.T, target)
    )
    assert out["val_loss"] == pytest.approx(float(ce), rel=1e-5)
    s, n, tau = logits.numpy(), len(img), float(trainer.model.tau)
    off = ~np.eye(n, dtype=bool)
    rows = [logsumexp(s[i][off[i]]) - s[i, i] for i in range(n)]
    cols = [logsumexp(s[:, j][off[j]]) - s[j, j] for j in range(n)]
    want = tau * (0.5 * (np.mean(rows) + np.mean(cols)) - math.log(n - 1))
    assert out["val_loss_paper"] == pytest.approx(want, rel=1e-4)


def test_class_level_retrieval_counts_every_same_class_key_and_drops_the_oracle(
    tiny_overrides,
) -> None:
    r = load_recipe("quickstart", [*tiny_overrides, "train.steps=3", "eval.retrieval='class'"])
    trainer = Trainer(r, Runtime(torch.device("cpu"), "fp32", False), progress=False)
    out = trainer.evaluate()
    img, txt = trainer.evaluator.embed(trainer.data.eval)
    labels = trainer.data.eval.labels.numpy()
    scores = (img @ txt.T).numpy()
    i2t = np.mean([roc_auc_score(labels == labels[i], scores[i]) for i in range(len(labels))])
    assert out["auc_i2t"] == pytest.approx(i2t, abs=1e-6)
    assert all(out[c] is None for c in oracle.COLUMNS)
    instance = load_recipe("quickstart", [*tiny_overrides, "train.steps=3"])
    assert instance.eval.retrieval == "instance" and r.run_id() != instance.run_id()


def test_plot_calibration_writes_a_png(tmp_path) -> None:
    df = pd.DataFrame(
        {
            "n": [512, 512, 2048],
            "excess_auc": [0.01, 0.002, 0.03],
            "calibration_bound": [0.2, 0.1, 0.25],
        }
    )
    path = oracle.plot_calibration(df, tmp_path / "cal.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="oracle"):
        oracle.plot_calibration(df.assign(excess_auc=np.nan), tmp_path / "none.png")


def test_reference_is_cached_by_the_eval_split_not_by_the_run(monkeypatch) -> None:
    """Runs of a sweep (any n) share their held-out pairs: the oracle is scored once."""
    calls: list[int] = []
    original = oracle.oracle_scores
    monkeypatch.setattr(oracle, "_REFERENCES", {})
    monkeypatch.setattr(oracle, "oracle_scores", lambda d: calls.append(1) or original(d))
    small, big = build(DataConfig(n=30, n_eval=64)), build(DataConfig(n=90, n_eval=64))
    first = oracle.oracle_reference(small, 0.1)
    assert oracle.oracle_reference(big, 0.1) == first and len(calls) == 1
    oracle.oracle_reference(big, 0.2)  # another tau, another L*
    oracle.oracle_reference(build(DataConfig(n=30, n_eval=64, noise=0.5)), 0.1)  # another task
    assert len(calls) == 3


def test_fit_plot_adds_the_calibration_panel_when_runs_carry_ground_truth(tmp_path) -> None:
    """`negscale fit DIR --plot F` also writes F-calibration.png from the oracle columns."""
    from test_results import make_record
    from typer.testing import CliRunner

    from negscale.cli import app
    from negscale.results import write

    for i, m in enumerate((1, 2, 4, 8, 16, 32)):
        for seed in (0, 1):
            auc = 0.97 - 0.1 / m + 0.001 * seed
            write(
                make_record(
                    f"r{i}{seed}", m=m, n=64, seed=seed, design="d", auc=auc,
                    excess_auc=0.975 - auc, calibration_bound=1.5 - 0.01 * m,
                ),
                tmp_path / "study",
            )  # fmt: skip
    out = tmp_path / "fit.png"
    res = CliRunner().invoke(
        app, ["fit", str(tmp_path / "study"), "--plot", str(out), "--bootstrap", "0"]
    )
    assert res.exit_code == 0, res.output
    assert out.is_file() and (tmp_path / "fit-calibration.png").is_file()
    assert (tmp_path / "fit-calibration.png").read_bytes()[:4] == b"\x89PNG"
