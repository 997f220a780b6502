"""Inputs: results directories and CSV/Parquet tables in, one clean table of
(m, n, seed, metric) out, with every dropped row accounted for.

A path that is a directory is a negscale results directory (run records under
``runs/*.parquet``); a ``.csv``/``.parquet`` file is a table from anywhere.

Why one module of about 430 lines: every way a table arrives (records, CSV,
Parquet, open_clip-style columns) ends in the same accounting of dropped rows.
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
NOTES_ATTR = "negscale_notes"  # what a reader assumed (open_clip's m, n), said in the report
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


PASSED_THROUGH = ("status", "n_eval", "num_classes", "selected_step", "steps")


def load_sources(
    paths: str | Path | Iterable[str | Path],
    *,
    m_col: str = "m",
    n_col: str = "n",
    metric_col: str = "auc",
    seed_col: str | None = None,
    group_col: str | None = None,
    setting_col: str = "setting",
    ratio_col: str | None = None,
) -> pd.DataFrame:
    """Read results directories and tables into one DataFrame for :func:`fit`.

    Columns out: ``m``, ``n``, ``seed`` (when a seed column exists), the metric
    column under its own name, ``group_col`` and ``setting`` when present,
    ``status``, ``run_id`` and the columns a collapsed run's chance level and
    the budget check need, ``source``. With ``ratio_col``, m = ratio·n (a
    table that gives the pool as a share of n). Exact duplicate run_ids are
    dropped, with the reason kept in ``df.attrs["negscale_dropped"]``; runs
    that are not ``ok`` are set aside later, by :func:`prepare`.
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
        m_need = (ratio_col, "the m/n ratio (--ratio-col)") if ratio_col else (m_col, "m (--m-col)")
        for col, what in (m_need, (n_col, "n (--n-col)"), (metric_col, "the metric")):
            _need(df, col, what, src)
        if seed_col is not None:
            _need(df, seed_col, "seeds (--seed-col)", src)
        if group_col is not None:
            _need(df, group_col, "groups (--group-col)", src)
        if "run_id" in df.columns:
            dup = df["run_id"].duplicated()
            if dup.any():
                dropped.append(f"{int(dup.sum())} duplicate run_id(s) in {src}")
                df = df.loc[~dup]
        n = df[n_col].to_numpy()
        m = _ratio_times_n(df[ratio_col], n, src) if ratio_col else df[m_col].to_numpy()
        out = pd.DataFrame({"m": m, "n": n, metric_col: df[metric_col].to_numpy()})
        sc = seed_col if seed_col is not None else ("seed" if "seed" in df.columns else None)
        if sc is not None:
            out["seed"] = df[sc].to_numpy()
        if group_col is not None:
            out[group_col] = df[group_col].to_numpy()
        if setting_col in df.columns:
            out["setting"] = df[setting_col].to_numpy()
        if "design" in df.columns and group_col != "design":
            out["design"] = df["design"].to_numpy()
        for col in ("run_id", *PASSED_THROUGH):
            if col in df.columns and col not in out.columns:
                out[col] = df[col].to_numpy()
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


def _ratio_times_n(ratio: pd.Series, n: np.ndarray, src: str) -> np.ndarray:
    r = pd.to_numeric(ratio, errors="coerce").to_numpy(float)
    bad = np.isfinite(r) & ((r <= 0) | (r > 1.0 + 1e-9))
    if bad.any():
        raise NegscaleError(
            f"{src}: --ratio-col {ratio.name!r} must hold m/n in (0, 1] "
            f"({int(bad.sum())} value(s) outside, e.g. {r[bad][0]:g})"
        )
    return r * pd.to_numeric(pd.Series(n), errors="coerce").to_numpy(float)


def set_aside(
    df: pd.DataFrame, metric: str, collapsed: str = "drop"
) -> tuple[pd.DataFrame, list[str], list[dict]]:
    """Runs whose ``status`` is not "ok" are set aside, each status named with a
    count and its first run ids; per (n, m) cell, how many seeds went.

    With ``collapsed="chance"`` a collapsed run is kept at its metric's chance
    level instead (it learned nothing: that is its result), so a cell is not
    read from the seeds that happened to learn.
    """
    if "status" not in df.columns:
        return df, [], []
    status = df["status"].astype(str)
    if collapsed not in ("drop", "chance"):
        raise NegscaleError(f"--collapsed must be drop or chance, got {collapsed!r}")
    df = df.copy()
    if collapsed == "chance" and (status == "collapsed").any():
        df.loc[status == "collapsed", metric] = _chance(df.loc[status == "collapsed"], metric)
        status = status.where(status != "collapsed", "ok")
    bad = status != "ok"
    why = []
    for st in sorted(status[bad].unique()):
        sub = df.loc[bad & (status == st)]
        ids = sub["run_id"].astype(str).tolist() if "run_id" in sub.columns else []
        named = f" ({', '.join(ids[:3])}{', …' if len(ids) > 3 else ''})" if ids else ""
        hint = "; --collapsed chance counts them at the chance level" if st == "collapsed" else ""
        why.append(f"{len(sub)} run(s) with status={st} left out{named}{hint}")
    cells = []
    if bad.any() and {"m", "n"} <= set(df.columns):
        for (n, m), grp in df.loc[bad].groupby(["n", "m"]):
            cells.append({"n": float(n), "m": float(m), "left_out": len(grp),
                          "statuses": sorted(grp["status"].astype(str).unique())})  # fmt: skip
    return df.loc[~bad], why, cells


def _chance(rows: pd.DataFrame, metric: str) -> np.ndarray:
    """Each collapsed run's chance level of ``metric`` (from its held-out size)."""
    from negscale.chance import chance_levels

    out = []
    for rec in rows.to_dict("records"):
        n_eval, k = rec.get("n_eval"), rec.get("num_classes")
        levels = chance_levels(int(n_eval), None if pd.isna(k) else int(k)) if n_eval else {}
        if metric not in levels and metric != "auc":
            raise NegscaleError(
                f"--collapsed chance: no chance level of {metric} for run "
                f"{rec.get('run_id', '?')} (it needs n_eval); use --collapsed drop"
            )
        out.append(levels.get(metric, 0.5))
    return np.array(out, float)


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
    seed: np.ndarray | None
    run_id: np.ndarray | None
    higher_is_better: bool
    scale: str  # "percent" | "fraction" | "raw"
    dropped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    left_out: list[dict] = field(default_factory=list)  # per cell: seeds set aside

    @property
    def sign(self) -> float:
        """Metric → score (higher is better)."""
        return 1.0 if self.higher_is_better else -1.0


def prepare(
    df: pd.DataFrame,
    *,
    metric: str,
    m_col: str = "m",
    n_col: str = "n",
    seed_col: str | None = "seed",
    scale: str = "auto",
    higher_is_better: bool | None = None,
    collapsed: str = "drop",
) -> Prepared:
    """Validate, set aside unusable rows (with reasons) and fix the direction and scale."""
    if not isinstance(df, pd.DataFrame):
        raise NegscaleError("fit expects a pandas DataFrame")
    if metric == "train_loss":
        raise NegscaleError(
            "--metric train_loss: the training loss is not fitted, its chance level ln(m+1) "
            "grows with m, so more negatives look worse; fit val_loss (or a retrieval metric)"
        )
    dropped = list(df.attrs.get(DROPPED_ATTR, []))
    for col, what in ((m_col, "m"), (n_col, "n"), (metric, "the metric")):
        _need(df, col, what, "input table")
    df, why, left_out = set_aside(df, metric, collapsed)
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
    late = list(df.attrs.get(NOTES_ATTR, [])) + selected_at_the_end(df[keep], m_col, n_col)
    if seed_col is not None and seed_col != "seed" and seed_col not in df.columns:
        _need(df, seed_col, "seeds", "input table")
    seed = (
        df[seed_col].to_numpy()[keep] if seed_col is not None and seed_col in df.columns else None
    )
    run_id = df["run_id"].astype(str).to_numpy()[keep] if "run_id" in df.columns else None
    m, n, v = m[keep], n[keep], v[keep]
    order = canonical_order(m, n, seed, v)
    m, n, v = m[order], n[order], v[order]
    seed = None if seed is None else seed[order]
    run_id = None if run_id is None else run_id[order]
    if m.size == 0:
        raise NegscaleError(
            "no usable runs left to fit" + (f" ({'; '.join(dropped)})" if dropped else "")
        )
    _check_m_n(m, n)
    hib = not lower_is_better(metric) if higher_is_better is None else bool(higher_is_better)
    scale = _scale(v, hib, scale, metric)
    return Prepared(m, n, v, seed, run_id, hib, scale, dropped, late, left_out)


def _check_m_n(m: np.ndarray, n: np.ndarray) -> None:
    if (m <= 0).any():
        raise NegscaleError(
            f"m must be positive (m is on a log axis); {int((m <= 0).sum())} run(s) have m <= 0"
        )
    if (m < 1).any():
        raise NegscaleError(
            f"m must count negatives (>= 1); {int((m < 1).sum())} run(s) have m < 1 "
            f"(e.g. {float(m[m < 1][0]):g}): if the column holds m/n, pass it as --ratio-col COL "
            "(m = ratio·n)"
        )
    if (n <= 0).any():
        raise NegscaleError(f"n must be positive; {int((n <= 0).sum())} run(s) have n <= 0")


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


def _scale(v: np.ndarray, hib: bool, scale: str, metric: str) -> str:
    """The metric's scale: "percent" or "fraction" for a bounded higher-is-better
    metric (values checked against [0, 100] or [0, 1]), "raw" otherwise."""
    if scale not in ("auto", "percent", "fraction"):
        raise NegscaleError(f"unknown scale {scale!r}: use auto, percent or fraction")
    if not hib:
        return "raw"
    if scale == "auto":
        scale = "percent" if v.max() > 1.0 + 1e-9 else "fraction"
    top = 100.0 if scale == "percent" else 1.0
    if v.min() < 0 or v.max() > top + 1e-9:
        raise NegscaleError(
            f"{metric} values span [{v.min():g}, {v.max():g}], outside [0, {top:g}] "
            f"for a {scale} scale (set --scale, or check --metric-col)"
        )
    return scale


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
