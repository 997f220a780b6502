"""Inputs: results directories and CSV/Parquet tables in, one clean table of
(m, n, seed, metric) out, with every dropped row accounted for.

A path that is a directory is a negscale results directory (run records under
``runs/*.parquet``); a ``.csv``/``.parquet`` file is a table from anywhere.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from negscale.errors import NegscaleError
from negscale.fit.fmt import fmt

DROPPED_ATTR = "negscale_dropped"
_LOWER = re.compile(r"(loss|rank|error|(^|_)err($|_)|^excess_)", re.IGNORECASE)


def lower_is_better(name: str) -> bool:
    """Losses, ranks, error rates and ``excess_*`` gaps (to an oracle) fall as
    models improve; all else rises."""
    return bool(_LOWER.search(str(name)))


def _read_results_dir(path: Path) -> pd.DataFrame:
    from negscale.results import load as results_load

    return results_load(path)


def _read_one(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise NegscaleError(f"{path}: no such file or directory")
    if path.is_dir():
        df = _read_results_dir(path)
        if df.empty:
            raise NegscaleError(f"{path}: no run records found (expected {path}/runs/*.parquet)")
        return df
    suffix = path.suffix.lower()
    try:
        if suffix in (".csv", ".tsv", ".txt"):
            return pd.read_csv(path, comment="#", sep="\t" if suffix == ".tsv" else ",")
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
    except Exception as exc:  # a malformed table is the user's to fix
        raise NegscaleError(f"{path}: cannot read table ({exc})") from None
    raise NegscaleError(f"{path}: not a results directory or a .csv/.parquet table")


def _need(df: pd.DataFrame, col: str, what: str, source: str) -> None:
    if col not in df.columns:
        cols = ", ".join(map(str, df.columns[:30]))
        raise NegscaleError(f"{source}: no column {col!r} for {what} (columns: {cols})")


def load_sources(
    paths: str | Path | Iterable[str | Path],
    *,
    m_col: str = "m",
    n_col: str = "n",
    metric_col: str = "auc",
    seed_col: str | None = None,
    group_col: str | None = None,
    setting_col: str = "setting",
) -> pd.DataFrame:
    """Read results directories and tables into one DataFrame for :func:`fit`.

    Columns out: ``m``, ``n``, ``seed`` (when a seed column exists), the metric
    column under its own name, ``group_col`` and ``setting`` when present,
    ``source``. Runs whose ``status`` is not "ok" and exact duplicate run_ids
    are dropped; the reasons are kept in ``df.attrs["negscale_dropped"]`` and
    end up in the report.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    paths = [Path(p) for p in paths]
    if not paths:
        raise NegscaleError("no sources given")
    frames, dropped = [], []
    for p in paths:
        df = _read_one(p)
        src = str(p)
        for col, what in (
            (m_col, "m (--m-col)"),
            (n_col, "n (--n-col)"),
            (metric_col, "the metric"),
        ):
            _need(df, col, what, src)
        if seed_col is not None:
            _need(df, seed_col, "seeds (--seed-col)", src)
        if group_col is not None:
            _need(df, group_col, "groups (--group-col)", src)
        df, why = drop_not_ok(df, f" in {src}")
        dropped += why
        if "run_id" in df.columns:
            dup = df["run_id"].duplicated()
            if dup.any():
                dropped.append(f"{int(dup.sum())} duplicate run_id(s) in {src}")
                df = df.loc[~dup]
        out = pd.DataFrame(
            {
                "m": df[m_col].to_numpy(),
                "n": df[n_col].to_numpy(),
                metric_col: df[metric_col].to_numpy(),
            }
        )
        sc = seed_col if seed_col is not None else ("seed" if "seed" in df.columns else None)
        if sc is not None:
            out["seed"] = df[sc].to_numpy()
        if group_col is not None:
            out[group_col] = df[group_col].to_numpy()
        if setting_col in df.columns:
            out["setting"] = df[setting_col].to_numpy()
        if "design" in df.columns and group_col != "design":
            out["design"] = df["design"].to_numpy()
        if "run_id" in df.columns:
            out["run_id"] = df["run_id"].to_numpy()
        out["source"] = src
        frames.append(out)
    res = pd.concat(frames, ignore_index=True)
    if "run_id" in res.columns:
        dup = res["run_id"].notna() & res["run_id"].duplicated()
        if dup.any():
            dropped.append(f"{int(dup.sum())} run(s) found in more than one source")
            res = res.loc[~dup].reset_index(drop=True)
    if group_col != "design":
        res, why = one_design(res)
        dropped += why
    res.attrs[DROPPED_ATTR] = dropped
    return res


def drop_not_ok(df: pd.DataFrame, where: str = "") -> tuple[pd.DataFrame, list[str]]:
    """Runs whose ``status`` is not "ok" (collapsed, diverged, ...) are left out;
    each status is named with a count and its first run ids."""
    if "status" not in df.columns:
        return df, []
    bad = df["status"].astype(str) != "ok"
    why = []
    for status in sorted(df.loc[bad, "status"].astype(str).unique()):
        sub = df.loc[bad & (df["status"].astype(str) == status)]
        ids = sub["run_id"].astype(str).tolist() if "run_id" in sub.columns else []
        named = f" ({', '.join(ids[:3])}{', …' if len(ids) > 3 else ''})" if ids else ""
        why.append(f"{len(sub)} run(s) with status={status}{where}{named}")
    return df.loc[~bad], why


def one_design(df: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Keep the design (recipe minus m, n, seed) with the most runs; name the rest.

    Runs of different designs (another learning rate, a single ``negscale
    train`` run) are not extra seeds of one study. ``--group-col design``
    fits each on its own instead.
    """
    if "design" not in df.columns:
        return df, []
    df = df.assign(design=df["design"].fillna("unknown").astype(str))
    counts = df["design"].value_counts()
    if counts.size <= 1:
        return df, []
    keep = str(counts.index[0])
    rest = ", ".join(f"{d} ({k} run(s))" for d, k in counts.iloc[1:].items())
    why = [
        f"the runs hold {counts.size} designs: fitted design {keep} ({counts.iloc[0]} runs); "
        f"left out {rest}; --group-col design fits each on its own"
    ]
    return df.loc[df["design"] == keep].reset_index(drop=True), why


@dataclass
class Prepared:
    """Runs ready for fitting, in the user's units, plus what was set aside."""

    m: np.ndarray
    n: np.ndarray
    value: np.ndarray  # the metric as given
    y: np.ndarray  # the error fitted: top − value, or value for lower-is-better
    seed: np.ndarray | None
    higher_is_better: bool
    scale: str  # "percent" | "fraction" | "raw"
    top: float  # 100, 1 or 0 (lower-is-better)
    dropped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def cells(self) -> np.ndarray:
        """Cell id per run: one cell per distinct (m, n)."""
        _, inv = np.unique(np.stack([self.m, self.n], 1), axis=0, return_inverse=True)
        return inv.ravel()

    @property
    def groups(self) -> np.ndarray:
        """n-group id per run (sorted by n)."""
        return np.unique(self.n, return_inverse=True)[1].ravel()

    def to_metric(self, y: np.ndarray) -> np.ndarray:
        """Back from error units to metric units."""
        return self.top - y if self.higher_is_better else y


def prepare(
    df: pd.DataFrame,
    *,
    metric: str,
    m_col: str = "m",
    n_col: str = "n",
    seed_col: str | None = "seed",
    scale: str = "auto",
    higher_is_better: bool | None = None,
) -> Prepared:
    """Validate, drop unusable rows (with reasons) and transform to the error y."""
    if not isinstance(df, pd.DataFrame):
        raise NegscaleError("fit expects a pandas DataFrame")
    dropped = list(df.attrs.get(DROPPED_ATTR, []))
    for col, what in ((m_col, "m"), (n_col, "n"), (metric, "the metric")):
        _need(df, col, what, "input table")
    df, why = drop_not_ok(df)
    dropped += why
    m = pd.to_numeric(df[m_col], errors="coerce").to_numpy(float)
    n = pd.to_numeric(df[n_col], errors="coerce").to_numpy(float)
    v = pd.to_numeric(df[metric], errors="coerce").to_numpy(float)
    keep = np.ones(m.size, bool)
    for arr, name in ((m, m_col), (n, n_col), (v, metric)):
        bad = ~np.isfinite(arr) & keep
        if bad.any():
            dropped.append(f"{int(bad.sum())} run(s) with missing/non-numeric {name}")
            keep &= ~bad
    late = selected_at_the_end(df[keep], m_col, n_col)
    m, n, v = m[keep], n[keep], v[keep]
    seed = None
    if seed_col is not None and seed_col != "seed" and seed_col not in df.columns:
        _need(df, seed_col, "seeds", "input table")
    if seed_col is not None and seed_col in df.columns:
        seed = df[seed_col].to_numpy()[keep]
    order = canonical_order(m, n, seed, v)
    m, n, v = m[order], n[order], v[order]
    seed = None if seed is None else seed[order]
    if m.size == 0:
        raise NegscaleError(
            "no usable runs left to fit" + (f" ({'; '.join(dropped)})" if dropped else "")
        )
    if (m <= 0).any():
        raise NegscaleError(
            f"m must be positive (m is on a log axis); {int((m <= 0).sum())} run(s) have m <= 0"
        )
    if (n <= 0).any():
        raise NegscaleError(f"n must be positive; {int((n <= 0).sum())} run(s) have n <= 0")
    hib = not lower_is_better(metric) if higher_is_better is None else bool(higher_is_better)
    y, top, scale, warnings = _to_error(v, hib, scale, metric)
    return Prepared(
        m=m,
        n=n,
        value=v,
        y=y,
        seed=seed,
        higher_is_better=hib,
        scale=scale,
        top=top,
        dropped=dropped,
        warnings=late + warnings,
    )


def selected_at_the_end(df: pd.DataFrame, m_col: str, n_col: str) -> list[str]:
    """Warn where most runs at an n's largest m kept their last step's weights.

    With ``train.select = "best"`` a run whose best validation AUC came at its
    very last evaluation was still improving when the budget ran out, so that
    n's plateau may be set by the budget, not by m (docs/studies.md, Budgets).
    """
    if not {"selected_step", "steps"} <= set(df.columns):
        return []
    out = []
    for n, group in df.groupby(n_col):
        top = group[group[m_col] == group[m_col].max()]
        chosen = pd.to_numeric(top["selected_step"], errors="coerce")
        late = int((chosen == pd.to_numeric(top["steps"], errors="coerce")).sum())
        if chosen.notna().any() and 2 * late > int(chosen.notna().sum()):
            out.append(
                f"n={fmt(n)}: {late} of {int(chosen.notna().sum())} runs at the largest m "
                "kept their last step's weights (best validation AUC at the end): the budget "
                "may cap this n's plateau; check with benchmarks/bench_budget.py"
            )
    return out


def canonical_order(
    m: np.ndarray, n: np.ndarray, seed: np.ndarray | None, value: np.ndarray
) -> np.ndarray:
    """Row order by (n, m, seed, value): the bootstrap draws rows by position,
    so the same runs read in another order (a sweep's records as they finished,
    a folder's as listed) must give the same intervals."""
    keys = [value]
    if seed is not None:
        keys.append(np.unique(seed.astype(str), return_inverse=True)[1].ravel())
    return np.lexsort((*keys, m, n))


def _to_error(
    v: np.ndarray, hib: bool, scale: str, metric: str
) -> tuple[np.ndarray, float, str, list[str]]:
    """The error y fitted on a log scale: top − metric (bounded, higher is better;
    runs at the ceiling clipped) or the metric itself (lower is better, > 0)."""
    warnings: list[str] = []
    if not hib:
        if (v <= 0).any():
            raise NegscaleError(
                f"{metric} is lower-is-better and fitted on a log scale: all values must be "
                f"> 0 ({int((v <= 0).sum())} are not)"
            )
        return v.copy(), 0.0, "raw", warnings
    if scale == "auto":
        scale = "percent" if v.max() > 1.0 + 1e-9 else "fraction"
    elif scale not in ("percent", "fraction"):
        raise NegscaleError(f"unknown scale {scale!r}: use auto, percent or fraction")
    top = 100.0 if scale == "percent" else 1.0
    if v.min() < 0 or v.max() > top + 1e-9:
        raise NegscaleError(
            f"{metric} values span [{v.min():g}, {v.max():g}], outside [0, {top:g}] "
            f"for a {scale} scale (set --scale, or check --metric-col)"
        )
    y = top - v
    at_top = y <= 0
    if at_top.any():
        floor = 0.5 * float(y[~at_top].min()) if (~at_top).any() else 1e-6 * top
        warnings.append(
            f"{int(at_top.sum())} run(s) at the metric's ceiling: their error "
            f"is clipped to {floor:g} for the log fit"
        )
        y = np.where(at_top, floor, y)
    return y, top, scale, warnings


def resolve_setting(df: pd.DataFrame, setting: str) -> tuple[str, list[str]]:
    """The setting to fit under: given, read from a ``setting`` column, or
    "none" (no theory preference) when neither says."""
    valid = ("supervised", "self-supervised", "none")
    notes: list[str] = []
    col = df["setting"].dropna().astype(str).unique() if "setting" in df.columns else []
    if setting == "auto":
        if len(col) == 0:
            notes.append(
                "no setting given or recorded: fitted without a theory preference (no theory "
                "form wins ties, no theory γ); pass --setting supervised|self-supervised for one"
            )
            return "none", notes
        if len(col) > 1:
            raise NegscaleError(
                f"the runs mix settings ({', '.join(sorted(col))}); fit them separately "
                "(--group-col setting) or pass --setting"
            )
        setting = str(col[0])
    if setting not in valid:
        raise NegscaleError(f"unknown setting {setting!r}: use supervised, self-supervised or none")
    if len(col) and any(c != setting for c in col):
        notes.append(f"--setting {setting} overrides the runs' own setting ({', '.join(col)})")
    return setting, notes


def seed_sd_at_max_m(p: Prepared) -> float | None:
    """Pooled run-to-run sd of the metric at each n group's largest m (metric units)."""
    vs = []
    for g in np.unique(p.n):
        sel = p.n == g
        mm = p.m[sel].max()
        v = p.value[sel & (p.m == mm)]
        if v.size >= 2:
            vs.append(np.var(v, ddof=1))
    if not vs:
        return None
    sd = float(np.sqrt(np.mean(vs)))
    return sd if sd > 0 else None


def thin_design_warnings(p: Prepared) -> list[str]:
    """The 'meaningful sweep' checks of docs/fitting.md, as warnings."""
    out: list[str] = []
    for g in np.unique(p.n):
        sel = p.n == g
        ms = np.unique(p.m[sel])
        dec = np.log10(ms.max() / ms.min()) if ms.size > 1 else 0.0
        problems = []
        if ms.size < 7:
            problems.append(f"only {ms.size} values of m (want >= 7, doubling)")
        if dec < 2.5:
            problems.append(f"m spans {dec:.1f} decades (want >= 2.5)")
        if problems:
            out.append(f"design too thin at n={fmt(g)}: " + "; ".join(problems))
    _, counts = np.unique(np.stack([p.m, p.n], 1), axis=0, return_counts=True)
    if counts.max() < 2:
        out.append("no seeds: one run per (m, n) cell, so the noise is unknown (want >= 3 seeds)")
    elif counts.min() < 3:
        out.append(f"some (m, n) cells have {counts.min()} run(s) (want >= 3 seeds per cell)")
    ns = np.unique(p.n)
    if ns.size > 1 and (ns.size < 3 or np.log10(ns.max() / ns.min()) < 1.0):
        out.append(
            f"design too thin for the ratio: {ns.size} values of n over "
            f"{np.log10(ns.max() / ns.min()):.2f} decades (want >= 3 over >= 1 decade)"
        )
    return out


def check_sizes(p: Prepared) -> None:
    """Hard floor: without three values of m there is no curve to fit."""
    ms = np.unique(p.m)
    if ms.size < 3:
        raise NegscaleError(
            f"need at least 3 distinct values of m to fit a curve; got {ms.size} "
            f"({len(p.m)} usable run(s))"
        )
    if len(p.m) < 4:
        raise NegscaleError(f"too few runs to fit: {len(p.m)} (need at least 4)")
