"""--suggest: the next runs follow the fit's own uncertainty, with the reason."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from negscale.cli import app
from negscale.fit import fit, suggest
from negscale.fit import simulate as sim
from negscale.fit.adaptive import start_design

runner = CliRunner()


def _study(levels, seeds=3, curve=None, sd=0.002, n=4096.0, seed=0):
    rng = np.random.default_rng(seed)
    curve = curve or (lambda m: 0.6 + 0.3 * sim.hill(m, 8.0, 4.0))  # m_sat ≈ 26 at ε = 0.002
    rows = []
    for m in levels:
        for s in range(seeds):
            auc = float(curve(np.array([m]))[0] + sd * rng.standard_normal())
            rows.append({"m": m, "n": n, "seed": s, "auc": auc})
    return pd.DataFrame(rows)


def _tested(df):
    return {(int(m), float(n), int(s)) for m, n, s in zip(df.m, df.n, df.seed, strict=True)}


def test_not_reached_asks_for_larger_m_up_to_the_cap():
    df = _study([1, 2, 4, 8, 16], curve=lambda m: 0.9 - 0.3 * m**-0.3)
    rep = fit(df, bootstrap=50)
    assert rep.groups[0].answer.status == "not reached"
    runs = suggest(rep, 4, _tested(df), cap=lambda n: 48)
    assert {s.m for s in runs} == {32, 48} and {s.seed for s in runs} == {0, 1}
    assert all("not reached by m = 16" in s.reason for s in runs)
    from negscale.fit.suggest import blocked

    capped = suggest(rep, 4, _tested(df), cap=lambda n: 16)
    assert capped == [] and "add larger m" in blocked(rep, lambda n: 16, 1.0)[0]


def test_saturated_asks_for_smaller_m():
    df = _study([64, 128, 256, 512], curve=lambda m: 0.8 + 0.0 * m)
    rep = fit(df, bootstrap=50, tolerance=0.01)
    assert rep.groups[0].answer.status == "saturated at the smallest m"
    runs = suggest(rep, 8, _tested(df), target=0.5)
    assert (
        sorted({s.m for s in runs}) == [16, 32] and "saturated already at m = 64" in runs[0].reason
    )


def test_saturated_at_m_1_with_its_upper_end_shown_is_narrowed_inside_it():
    """Nothing is smaller than m = 1, so [1, upper] is a closed interval: new levels go
    in its gaps (not halvings, and not a stop as if the m range could not close it)."""
    from negscale.fit.suggest import pinned

    def curve(m):
        return 0.72 + 0.03 * np.log2(m) * (m < 8) + 0.09 * (m >= 8)

    df = _study([1, 6, 31], curve=curve, sd=0.03, seeds=4, seed=1)
    rep = fit(df, bootstrap=50, tolerance=0.034)
    a = rep.groups[0].answer
    assert a.status == "saturated at the smallest m" and a.ci[1] == 31.0
    runs = suggest(rep, 4, _tested(df))
    assert {2, 14} <= {s.m for s in runs} and all(s.m >= 1 for s in runs)
    assert "between 6 and 31" in next(s.reason for s in runs if s.m == 14)
    assert not pinned(rep.groups[0], 1.0) and pinned(rep.groups[0], 5.0)  # log2(31) ≈ 4.95


def test_a_wide_gap_around_the_crossing_gets_a_level_in_its_middle():
    df = _study([1, 2, 4, 64, 128, 256, 512])
    rep = fit(df, bootstrap=50, tolerance=0.005)  # m_sat ≈ 22
    runs = suggest(rep, 3, _tested(df))
    assert runs[0].m == 16 and runs[0].seed == 0  # √(4·64)
    assert "between 4 and 64" in runs[0].reason


def test_dense_but_noisy_asks_for_seeds_at_the_levels_around_m_sat():
    df = _study(2.0 ** np.arange(10), seeds=2, sd=0.01, seed=3)
    rep = fit(df, bootstrap=100)
    a = rep.groups[0].answer
    runs = suggest(rep, 2, _tested(df))
    seeded = [s for s in runs if "seeds at" in s.reason]
    assert seeded and all(s.seed == 2 for s in seeded)  # the next seed number
    assert all(s.m in a.m_levels for s in seeded)


def test_pinned_groups_get_nothing_and_the_same_report_gives_the_same_runs():
    df = _study(2.0 ** np.arange(10), sd=0.0005)
    rep = fit(df, bootstrap=100)
    assert suggest(rep, 5, _tested(df), target=50.0) == []
    wide = fit(_study([1, 4, 64, 512], seeds=2), bootstrap=50)
    t = _tested(_study([1, 4, 64, 512], seeds=2))
    assert suggest(wide, 4, t) == suggest(wide, 4, t)


def test_the_start_design_spans_the_m_range_with_two_seeds_but_one_at_the_smallest_m():
    d = start_design(1, 319, [1024.0, 4096.0])
    assert sorted({m for m, _, _ in d}) == [1, 18, 319]
    assert sorted((m, s) for m, n, s in d if n == 1024.0) == [(1, 0), (18, 0), (18, 1),
                                                              (319, 0), (319, 1)]  # fmt: skip
    assert len(d) == 5 * 2
    assert start_design(8, 8, [1024.0]) == [(8, 1024.0, 0), (8, 1024.0, 1)]  # one level


def test_fit_suggest_on_any_table(tmp_path):
    path = tmp_path / "t.csv"
    _study([1, 2, 4, 64, 128, 256, 512]).to_csv(path, index=False)
    args = ["fit", str(path), "--bootstrap", "50", "--tolerance", "0.005", "--suggest", "2"]
    res = runner.invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)["suggestions"]
    assert len(rows) == 2 and set(rows[0]) == {"m", "n", "seed", "reason", "deferred"}
    text = " ".join(runner.invoke(app, args).stdout.split())  # wrapped at 80 columns
    assert "next runs (2):" in text and "between 4 and 64" in text
    # seeds at 4 and 64 (four doublings apart) matter once the level between is in
    more = [*args[:-1], "4"]
    rows = json.loads(runner.invoke(app, [*more, "--json"]).stdout)["suggestions"]
    assert not rows[0]["deferred"] and any(r["deferred"] for r in rows)
    text = " ".join(runner.invoke(app, more).stdout.split())
    assert text.count("(worth it once the runs above are in)") == sum(r["deferred"] for r in rows)


def test_a_round_is_one_run_a_group_at_least_two_and_at_least_the_runs_trained_at_once():
    from negscale.fit.adaptive import next_round, round_size

    assert [round_size(g) for g in (1, 2, 3, 5)] == [2, 2, 3, 5]
    assert round_size(3, slots=8) == 8 and round_size(1, slots=1) == 2
    # three n, each dense but noisy around m_sat: two seeds to suggest at each
    df = pd.concat([_study([4, 8, 16, 32, 64], seeds=2, sd=0.004, n=n) for n in (1e3, 4e3, 16e3)])
    kw = {"metric": "auc", "bootstrap": 50, "tolerance": 0.005, "random_state": 0}

    def round_of(**extra):
        return next_round(df, target=1.0, cap=lambda n: None, fit_kwargs=kw, **extra).runs

    one = round_of(budget_left=50)
    assert len(one) == 3 and {s.n for s in one} == {1e3, 4e3, 16e3}  # one run a group
    many = round_of(budget_left=50, slots=6)
    assert len(many) == 6 and many[:3] == one  # the same order, only more of it
    assert len(round_of(budget_left=1, slots=6)) == 1  # never past the budget


def test_an_adaptive_round_defers_seeds_at_far_apart_levels_while_a_level_between_is_due():
    """Levels 4 and 64 around m_sat are 4 doublings apart: the new level between them
    comes first; their seeds are listed after it, and an adaptive round leaves them out
    while anything else is left (they would be moot once the new level is in)."""
    from negscale.fit import fit
    from negscale.fit.suggest import suggest

    df = _study([1, 2, 4, 64, 128, 256, 512])
    report = fit(df, metric="auc", bootstrap=50, tolerance=0.005, random_state=0)
    tested = {(int(m), float(n), int(s)) for m, n, s in zip(df.m, df.n, df.seed, strict=True)}
    listed = suggest(report, 4, tested)
    assert listed[0].m == 16 and not listed[0].deferred
    assert any(s.deferred and "set by noise" in s.reason for s in listed)
    deferred_first = next(i for i, s in enumerate(listed) if s.deferred)
    assert all(not s.deferred for s in listed[:deferred_first])
    kept = suggest(report, 4, tested, defer=True)
    assert kept and not any(s.deferred for s in kept)
