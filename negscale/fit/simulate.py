"""Studies with a known answer: the fitter's yardstick.

A simulated study is a noise-free law f(m, n) (the metric a run would reach
with infinite seeds), a design (the m levels per n, the seeds per cell) and a
noise model; its runs are draws of f plus noise. Because f is known, the true
saturation point m_sat(ε) follows from the definition itself, evaluated on
the noise-free curve at the ε the fit used, so an interval can be scored:
did it hold the truth, how wide was it, by how far did it miss.

The families are the shapes real studies produce (soft and sharp knees,
seeds piled at one level as an adaptive study leaves them, the paper's five
levels with one run each, uneven levels, a diverged seed, a top that
declines, curves that never saturate in range or are flat from the start, a
lower-is-better loss, several n with a known exponent γ, two noisy seeds, two
knees). Each draw picks its parameters at random, so the
truth falls anywhere between the tested levels. Nothing here imports the
fitter: the yardstick must not share its assumptions.

Why one module of about 500 lines: the twenty-one families are data (a law, a
design, a noise model each) next to the truth they are scored against.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.special import expit

Curve = Callable[[np.ndarray, float], np.ndarray]  # f(m, n), the metric in its own units
_SIM = "negscale_simulation"  # table.attrs key: the design, seeds and noise sd it was drawn with


@dataclass
class Study:
    """One simulated study: its runs, how to fit them, and the truth."""

    family: str
    table: pd.DataFrame  # m, n, seed, the metric, setting, run_id
    metric: str
    curve: Curve  # the noise-free metric f(m, n)
    higher_is_better: bool
    gamma: float | None = None  # the true exponent of m_sat in n, when the law has one
    fit_kwargs: dict = field(default_factory=dict)  # what a user would pass (tolerance, ...)

    @property
    def design(self) -> dict[float, np.ndarray]:
        """The tested levels per n (as drawn)."""
        return self.table.attrs[_SIM]["design"]

    @property
    def seeds(self) -> int:
        return self.table.attrs[_SIM]["seeds"]

    def run(self, m: float, n: float, seed: int, key: int = 0) -> dict:
        """One more run at (m, n, seed): the law plus its noise (Gaussian, the
        family's sd at m), reproducible from (m, n, seed, key)."""
        sd = float(np.asarray(self.table.attrs[_SIM]["sigma"](np.array([m]), n))[0])
        rng = np.random.default_rng([int(m), int(n), int(seed), int(key), 7])
        value = float(self.curve(np.array([float(m)]), n)[0]) + sd * rng.standard_normal()
        run_id = f"sim-{int(m)}-{int(n)}-{int(seed)}"
        return {"m": float(m), "n": float(n), "seed": int(seed), self.metric: value,
                "setting": "self-supervised", "run_id": run_id}  # fmt: skip

    def truth(self, n: float, eps: float) -> float:
        """The true m_sat(ε) at n: the definition applied to the noise-free curve."""
        sign = 1.0 if self.higher_is_better else -1.0
        return true_m_sat(lambda m: sign * self.curve(m, n), eps)


def true_m_sat(score: Callable[[np.ndarray], np.ndarray], eps: float) -> float:
    """Smallest m such that every doubling from any m' ≥ m gains at most ε.

    ``score`` is higher-is-better. Evaluated on a log grid from 2⁻²⁰ to 2⁶⁰
    (64 points a doubling), the last grid point whose doubling gains more
    than ε is refined by bisection. 0 when no doubling anywhere gains more
    than ε; ∞ when the gain still exceeds ε at the grid's top.
    """
    t = np.linspace(-20.0, 60.0, 80 * 64 + 1)

    def gain(tt: np.ndarray) -> np.ndarray:
        return score(2.0 ** (tt + 1.0)) - score(2.0**tt)

    over = gain(t) > eps
    if not over.any():
        return 0.0
    last = int(np.nonzero(over)[0][-1])
    if last == t.size - 1:
        return float("inf")
    lo, hi = t[last], t[last + 1]  # gain(lo) > ε ≥ gain(hi)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if gain(np.array([mid]))[0] > eps:
            lo = mid
        else:
            hi = mid
    return float(2.0**hi)


# ------------------------------------------------------------------ shapes
def hill(m: np.ndarray, m0: float, h: float) -> np.ndarray:
    """A rise from 0 to 1 around m0, steepness h in log m (a knee)."""
    return expit(h * np.log(np.asarray(m, float) / m0))


def hill_m0_for(m_star: float, h: float, amp: float, eps: float) -> float:
    """The m0 that puts a Hill rise of amplitude ``amp``'s crossing near m_star.

    Past the knee the gain per doubling is about amp(1 − 2^(−h))(m/m0)^(−h);
    solving it for ε gives m0. The exact truth is computed from the curve
    afterwards, so this only aims the draw.
    """
    ratio = max(amp * (1.0 - 2.0 ** (-h)) / eps, 1.0 + 1e-9)
    return m_star / ratio ** (1.0 / h)


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


# ------------------------------------------------------------------ designs
def doubling_levels(lo: float, count: int) -> np.ndarray:
    return lo * 2.0 ** np.arange(count)


QUICKSTART_LEVELS = np.array([1, 3, 8, 20, 50, 130, 319], float)


def dense_levels(rng: np.random.Generator) -> np.ndarray:
    """A recipe-style grid: doubling from 1 (8 to 11 levels), or the quickstart's
    seven levels at about 2.5x."""
    if rng.random() < 0.35:
        return QUICKSTART_LEVELS.copy()
    return doubling_levels(1.0, int(rng.integers(8, 12)))


def runs(
    curve: Curve,
    design: dict[float, np.ndarray],
    seeds: int,
    sigma: Callable[[np.ndarray, float], np.ndarray],
    rng: np.random.Generator,
    metric: str,
    setting: str = "self-supervised",
    seeds_at: Callable[[float], int] | None = None,
) -> pd.DataFrame:
    """Every (n, m, seed) run: f(m, n) plus Gaussian noise of sd σ(m, n); ``seeds`` a
    cell, or ``seeds_at(m)`` where the design is unbalanced."""
    rows = []
    for n, levels in design.items():
        levels = np.asarray(levels, float)
        f = curve(levels, n)
        sd = sigma(levels, n)
        for s in range(seeds):
            noisy = f + sd * rng.standard_normal(levels.size)
            for m, v in zip(levels, noisy, strict=True):
                if seeds_at is None or s < seeds_at(float(m)):
                    rows.append({"m": float(m), "n": float(n), "seed": s, metric: float(v)})
    df = pd.DataFrame(rows)
    df["setting"] = setting
    df["run_id"] = [f"sim{i:04d}" for i in range(len(df))]
    df.attrs[_SIM] = {"design": design, "seeds": seeds, "sigma": sigma}
    return df


def _sigma(base: float, hetero: float, m_min: float) -> Callable[[np.ndarray, float], np.ndarray]:
    """Noise sd: ``base``, larger at small m when ``hetero`` > 0 (small-m runs
    are less stable in real studies)."""
    return lambda m, n: base * (1.0 + hetero * (np.asarray(m, float) / m_min) ** -0.5)


# ------------------------------------------------------------------ families
def _knee(rng: np.random.Generator, h_range: tuple[float, float], family: str) -> Study:
    """One n, a dense grid, 3 seeds, default ε (the pooled seed noise)."""
    levels = dense_levels(rng)
    amp = rng.uniform(0.05, 0.4)
    sd = amp * _log_uniform(rng, 0.004, 0.03)
    h = rng.uniform(*h_range)
    m_star = _log_uniform(rng, levels[1], levels[-2])
    m0 = hill_m0_for(m_star, h, amp, sd)
    base = rng.uniform(0.5, 0.95 - amp)

    def curve(m: np.ndarray, n: float) -> np.ndarray:
        return base + amp * hill(m, m0, h)

    hetero = float(rng.choice([0.0, 0.0, 2.0]))
    table = runs(curve, {4096.0: levels}, 3, _sigma(sd, hetero, levels[0]), rng, "auc")
    return Study(family, table, "auc", curve, True)


def soft_knee(rng: np.random.Generator) -> Study:
    return _knee(rng, (0.6, 1.5), "soft knee")


def piled_seeds(rng: np.random.Generator) -> Study:
    """What an adaptive study leaves behind: a soft knee whose seeds are piled at one
    level near the crossing (7 there, 1 at every other level), so ε and the levels'
    noise rest on that one cell."""
    levels = dense_levels(rng)
    amp = rng.uniform(0.05, 0.4)
    sd = amp * _log_uniform(rng, 0.004, 0.03)
    h = rng.uniform(0.6, 1.5)
    m_star = _log_uniform(rng, levels[1], levels[-2])
    m0 = hill_m0_for(m_star, h, amp, sd)
    base = rng.uniform(0.5, 0.95 - amp)
    pile = float(levels[np.argmin(np.abs(np.log(levels / m_star)))])

    def curve(m: np.ndarray, n: float) -> np.ndarray:
        return base + amp * hill(m, m0, h)

    table = runs(curve, {4096.0: levels}, 7, _sigma(sd, 0.0, levels[0]), rng, "auc",
                 seeds_at=lambda m: 7 if m == pile else 1)  # fmt: skip
    return Study("seeds piled at one level", table, "auc", curve, True)


def sharp_knee(rng: np.random.Generator) -> Study:
    return _knee(rng, (2.5, 6.0), "sharp knee")


def paper_figure(rng: np.random.Generator) -> Study:
    """The paper's design: m = 1, 10, 40, 70, 100 % of n at n = 6M, 10M, 14M,
    one run per cell, percent, steep then flat, m_sat ∝ n (γ = 1); ε is given
    (without seeds the noise cannot set it)."""
    ratios = np.array([0.01, 0.10, 0.40, 0.70, 1.00])
    ns = (6e6, 10e6, 14e6)
    h = rng.uniform(2.0, 4.5)
    amp = rng.uniform(25.0, 40.0)
    eps = 0.5
    star_ratio = _log_uniform(rng, 0.05, 0.6)
    m0_ratio = hill_m0_for(star_ratio, h, amp, eps)
    top = rng.uniform(45.0, 60.0)

    def curve(m: np.ndarray, n: float) -> np.ndarray:
        return top - 8.0 * (n / 6e6) ** -0.5 - amp * (1.0 - hill(np.asarray(m) / n, m0_ratio, h))

    sd = rng.uniform(0.1, 0.3)
    design = {n: ratios * n for n in ns}
    table = runs(curve, design, 1, lambda m, n: np.full(np.shape(m), sd), rng, "top1")
    return Study("paper's 5 levels", table, "top1", curve, True, 1.0, {"tolerance": eps})


def uneven_levels(rng: np.random.Generator) -> Study:
    """Levels far apart (1, 2, 4, 200, 3000 or 1, 2, 3, 50, 1000), 1 to 3 seeds."""
    levels = np.array([1, 2, 4, 200, 3000] if rng.random() < 0.5 else [1, 2, 3, 50, 1000], float)
    seeds = int(rng.integers(1, 4))
    amp, h = rng.uniform(0.1, 0.3), rng.uniform(0.8, 3.0)
    sd = amp * _log_uniform(rng, 0.005, 0.02)
    eps = float(amp * _log_uniform(rng, 0.01, 0.05))
    m_star = _log_uniform(rng, 2.0, levels[-1] / 2)
    m0 = hill_m0_for(m_star, h, amp, eps)

    def curve(m: np.ndarray, n: float) -> np.ndarray:
        return 0.6 + amp * hill(m, m0, h)

    table = runs(curve, {8192.0: levels}, seeds, _sigma(sd, 0.0, 1.0), rng, "auc")
    return Study("uneven levels", table, "auc", curve, True, None, {"tolerance": eps})


def diverged_seed(rng: np.random.Generator) -> Study:
    """A knee study where one run diverged but was recorded ok (near chance)."""
    st = _knee(rng, (0.8, 4.0), "one diverged seed")
    t = st.table
    i = int(rng.integers(len(t)))
    t.loc[i, "auc"] = rng.uniform(0.5, 0.6)
    return st


def declining_top(rng: np.random.Generator) -> Study:
    """Too many negatives hurt past some m (SigLIP at very large batches)."""
    levels = doubling_levels(1.0, int(rng.integers(9, 12)))
    amp = rng.uniform(0.05, 0.3)
    sd = amp * _log_uniform(rng, 0.005, 0.02)
    h = rng.uniform(0.8, 4.0)
    m_star = _log_uniform(rng, 4.0, levels[-1] / 16)
    m0 = hill_m0_for(m_star, h, amp, sd)
    m_fall = m_star * _log_uniform(rng, 2.0, 6.0)
    drop = sd * rng.uniform(4.0, 12.0)
    span = np.log(levels[-1] / m_fall)

    def curve(m: np.ndarray, n: float) -> np.ndarray:
        past = np.clip(np.log(np.asarray(m, float) / m_fall) / span, 0.0, None)
        return 0.7 + amp * hill(m, m0, h) - drop * past**1.5

    table = runs(curve, {4096.0: levels}, 3, _sigma(sd, 0.0, 1.0), rng, "auc")
    return Study("declining top", table, "auc", curve, True)


def never_saturating(rng: np.random.Generator) -> Study:
    """A slow power law whose gain per doubling stays above ε in the tested range."""
    levels = dense_levels(rng)
    a = rng.uniform(0.1, 0.35)
    sd = _log_uniform(rng, 0.001, 0.004)
    m_star = levels[-1] * _log_uniform(rng, 2.0, 50.0)
    amp = sd * m_star**a / (1.0 - 2.0**-a)  # the gain at m_star equals the noise sd

    def curve(m: np.ndarray, n: float) -> np.ndarray:
        return 0.95 - amp * np.asarray(m, float) ** -a

    table = runs(curve, {4096.0: levels}, 3, _sigma(sd, 0.0, 1.0), rng, "auc")
    return Study("never saturating", table, "auc", curve, True)


def flat_from_start(rng: np.random.Generator) -> Study:
    """Saturated before the smallest m tested: every doubling gains less than ε."""
    levels = dense_levels(rng) * float(rng.choice([1.0, 4.0]))
    amp = rng.uniform(0.02, 0.2)
    sd = amp * _log_uniform(rng, 0.01, 0.05)
    h = rng.uniform(0.8, 3.0)
    m0 = hill_m0_for(levels[0] * _log_uniform(rng, 0.05, 0.7), h, amp, sd)

    def curve(m: np.ndarray, n: float) -> np.ndarray:
        return 0.6 + amp * hill(m, m0, h)

    table = runs(curve, {4096.0: levels}, 3, _sigma(sd, 0.0, 1.0), rng, "auc")
    return Study("flat from the start", table, "auc", curve, True)


def lower_is_better_loss(rng: np.random.Generator) -> Study:
    """A held-out loss that falls with m toward a floor (lower is better)."""
    levels = dense_levels(rng)
    amp = rng.uniform(0.3, 2.0)
    sd = amp * _log_uniform(rng, 0.004, 0.02)
    h = rng.uniform(0.7, 3.0)
    m0 = hill_m0_for(_log_uniform(rng, levels[1], levels[-2]), h, amp, sd)
    floor = rng.uniform(1.0, 4.0)

    def curve(m: np.ndarray, n: float) -> np.ndarray:
        return floor + amp * (1.0 - hill(m, m0, h))

    table = runs(curve, {4096.0: levels}, 3, _sigma(sd, 0.0, 1.0), rng, "val_loss")
    return Study("lower-is-better loss", table, "val_loss", curve, False)


def _scaling(rng: np.random.Generator, gamma: float) -> Study:
    """Three to five n (up to 1e3 … 1e7), m_sat ∝ n^γ exactly, 3 seeds."""
    k = int(rng.integers(3, 6))
    ns = 1024.0 * 4.0 ** np.arange(k) if rng.random() < 0.5 else 1e3 * 10.0 ** np.arange(k)
    amp, h = rng.uniform(0.08, 0.3), rng.uniform(0.8, 3.0)
    sd = amp * _log_uniform(rng, 0.005, 0.02)
    eps = sd  # given, so m_sat ∝ n^γ holds exactly at the ε the fit uses
    star0 = _log_uniform(rng, 4.0, 32.0)
    m0_0 = hill_m0_for(star0, h, amp, eps)

    def curve(m: np.ndarray, n: float) -> np.ndarray:
        m0 = m0_0 * (n / ns[0]) ** gamma
        return 0.9 - 0.3 * (n / ns[0]) ** -0.3 + amp * (hill(m, m0, h) - 1.0)

    design = {}
    for n in ns:
        centre = star0 * (n / ns[0]) ** gamma
        first = max(1.0, 2.0 ** np.floor(np.log2(centre) - rng.uniform(3.0, 6.0)))
        design[n] = doubling_levels(first, int(rng.integers(8, 11)))
    table = runs(curve, design, 3, _sigma(sd, 0.0, 1.0), rng, "auc")
    return Study(f"several n, γ = {gamma:g}", table, "auc", curve, True, gamma, {"tolerance": eps})


def scaling_half(rng: np.random.Generator) -> Study:
    return _scaling(rng, 0.5)


def scaling_one(rng: np.random.Generator) -> Study:
    return _scaling(rng, 1.0)


def two_noisy_seeds(rng: np.random.Generator) -> Study:
    """Two seeds a cell and more noise: the default ε rests on little."""
    levels = dense_levels(rng)
    amp, h = rng.uniform(0.05, 0.3), rng.uniform(0.7, 4.0)
    sd = amp * _log_uniform(rng, 0.02, 0.06)
    m0 = hill_m0_for(_log_uniform(rng, levels[1], levels[-2]), h, amp, sd)

    def curve(m: np.ndarray, n: float) -> np.ndarray:
        return 0.65 + amp * hill(m, m0, h)

    table = runs(curve, {4096.0: levels}, 2, _sigma(sd, 0.0, 1.0), rng, "auc")
    return Study("2 noisy seeds", table, "auc", curve, True)


def two_knees(rng: np.random.Generator) -> Study:
    """Two rises far apart: a plateau, then a second, smaller rise."""
    levels = doubling_levels(1.0, int(rng.integers(10, 13)))
    a1, a2 = rng.uniform(0.1, 0.3), 0.0
    a2 = a1 * rng.uniform(0.1, 0.3)
    sd = a2 * _log_uniform(rng, 0.02, 0.08)
    h1, h2 = rng.uniform(1.5, 4.0), rng.uniform(1.5, 4.0)
    m01 = _log_uniform(rng, 1.5, 4.0)
    m02 = hill_m0_for(_log_uniform(rng, 64.0, levels[-2]), h2, a2, sd)

    def curve(m: np.ndarray, n: float) -> np.ndarray:
        return 0.6 + a1 * hill(m, m01, h1) + a2 * hill(m, m02, h2)

    table = runs(curve, {4096.0: levels}, 3, _sigma(sd, 0.0, 1.0), rng, "auc")
    return Study("two knees", table, "auc", curve, True)


def power_tail(rng: np.random.Generator) -> Study:
    """score = E − A·(m/m_min)^(−a): a pure power law whose gain per doubling
    falls to the noise sd inside the tested range."""
    levels = dense_levels(rng)
    a = rng.uniform(0.3, 1.5)
    amp = rng.uniform(0.1, 0.4)  # the gap to the plateau at the smallest m
    m_star = _log_uniform(rng, levels[1], levels[-2])
    sd = amp * (1.0 - 2.0**-a) * (m_star / levels[0]) ** -a

    def curve(m: np.ndarray, n: float) -> np.ndarray:
        return 0.95 - amp * (np.asarray(m, float) / levels[0]) ** -a

    table = runs(curve, {4096.0: levels}, 3, _sigma(sd, 0.0, 1.0), rng, "auc")
    return Study("power-law tail", table, "auc", curve, True)


def exp_tail(rng: np.random.Generator) -> Study:
    """score = E − A·exp(−m/s): an exponential approach to the plateau."""
    levels = dense_levels(rng)
    amp = rng.uniform(0.05, 0.3)
    sd = amp * _log_uniform(rng, 0.004, 0.03)
    m_star = _log_uniform(rng, levels[1], levels[-2])
    s = m_star / np.log(amp / (4.0 * sd))  # the gain ≈ A·exp(−m/s) is ε near m_star

    def curve(m: np.ndarray, n: float) -> np.ndarray:
        return 0.6 + amp * (1.0 - np.exp(-np.asarray(m, float) / s))

    table = runs(curve, {4096.0: levels}, 3, _sigma(sd, 0.0, 1.0), rng, "auc")
    return Study("exponential tail", table, "auc", curve, True)


def log_linear(rng: np.random.Generator) -> Study:
    """Linear in log m up to a break, exactly flat past it (a broken stick):
    a kink no smooth form follows."""
    levels = dense_levels(rng)
    sd = _log_uniform(rng, 0.001, 0.005)
    slope = sd * rng.uniform(3.0, 15.0)  # gain per doubling on the rise
    brk = _log_uniform(rng, levels[1], levels[-2])

    def curve(m: np.ndarray, n: float) -> np.ndarray:
        return 0.7 + slope * np.minimum(np.log2(np.asarray(m, float) / brk), 0.0)

    table = runs(curve, {4096.0: levels}, 3, _sigma(sd, 0.0, 1.0), rng, "auc")
    return Study("log-linear, then flat", table, "auc", curve, True)


def ten_seeds(rng: np.random.Generator) -> Study:
    """A knee with 10 seeds a cell: little noise in the centres."""
    levels = dense_levels(rng)
    amp, h = rng.uniform(0.05, 0.3), rng.uniform(0.7, 4.0)
    sd = amp * _log_uniform(rng, 0.005, 0.03)
    m0 = hill_m0_for(_log_uniform(rng, levels[1], levels[-2]), h, amp, sd)

    def curve(m: np.ndarray, n: float) -> np.ndarray:
        return 0.6 + amp * hill(m, m0, h)

    table = runs(curve, {4096.0: levels}, 10, _sigma(sd, 0.0, 1.0), rng, "auc")
    return Study("10 seeds", table, "auc", curve, True)


def truth_at_a_level(rng: np.random.Generator) -> Study:
    """The true m_sat sits exactly on a tested level (ε given so it stays there)."""
    levels = doubling_levels(1.0, int(rng.integers(8, 11)))
    amp, h = rng.uniform(0.05, 0.3), rng.uniform(0.8, 3.0)
    sd = amp * _log_uniform(rng, 0.005, 0.02)
    m_star = float(levels[int(rng.integers(2, levels.size - 2))])
    m0 = hill_m0_for(m_star, h, amp, sd)

    def curve(m: np.ndarray, n: float) -> np.ndarray:
        return 0.6 + amp * hill(m, m0, h)

    g = curve(np.array([2.0 * m_star]), 0.0)[0] - curve(np.array([m_star]), 0.0)[0]
    table = runs(curve, {4096.0: levels}, 3, _sigma(sd, 0.0, 1.0), rng, "auc")
    return Study(
        "truth at a tested level", table, "auc", curve, True, None, {"tolerance": float(g)}
    )


def heavy_tailed_noise(rng: np.random.Generator) -> Study:
    """A knee whose seeds scatter with Student-t (3 dof) noise: the odd far seed."""
    st = _knee(rng, (0.8, 4.0), "heavy-tailed noise")
    t = st.table
    f = st.curve(t["m"].to_numpy(), 4096.0)
    resid = t["auc"].to_numpy() - f
    scale = float(np.sqrt(np.mean(resid**2)))
    t["auc"] = f + scale * rng.standard_t(3, size=len(t)) / np.sqrt(3.0)
    return st


def percent_below_one(rng: np.random.Generator) -> Study:
    """A recall in percent whose values all lie below 1 (%): read as a fraction by
    the scale detection, which must not change the answer (ε and gains are in
    the metric's own units)."""
    levels = dense_levels(rng)
    amp, h = rng.uniform(0.3, 0.6), rng.uniform(0.8, 3.0)
    sd = amp * _log_uniform(rng, 0.005, 0.02)
    m0 = hill_m0_for(_log_uniform(rng, levels[1], levels[-2]), h, amp, sd)

    def curve(m: np.ndarray, n: float) -> np.ndarray:
        return 0.2 + amp * hill(m, m0, h)

    table = runs(curve, {4096.0: levels}, 3, _sigma(sd, 0.0, 1.0), rng, "recall_at_1")
    return Study("percent below 1 %", table, "recall_at_1", curve, True)


FAMILIES: dict[str, Callable[[np.random.Generator], Study]] = {
    "soft knee": soft_knee,
    "sharp knee": sharp_knee,
    "seeds piled at one level": piled_seeds,
    "paper's 5 levels": paper_figure,
    "uneven levels": uneven_levels,
    "one diverged seed": diverged_seed,
    "declining top": declining_top,
    "never saturating": never_saturating,
    "flat from the start": flat_from_start,
    "lower-is-better loss": lower_is_better_loss,
    "several n, γ = 0.5": scaling_half,
    "several n, γ = 1": scaling_one,
    "2 noisy seeds": two_noisy_seeds,
    "two knees": two_knees,
    "power-law tail": power_tail,
    "exponential tail": exp_tail,
    "log-linear, then flat": log_linear,
    "10 seeds": ten_seeds,
    "truth at a tested level": truth_at_a_level,
    "heavy-tailed noise": heavy_tailed_noise,
    "percent below 1 %": percent_below_one,
}


def draw(family: str, seed: int) -> Study:
    """One study of ``family``, reproducible from ``seed``."""
    return FAMILIES[family](np.random.default_rng([seed, _family_key(family)]))


def _family_key(family: str) -> int:
    return sum((i + 1) * ord(c) for i, c in enumerate(family))
