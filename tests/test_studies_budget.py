"""benchmarks/bench_budget.py: the step-cap check's logic, on constructed curves and a tiny run."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from negscale import sweep as sw
from negscale.results import record_files

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_budget.py"
_SPEC = importlib.util.spec_from_file_location("bench_budget", _PATH)
bench = importlib.util.module_from_spec(_SPEC)
sys.modules["bench_budget"] = bench  # dataclasses look their module up
_SPEC.loader.exec_module(bench)


def _points(steps: int, seeds: str = "0,1") -> list:
    plan = sw.make_plan(
        "quickstart",
        [f"train.steps={steps}"],
        sw.GridSpec(negatives="1,8", samples="1024,4096", seeds=seeds),
    )
    return bench.largest_point(plan.recipes)


def test_largest_point_is_the_largest_m_at_the_largest_n_one_per_seed() -> None:
    points = _points(100)
    assert [(r.m, r.data.n, r.train.seed) for r in points] == [(8, 4096, 0), (8, 4096, 1)]
    twice = bench.doubled(points[0])  # --set train.steps=100: a steps budget, no epochs
    assert (twice.train.epochs, twice.train.steps) == (None, 200)
    plan = sw.make_plan("quickstart", None, sw.GridSpec(negatives="1,8", samples="1024,4096"))
    assert {(r.m, r.data.n) for r in bench.largest_point(plan.recipes, 1024)} == {(8, 1024)}


def test_doubling_an_epochs_budget_doubles_the_epochs_and_the_steps_at_every_n() -> None:
    """The bundled 40 epochs at B = 320: 128 steps at n = 1024, 512 at 4096 (40 n / 320)."""
    plan = sw.make_plan("quickstart", None, sw.GridSpec(negatives="1,8", samples="1024,4096"))
    for n, steps in ((1024, 128), (4096, 512)):
        (point, *_) = bench.largest_point(plan.recipes, n)
        assert (point.train.epochs, point.train.steps) == (40, steps)
        twice = bench.doubled(point)
        assert (twice.train.epochs, twice.train.steps, twice.data.n) == (80, 2 * steps, n)
        assert twice.train.select == point.train.select == "best"  # only the budget doubles
        assert twice.run_id() != point.run_id()  # a new run, not the study's own record
    result = bench.check("quickstart", bench.largest_point(plan.recipes, 1024), "auc",
                         lambda r: r.train.steps / 1000, 1.0)  # fmt: skip
    assert (result.steps, result.doubled_steps, result.delta) == (128, 256, pytest.approx(0.128))
    assert "40 epochs (128 steps)" in result.line() and "80 epochs (256 steps)" in result.line()


@pytest.mark.parametrize(
    ("steps", "capped"),
    [(10, True), (2000, False)],  # the curve 1 - 1/steps gains 0.05 at 10 and 2.5e-4 at 2000
)
def test_a_budget_is_capped_exactly_when_doubling_moves_the_metric_past_the_tolerance(
    steps: int, capped: bool
) -> None:
    def train(recipe) -> float:  # a known saturating curve, plus seed noise of sd 0.001
        return 1 - 1 / recipe.train.steps + 0.001 * (recipe.train.seed - 0.5) * 2**0.5

    result = bench.check("quickstart", _points(steps), "auc", train)
    assert result.tolerance == pytest.approx(0.001)  # the seed sd of the two base runs
    assert result.tolerance_source == "seed sd at the largest m"
    assert result.delta == pytest.approx(1 / steps - 1 / (2 * steps))
    assert result.capped is capped
    assert ("STEP-CAPPED" in result.line()) is capped


def test_given_tolerance_and_single_seed_fallback() -> None:
    assert bench.tolerance([0.9], None) == (bench.FALLBACK_TOL, "default without seeds")
    assert bench.tolerance([0.9, 0.91], 0.05) == (0.05, "given")


def test_cli_on_a_tiny_config_prints_the_verdict(capsys, tmp_path) -> None:
    tiny = ["data.n_eval=128", "train.batch_size=32", "train.steps=4", "model.hidden=16",
            "model.embed_dim=8", "eval.prototypes=64", "sweep.negatives=[1,3]",
            "sweep.samples=[64,128]", "sweep.seeds=[0]"]  # fmt: skip
    args = ["quickstart", "--all-n", *(f"--set={s}" for s in tiny)]
    code = bench.main([*args, "--tolerance", "1.0"])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0 and len(lines) == 2 and "m=3 n=64" in lines[0] and "m=3 n=128" in lines[1]
    assert all("4 steps" in x and "8 steps" in x and "not step-capped" in x for x in lines)
    # with --results the second check reuses the first one's records: the same numbers
    assert (
        bench.main([*args[:1], *args[2:], "--tolerance", "1e-9", "--results", str(tmp_path)]) == 1
    )
    first = capsys.readouterr().out
    assert "STEP-CAPPED" in first and len(record_files(tmp_path)) == 2
    bench.main([*args[:1], *args[2:], "--tolerance", "1e-9", "--results", str(tmp_path)])
    assert capsys.readouterr().out == first


def test_all_n_judges_every_n_against_one_pooled_tolerance() -> None:
    """sd 3e-4 and 5e-4 at two n pool to sqrt((9 + 25) / 2) e-4 = 4.12e-4."""

    def check(n: int, sd: float, delta: float):
        base = [0.9 - sd / 2**0.5, 0.9 + sd / 2**0.5]  # two seeds whose sd is `sd`
        return bench.BudgetCheck("q", "auc", 319, n, 30, 96, 192, [0, 1], base,
                                 [v + delta for v in base], delta, sd,
                                 "seed sd at the largest m")  # fmt: skip

    first, second = check(1024, 3e-4, 3.5e-4), check(4096, 5e-4, 1e-4)
    assert first.capped and not second.capped  # against its own seeds' sd
    out = bench.pooled([first, second])
    assert [r.tolerance for r in out] == pytest.approx([(17e-8) ** 0.5] * 2)
    assert [r.capped for r in out] == [False, False]
    assert out[0].tolerance_source.endswith("at the largest m, pooled over n")
    given = replace(first, tolerance=1e-4, tolerance_source="given")
    assert bench.pooled([given, second]) == [given, second]  # one own sd: nothing to pool


def test_delta_se_is_the_unpaired_standard_error_of_the_two_means() -> None:
    """sd 0.01 at both budgets over 3 seeds: SE sqrt(2 x 1e-4 / 3) = 0.008165."""
    base = [0.90, 0.91, 0.92]
    more = [0.905, 0.915, 0.925]  # every seed +0.005: a paired SE would be 0
    result = bench.BudgetCheck("q", "auc", 319, 1024, 40, 128, 256, [0, 1, 2], base, more,
                               0.005, 0.012, "given")  # fmt: skip
    assert result.delta_se == pytest.approx((2e-4 / 3) ** 0.5)
    assert not result.capped and result.noisy  # SE 0.0082 >= 0.012 / 2
    assert "± 0.00816" in result.line() and "add seeds" in result.line()
    calm = replace(result, tolerance=0.02)
    assert not calm.noisy and "add seeds" not in calm.line()
    one = replace(result, seeds=[0], base=[0.9], doubled=[0.91])
    assert one.delta_se is None and not one.noisy


def test_n_option_checks_only_the_named_n_and_rejects_others(capsys) -> None:
    tiny = ["data.n_eval=128", "train.batch_size=32", "train.steps=4", "model.hidden=16",
            "model.embed_dim=8", "eval.prototypes=64", "sweep.negatives=[1,3]",
            "sweep.samples=[64,128]", "sweep.seeds=[0]"]  # fmt: skip
    args = ["quickstart", *(f"--set={s}" for s in tiny), "--tolerance", "1.0"]
    assert bench.main([*args, "--n", "64"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and "m=3 n=64" in lines[0]
    with pytest.raises(SystemExit) as exc:
        bench.main([*args, "--n", "100"])
    assert exc.value.code == 2 and "[64, 128]" in capsys.readouterr().err
