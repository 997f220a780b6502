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


def test_not_reached_across_a_wide_top_gap_asks_for_its_middle_before_larger_m():
    """A gain spread over 8 → 128 (four doublings) reads as one that goes on; the level
    between comes first, then the doublings past the top."""
    df = _study([1, 2, 4, 8, 128], curve=lambda m: 0.9 - 0.3 * m**-0.3)
    rep = fit(df, bootstrap=50)
    assert rep.groups[0].answer.status == "not reached"
    runs = suggest(rep, 3, _tested(df))
    assert runs[0].m == 32 and runs[0].seed == 0  # √(8·128)
    assert "no level is tested between 8 and 128" in runs[0].reason
    assert [s.m for s in runs[1:]] == [256, 256]  # then past the top, as before
    dense = _study([1, 2, 4, 8, 16], curve=lambda m: 0.9 - 0.3 * m**-0.3)
    assert suggest(fit(dense, bootstrap=50), 1, _tested(dense))[0].m == 32  # no gap: 2 × 16


def test_the_gap_holding_m_sat_is_split_once_it_is_as_wide_as_the_target():
    """Levels a doubling apart bracket the crossing: with a one-doubling target, seeds
    alone rarely close the interval, so the middle of that gap is asked for; with a
    wider target the same gap is left alone."""
    df = _study(2.0 ** np.arange(10), seeds=2, sd=0.01, seed=3)
    rep = fit(df, bootstrap=100)
    a = rep.groups[0].answer
    lo, hi = (m for m in zip(a.m_levels[:-1], a.m_levels[1:], strict=True)
              if m[0] <= a.m_sat <= m[1]).__next__()  # fmt: skip
    runs = suggest(rep, 2, _tested(df), target=1.0)
    assert runs[0].m == round(np.sqrt(lo * hi)) and runs[0].seed == 0
    assert f"between {lo:g} and {hi:g}" in runs[0].reason
    assert all(s.m in a.m_levels for s in suggest(rep, 2, _tested(df), target=1.5))


def test_telling_seeds_go_where_the_forms_differ_per_run_not_where_seeds_already_are():
    """One more run at a level adds (spread / sd)² evidence between the forms whatever
    its seeds so far: the last level asked for, its se shrunk as if it held a hundred
    times the seeds, stays last (dividing by se moved it first, and piled every later
    seed on one level)."""
    from dataclasses import replace

    from negscale.fit.suggest import _discriminating

    rows = []
    for seed in range(12):
        st = sim.draw("seeds piled at one level", seed)
        df = pd.DataFrame([st.run(m, n, s, key=seed) for n, lv in st.design.items()
                           for m in lv[:7] for s in range(2)])  # fmt: skip
        rep = fit(df, metric=st.metric, bootstrap=50, random_state=0, **st.fit_kwargs)
        g = rep.groups[0]
        first = _discriminating(g, _tested(df))
        if len(first) >= 2:
            rows.append((g, first, _tested(df)))
    assert rows, "no draw where the forms disagree"
    for g, first, tested in rows:
        last = list(g.curve.m).index(first[-1].m)
        se = g.curve.se.copy()
        se[last] /= 10.0
        again = _discriminating(replace(g, curve=replace(g.curve, se=se)), tested)
        assert [s.m for s in again] == [s.m for s in first]


def test_an_adaptive_study_not_reached_extends_m_to_what_the_source_supplies_then_says_so():
    """Rounds of next_round on a curve that keeps rising: larger m each round up to
    the source's 64, then a stop that names the bound and what would close it."""
    from negscale.fit.adaptive import BOUND, next_round

    rng = np.random.default_rng(0)

    def run(m, s):
        return {"m": m, "n": 4096.0, "seed": s, "auc": 0.6 + 0.03 * np.log2(m)
                + 0.002 * rng.standard_normal()}  # fmt: skip

    rows = [run(m, s) for m, _, s in start_design(1, 16, [4096.0])]
    kw = {"metric": "auc", "bootstrap": 50, "random_state": 0, "tolerance": 0.005}
    for _ in range(10):
        rnd = next_round(pd.DataFrame(rows), target=1.0, budget_left=40, cap=lambda n: 64,
                         fit_kwargs=kw)  # fmt: skip
        if rnd.stop:
            break
        assert all(s.m <= 64 for s in rnd.runs)
        rows += [run(s.m, s.seed) for s in rnd.runs]
    assert rnd.stop == BOUND and max(r["m"] for r in rows) == 64
    assert rnd.report.groups[0].answer.status == "not reached"
    assert "not reached by m = 64" in rnd.why[0] and "add larger m" in rnd.why[0]


def test_every_reason_names_its_m_and_n_so_the_text_can_lead_with_the_seed(tmp_path):
    """`fit --suggest` prints `seed S: <reason>` (as adaptive rounds do): each kind of
    reason — not reached, saturated, a gap, telling seeds, noise — names m and n."""
    from negscale.fit.fmt import fmt

    tables = [
        _study([1, 2, 4, 8, 16], curve=lambda m: 0.9 - 0.3 * m**-0.3),  # not reached
        _study([64, 128, 256, 512], curve=lambda m: 0.8 + 0.0 * m),  # saturated
        _study([1, 2, 4, 64, 128, 256, 512]),  # a gap
        _study(2.0 ** np.arange(10), seeds=2, sd=0.01, seed=3),  # noise, telling seeds
    ]
    seen = set()
    for df in tables:
        rep = fit(df, bootstrap=50, tolerance=0.005)
        for s in suggest(rep, 12, _tested(df), target=0.3):
            assert f"m = {fmt(s.m)}" in s.reason and f"n = {fmt(s.n)}" in s.reason, s.reason
            seen.add(s.reason.split(": ", 1)[1][:12])
    assert len(seen) >= 4  # several kinds of reason were checked
    # the CLI's text: the seed first, then the reason
    tables[2].to_csv(tmp_path / "t.csv", index=False)
    args = ["fit", str(tmp_path / "t.csv"), "--bootstrap", "50", "--tolerance", "0.005"]
    res = runner.invoke(app, [*args, "--suggest", "3"])
    assert res.exit_code == 0, res.output
    text = " ".join(res.stdout.split())
    assert "seed 0: m = 16 at n = 4096: the crossing may lie between 4 and 64" in text
