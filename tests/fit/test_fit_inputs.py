"""Inputs: results directories and tables, and bad input never fitted silently."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from negscale.errors import NegscaleError
from negscale.fit import fit, fit_groups, load_sources

from . import laws

LAW = laws.self_supervised(E=0.05, A=0.2, B=5.0)


def _runs_dir(root: Path, df: pd.DataFrame, extra: dict | None = None) -> Path:
    """A negscale results directory: one Parquet file per run under runs/."""
    (root / "runs").mkdir(parents=True)
    for i, row in enumerate(df.to_dict("records")):
        rec = {"run_id": f"r{i:04d}", "status": "ok", "negatives": "pool", **row}
        rec.update((extra or {}).get(i, {}))
        pd.DataFrame([rec]).to_parquet(root / "runs" / f"r{i:04d}.parquet")
    return root


def test_results_directories_drop_failed_runs_with_reasons(tmp_path):
    df = laws.study(LAW, ms=2.0 ** np.arange(0, 10), ns=(1e4, 4e4), rng=0)
    bad = {0: {"status": "diverged"}, 5: {"status": "diverged"}}
    d1 = _runs_dir(tmp_path / "a", df.iloc[:30], bad)
    d2 = _runs_dir(tmp_path / "b", df.iloc[30:].reset_index(drop=True))
    # run ids repeat across the two folders here: rename the second folder's
    for f in sorted((d2 / "runs").glob("*.parquet")):
        rec = pd.read_parquet(f)
        rec["run_id"] = "b" + rec["run_id"]
        rec.to_parquet(f)
    src = load_sources([d1, d2], metric_col="auc")
    assert len(src) == len(df)  # set aside by the fit, with the cells they came from
    r = fit(src, bootstrap=0, tolerance=2e-3)
    assert any("status=diverged" in d for d in r.dropped)
    assert r.setting == "self-supervised"  # read from the run records
    assert r.runs == len(df) - 2
    assert any("diverged" in w for w in r.warnings)


def test_tables_with_comments_column_mapping_and_groups(tmp_path):
    df = laws.study(LAW, ms=2.0 ** np.arange(0, 10), ns=(1e4, 4e4), rng=1)
    long = pd.concat(
        [
            df.rename(columns={"m": "negs", "n": "pairs", "auc": "value"}).assign(metric="auc"),
            df.assign(value=lambda d: 3.0 - 2.0 * d["auc"])
            .rename(columns={"m": "negs", "n": "pairs"})
            .drop(columns="auc")
            .assign(metric="val_loss"),
        ]
    )
    path = tmp_path / "table.csv"
    path.write_text("# a published table\n" + long.to_csv(index=False))
    src = load_sources([path], m_col="negs", n_col="pairs", metric_col="value", group_col="metric")
    reports = fit_groups(src, "metric", metric="value", bootstrap=0, tolerance=2e-3)
    assert [v for v, _ in reports] == ["auc", "val_loss"]
    auc, loss = reports[0][1], reports[1][1]
    assert auc.higher_is_better and not loss.higher_is_better  # from the group's name
    assert loss.to_dict()["metric"] == "val_loss"


def test_parquet_tables_load(tmp_path):
    df = laws.study(LAW, ms=2.0 ** np.arange(0, 8), ns=(1e4,), rng=2)
    df.to_parquet(tmp_path / "t.parquet")
    src = load_sources(tmp_path / "t.parquet", metric_col="auc")
    assert len(src) == len(df) and "seed" in src.columns


def test_missing_columns_and_paths_are_clear_errors(tmp_path):
    df = laws.study(LAW, ms=2.0 ** np.arange(0, 8), ns=(1e4,), rng=2)
    df.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(NegscaleError, match="no column 'recall_at_1'"):
        load_sources(tmp_path / "t.csv", metric_col="recall_at_1")
    with pytest.raises(NegscaleError, match="--n-col"):
        load_sources(tmp_path / "t.csv", n_col="samples")
    with pytest.raises(NegscaleError, match="no such file"):
        load_sources(tmp_path / "missing.csv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(NegscaleError):
        load_sources(tmp_path / "empty")
    with pytest.raises(NegscaleError, match="no column 'mean_rank'"):
        fit(df, metric="mean_rank")


def same(a, b, rel: float = 1e-6) -> bool:
    """Equal numbers, intervals or open ends (None), to a relative tolerance."""
    if isinstance(a, tuple | list):
        return len(a) == len(b) and all(same(x, y, rel) for x, y in zip(a, b, strict=True))
    if a is None or b is None:
        return a is b
    return bool(np.isclose(a, b, rtol=rel, atol=0))


def _small(**kw) -> pd.DataFrame:
    return laws.study(LAW, ms=2.0 ** np.arange(0, 9), ns=(1e4,), rng=5, **kw)


def test_too_few_points_and_one_m_value_are_errors():
    df = _small()
    with pytest.raises(NegscaleError, match="3 distinct values of m"):
        fit(df[df.m == 4.0], bootstrap=0)
    with pytest.raises(NegscaleError, match="3 distinct values of m"):
        fit(df[df.m.isin([1.0, 2.0])], bootstrap=0)
    three = df[df.m.isin([1.0, 8.0, 64.0])].groupby("m").head(1)
    with pytest.raises(NegscaleError, match="too few runs"):
        fit(three, bootstrap=0)


def test_non_positive_m_is_an_error():
    df = _small()
    df.loc[df.index[0], "m"] = 0
    with pytest.raises(NegscaleError, match="m must be positive"):
        fit(df, bootstrap=0)
    df.loc[df.index[0], "m"] = -4
    with pytest.raises(NegscaleError, match="m must be positive"):
        fit(df, bootstrap=0)


def test_nans_are_dropped_and_reported_and_all_nan_is_an_error():
    df = _small()
    df.loc[df.index[:4], "auc"] = np.nan
    df.loc[df.index[10], "m"] = np.nan
    r = fit(df, bootstrap=0, tolerance=2e-3)
    assert r.runs == len(df) - 5
    assert any("4 run(s) with missing/non-numeric auc" in d for d in r.dropped)
    assert any("missing/non-numeric m" in w for w in r.warnings)
    df["auc"] = np.nan
    with pytest.raises(NegscaleError, match="no usable runs"):
        fit(df, bootstrap=0)


def test_a_table_without_a_setting_is_fitted_without_a_theory_preference():
    df = _small().drop(columns="setting")
    r0 = fit(df, bootstrap=0, tolerance=2e-3)
    assert r0.setting == "none"
    assert any("without a theory preference" in w for w in r0.warnings)
    r = fit(df, setting="supervised", bootstrap=0, tolerance=2e-3)
    assert r.setting == "supervised"
    mixed = _small()
    mixed.loc[mixed.index[:5], "setting"] = "supervised"
    with pytest.raises(NegscaleError, match="mix settings"):
        fit(mixed, bootstrap=0)
    with pytest.raises(NegscaleError, match="unknown setting"):
        fit(df, setting="weakly", bootstrap=0)


def test_scale_detection_and_out_of_range_values():
    df = _small()
    pct = df.assign(auc=df["auc"] * 100)
    r_frac = fit(df, bootstrap=0, tolerance=2e-3)
    r_pct = fit(pct, bootstrap=0, tolerance=0.2)
    assert (r_frac.scale, r_pct.scale) == ("fraction", "percent")
    # the same study in percent has the same m_sat under the same tolerance in percent
    a_frac, a_pct = r_frac.groups[0].answer, r_pct.groups[0].answer
    assert same(a_pct.m_sat, a_frac.m_sat) and same(a_pct.ci, a_frac.ci)
    with pytest.raises(NegscaleError, match="outside"):
        fit(pct, scale="fraction", bootstrap=0)
    with pytest.raises(NegscaleError, match="outside"):
        fit(pct.assign(auc=pct["auc"] + 50), bootstrap=0)


def test_lower_is_better_metric_is_fitted_as_is():
    df = _small()
    df["val_loss"] = 1.0 - df["auc"]  # the error itself
    r = fit(df, metric="val_loss", bootstrap=0, tolerance=2e-3)
    r_auc = fit(df, metric="auc", bootstrap=0, tolerance=2e-3)
    assert not r.higher_is_better and r.scale == "raw"
    assert same(r.groups[0].answer.ci, r_auc.groups[0].answer.ci)
    # a loss shifted by a constant has the same gains, hence the same answer
    shifted = fit(df.assign(val_loss=df["val_loss"] - 1), metric="val_loss", bootstrap=0,
                  tolerance=2e-3)  # fmt: skip
    assert same(shifted.groups[0].answer.ci, r.groups[0].answer.ci)


def test_default_tolerance_is_the_seed_sd_of_a_typical_cell():
    from scipy import stats

    df = laws.study(LAW, ns=(1e4, 4e4), rng=6)
    r = fit(df, bootstrap=0)
    var = df.groupby(["m", "n"])["auc"].var(ddof=1)  # 3 seeds a cell: 2 dof each
    ref = float(np.sqrt(np.median(var) / (stats.chi2.median(2) / 2)))
    assert r.tolerance == pytest.approx(ref)
    assert "typical cell's seed sd, of 24" in r.tolerance_source
    noisy = df.copy()  # a few very noisy cells do not move it much (a mean would)
    small = noisy["m"] == noisy["m"].min()
    noisy.loc[small, "auc"] += np.random.default_rng(1).normal(0, 0.05, small.sum())
    assert fit(noisy, bootstrap=0).tolerance < 1.5 * r.tolerance
    one = df.groupby(["m", "n"]).head(1)
    r1 = fit(one, bootstrap=0)
    assert r1.tolerance == pytest.approx(0.005)  # documented assumption: 0.5 % of the range
    assert "without seeds" in r1.tolerance_source
    with pytest.raises(NegscaleError, match="tolerance"):
        fit(df, tolerance=0.0, bootstrap=0)


def test_thin_designs_are_warned_about():
    df = laws.study(LAW, ms=[1.0, 4.0, 16.0, 64.0], ns=(1e4, 2e4), seeds=1, rng=7)
    r = fit(df, bootstrap=0)
    text = " ".join(r.warnings)
    assert "only 4 values of m" in text
    assert "no seeds" in text
    assert "2 values of n" in text


def test_a_metric_flat_in_m_is_reported_as_saturated_from_the_start():
    # the noise sd is about 0.002; ε = 0.01 is a gain the data can rule out at every m
    df = laws.study(lambda m, n: 0.1 + 0 * m + 1 / np.sqrt(n), ns=(1e4, 4e4), rng=4)
    r = fit(df, bootstrap=100, tolerance=1e-2)
    for g in r.groups:
        a = g.answer
        assert a.status == "saturated at the smallest m" and a.m_sat is None
        assert a.ci[0] is None and a.ci[1] <= 4 * df["m"].min()  # an upper bound near the start


def test_a_named_seed_column_must_exist():
    with pytest.raises(NegscaleError, match="no column 'run_seed'"):
        fit(_small(), seed_col="run_seed", bootstrap=0)


def test_row_order_does_not_change_the_intervals():
    """The bootstrap draws rows by position: a sweep hands the fit its records
    in finishing order, a folder in listing order; both must give one answer."""
    import json

    from negscale.jsonsafe import clean

    df = laws.study(LAW, ms=2.0 ** np.arange(0, 9), ns=(1e4, 4e4, 1.6e5), rng=3)
    shuffled = df.sample(frac=1.0, random_state=7).reset_index(drop=True)
    assert not shuffled[["m", "n", "seed"]].equals(df[["m", "n", "seed"]])
    a = fit(df, bootstrap=200, tolerance=2e-3)
    b = fit(shuffled, bootstrap=200, tolerance=2e-3)
    assert json.dumps(clean(a.to_dict())) == json.dumps(clean(b.to_dict()))
    assert a.groups[0].answer.ci == b.groups[0].answer.ci  # the intervals, not only the point


def test_runs_that_kept_their_last_step_at_the_largest_m_are_flagged():
    """2 of 3 runs at n's largest m chose their last step: that n (only) is flagged."""
    df = laws.study(LAW, ns=(1e3, 1e4), rng=3)
    df["steps"] = 100
    df["selected_step"] = 60
    top = df.m == df.m.max()
    df.loc[top & (df.n == 1e3) & (df.seed < 2), "selected_step"] = 100  # 2 of 3 at the end
    df.loc[top & (df.n == 1e4) & (df.seed == 0), "selected_step"] = 100  # 1 of 3: not flagged
    df.loc[(df.m == df.m.min()) & (df.n == 1e4), "selected_step"] = 100  # not the largest m
    flagged = [w for w in fit(df, metric="auc", bootstrap=0).warnings if "last step" in w]
    assert len(flagged) == 1 and flagged[0].startswith("n=1000: 2 of 3 runs")
    plain = fit(df.drop(columns=["selected_step"]), metric="auc", bootstrap=0)
    assert not [w for w in plain.warnings if "last step" in w]  # no selection: no check
