"""``negscale sweep``: grid parsing, plan validation, resume, crash safety, sharding, locks.

Expected plans are computed independently of :mod:`negscale.sweep` (each point
loaded on its own with ``load_recipe``), and outcomes are read back from the
files on disk, never from what the sweep says it did.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from negscale.cli import app
from negscale.errors import NegscaleError
from negscale.recipe import bundled_recipes, load_recipe
from negscale.sweep import (
    GridSpec,
    claim,
    execute,
    lock_path,
    m_from_ratio,
    make_plan,
    parse_ints,
    parse_seeds,
    parse_shard,
    parse_values,
    resolve_samples,
)

runner = CliRunner()
# Smaller than conftest's TINY (later --set wins): well under a second per run.
FAST = ["data.n=256", "data.n_eval=128", "train.steps=12", "train.batch_size=32"]


@pytest.fixture
def tiny(tiny_overrides) -> list[str]:
    """conftest's TINY (n = 512, B = 64) with in-batch negatives (m <= B-1 = 63) and an
    empty [sweep] grid (n = data.n, seed 0), whatever the bundled quickstart sets."""
    grid = ["sweep.ratios=[]", "sweep.negatives=[]", "sweep.samples=[]", "sweep.seeds=[0]"]
    return [*tiny_overrides, "negatives.source='subsample'", *grid]


@pytest.fixture
def fast(tiny) -> list[str]:
    return [*tiny, *FAST]


def _sets(overrides: list[str]) -> list[str]:
    return [arg for o in overrides for arg in ("--set", o)]


def _expected_ids(overrides: list[str], ms: list[int], ns: list[int], seeds: list[int]) -> set:
    """The plan's run_ids, each point loaded on its own (the reference, not the sweep code)."""
    return {
        load_recipe("quickstart", overrides, m=m, n=n, seed=s).run_id()
        for m in ms
        for n in ns
        for s in seeds
    }


def _records_on_disk(results: Path) -> dict[str, dict]:
    """run_id -> record row, read with pyarrow; asserts each file holds its own run."""
    rows = {}
    for f in sorted((results / "runs").glob("*.parquet")):
        table = pq.read_table(f).to_pylist()
        assert len(table) == 1 and table[0]["run_id"] == f.stem
        rows[f.stem] = table[0]
    return rows


def _lock_owner(path: Path) -> int | None:
    try:
        return json.loads(path.read_text())["pid"]
    except (OSError, ValueError, KeyError):
        return None  # gone, or being written


def _leftovers(results: Path) -> list[str]:
    """Anything in the study folder that is not a record or a finished checkpoint."""
    bad = [p.name for p in (results / "runs").iterdir() if p.suffix != ".parquet"]
    ckpts = results / "checkpoints"
    if ckpts.is_dir():
        bad += [p.name for p in ckpts.iterdir() if p.suffix != ".pt"]
    return bad


# ---------------------------------------------------------------- parsing


def test_lists_ranges_and_geometric_grids() -> None:
    assert parse_ints("1,2,4", "m") == [1, 2, 4]
    assert parse_ints("16, 4,4,1", "m") == [1, 4, 16]  # sorted, deduplicated
    assert parse_ints("2**0..2**10", "m") == [2**k for k in range(11)]
    assert parse_ints("3**1..3**3,1", "m") == [1, 3, 9, 27]
    assert parse_ints("2..5", "m") == [2, 3, 4, 5]
    assert parse_ints("geom:1:1024:11", "m") == [2**k for k in range(11)]
    # rounded and deduplicated: 1, 1.58, 2.51, 3.98, 6.31, 10 -> 1, 2, 3, 4, 6, 10
    assert parse_ints("geom:1:10:6", "m") == [1, 2, 3, 4, 6, 10]
    ref = sorted({round(1000 ** (i / 8)) for i in range(9)})
    assert parse_ints("geom:1:1000:9", "m") == ref
    assert parse_values("0.01,0.1,0.4,0.7,1", "r", integer=False) == [0.01, 0.1, 0.4, 0.7, 1.0]
    assert parse_values("geom:0.01:1:3", "r", integer=False) == [0.01, 0.1, 1.0]
    assert parse_seeds("0,1,2") == [0, 1, 2] and parse_seeds("0..3") == [0, 1, 2, 3]
    assert parse_shard("2/4") == (2, 4)


@pytest.mark.parametrize(
    "spec", ["", "0", "-1", "a", "1,,2", "1.5", "2**1..3**4", "geom:1:10", "geom:10:1:3", "1e400"]
)
def test_bad_grid_is_a_clear_error(spec: str) -> None:
    with pytest.raises(NegscaleError, match="--negatives"):
        parse_ints(spec, "--negatives")


@pytest.mark.parametrize("spec", ["0/4", "5/4", "1/0", "x", "1-4"])
def test_bad_shard(spec: str) -> None:
    with pytest.raises(NegscaleError, match="--shard"):
        parse_shard(spec)


def test_samples_may_be_fractions_of_the_dataset() -> None:
    assert resolve_samples([0.25, 1.0], 4096) == [1024, 4096]
    assert resolve_samples([1, 2048], 4096) == [2048, 4096]  # 1 means all of data.n
    with pytest.raises(NegscaleError, match="neither"):
        resolve_samples([1.5], 4096)
    with pytest.raises(NegscaleError, match="fewer than 2"):
        resolve_samples([0.0001], 4096)


@pytest.mark.parametrize("n", [100, 1000, 1024, 4096, 5000])
def test_ratio_gives_rounded_m_per_n(n: int) -> None:
    for ratio in (0.0001, 0.001, 0.01, 0.1, 0.4, 0.7, 1.0):
        exact = (Decimal(str(ratio)) * n).quantize(Decimal(1), rounding=ROUND_HALF_UP)
        assert m_from_ratio(ratio, n) == max(1, int(exact))


# ---------------------------------------------------------------- plans


def test_ratio_plan_matches_the_papers_design(tiny) -> None:
    plan = make_plan("quickstart", tiny, GridSpec(ratios="0.01,0.1", samples="0.5,1", seeds="0,3"))
    # independently: n = 256, 512; m = round(ratio * n)
    want = [(256, 3), (256, 26), (512, 5), (512, 51)]
    got = [(r.data.n, r.m, r.train.seed) for r in plan.recipes]
    assert got == [(n, m, s) for n, m in want for s in (0, 3)]  # ordered by (n, m, seed)
    ids = {
        load_recipe("quickstart", tiny, m=m, n=n, seed=s).run_id() for n, m in want for s in (0, 3)
    }
    assert set(plan.run_ids) == ids


def test_grid_defaults_come_from_the_recipe_sweep_section(tmp_path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(
        'name = "mine"\n[train]\nbatch_size = 32\n'
        "[sweep]\nnegatives = [1, 8]\nsamples = [256, 512]\nseeds = [4]\n"
    )
    plan = make_plan(str(path))
    assert [(r.data.n, r.m, r.train.seed) for r in plan.recipes] == [
        (256, 1, 4),
        (256, 8, 4),
        (512, 1, 4),
        (512, 8, 4),
    ]
    # the command line wins over the recipe, axis by axis
    plan = make_plan(str(path), grid=GridSpec(negatives="2", seeds="0,1"))
    assert sorted((r.data.n, r.m, r.train.seed) for r in plan.recipes) == [
        (n, 2, s) for n in (256, 512) for s in (0, 1)
    ]


def test_invalid_points_fail_before_anything_runs(tmp_path, tiny) -> None:
    with pytest.raises(NegscaleError, match=r"1 of 3 planned runs are invalid.*m=64, n=512"):
        make_plan("quickstart", tiny, GridSpec(negatives="1,8,64"))
    with pytest.raises(NegscaleError, match="not both"):
        make_plan("quickstart", tiny, GridSpec(negatives="1", ratios="0.1"))
    res = runner.invoke(
        app,
        [
            "sweep",
            "quickstart",
            "-m",
            "4,64",
            "--results",
            str(tmp_path / "r"),
            *_sets(tiny),
        ],
    )
    assert res.exit_code == 2
    assert res.stderr.startswith("error: sweep: 1 of 2") and res.stderr.count("\n") == 1
    assert not (tmp_path / "r").exists()  # nothing ran, nothing written


def test_pool_m_beyond_n_is_invalid(tiny) -> None:
    sets = [*tiny, "negatives.source=pool"]
    plan = make_plan("quickstart", sets, GridSpec(negatives="4,256", samples="256,512"))
    assert [(r.data.n, r.m) for r in plan.recipes] == [(256, 4), (256, 256), (512, 4), (512, 256)]
    with pytest.raises(NegscaleError, match=r"1 of 4 planned.*m=512, n=256.*pool holds at most"):
        make_plan("quickstart", sets, GridSpec(negatives="4,512", samples="256,512"))
    # m = ratio * n can never exceed n, so ratios up to 1 are always a valid pool design
    plan = make_plan("quickstart", sets, GridSpec(ratios="0.01,1", samples="256,512"))
    assert [(r.data.n, r.m) for r in plan.recipes] == [(256, 3), (256, 256), (512, 5), (512, 512)]


@pytest.mark.parametrize(
    "name,setting", [("quickstart", "self-supervised"), ("quickstart-supervised", "supervised")]
)
def test_bundled_quickstart_studies_are_meaningful_designs(name: str, setting: str) -> None:
    assert bundled_recipes()[name].read_text().startswith("# ")
    plan = make_plan(name)
    assert plan.setting == setting and plan.recipes[0].description
    cells: dict[int, dict[int, int]] = {}
    for r in plan.recipes:
        cell = cells.setdefault(r.data.n, {})
        cell[r.m] = cell.get(r.m, 0) + 1
    assert len(cells) >= 3 and math.log10(max(cells) / min(cells)) >= 1  # n over a decade
    for ms in cells.values():
        assert len(ms) >= 7 and math.log10(max(ms) / min(ms)) >= 2.5
        assert set(ms.values()) == {3}  # three seeds per (n, m)


def test_shards_partition_the_plan_whatever_is_done(tiny) -> None:
    plan = make_plan("quickstart", tiny, GridSpec(negatives="1..7", seeds="0,1"))
    ids = sorted(plan.run_ids)
    parts = [{r.run_id() for r in plan.shard((i, 3))} for i in (1, 2, 3)]
    assert sorted(len(p) for p in parts) == [4, 5, 5]
    assert set.union(*parts) == set(ids) and sum(map(len, parts)) == len(ids)
    assert parts[0] == set(ids[0::3])  # round robin over the sorted run_ids


# ---------------------------------------------------------------- running


def test_dry_run_lists_the_plan_and_what_is_done(tmp_path, fast) -> None:
    from negscale.train import run

    run(load_recipe("quickstart", fast, m=2, seed=1), tmp_path, progress=False)
    args = ["sweep", "quickstart", "-m", "2,4", "--seeds", "0,1", "--results", str(tmp_path)]
    res = runner.invoke(app, [*args, "--dry-run", "--json", *_sets(fast)])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    states = {r["run_id"]: r["state"] for r in doc["runs"]}
    done = load_recipe("quickstart", fast, m=2, seed=1).run_id()
    assert set(states) == _expected_ids(fast, [2, 4], [256], [0, 1])
    assert states.pop(done) == "done" and set(states.values()) == {"pending"}
    table = runner.invoke(app, [*args, "--dry-run", *_sets(fast)])
    assert table.exit_code == 0
    for rid in [done, *states]:
        assert rid in table.stdout
    assert "1 done, 3 pending" in table.stdout
    assert len(_records_on_disk(tmp_path)) == 1  # a dry run trains nothing


def test_json_summary_and_resume_trains_each_run_once(tmp_path, fast) -> None:
    args = ["sweep", "quickstart", "-m", "1,4", "-n", "128,256", "--seeds", "0,1"]
    args += ["--results", str(tmp_path), "--json", "--device", "cpu", *_sets(fast)]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    rows = _records_on_disk(tmp_path)
    assert set(rows) == _expected_ids(fast, [1, 4], [128, 256], [0, 1])
    assert sorted(doc["sweep"]["trained"]) == sorted(rows)
    assert doc["planned"] == doc["recorded"] == 8 and len(doc["runs"]) == 8
    assert {"study", "metrics", "cells", "runs", "wall_s", "shard"} <= set(doc)
    assert doc["metrics"] == ["auc", "recall_at_1"]
    assert [(c["n"], c["m"]) for c in doc["cells"]] == [(128, 1), (128, 4), (256, 1), (256, 4)]
    for cell in doc["cells"]:
        vals = [r["auc"] for r in rows.values() if (r["n"], r["m"]) == (cell["n"], cell["m"])]
        assert cell["ok"] == cell["planned"] == 2
        assert cell["auc"]["mean"] == pytest.approx(statistics.mean(vals))
        assert cell["auc"]["sd"] == pytest.approx(statistics.stdev(vals))
        assert cell["ratio"] == pytest.approx(cell["m"] / cell["n"])
    mtimes = {f.name: f.stat().st_mtime_ns for f in (tmp_path / "runs").iterdir()}

    again = runner.invoke(app, args)
    assert again.exit_code == 0
    assert json.loads(again.stdout)["sweep"]["trained"] == []
    assert {f.name: f.stat().st_mtime_ns for f in (tmp_path / "runs").iterdir()} == mtimes

    # one more seed: only the new runs train
    more = runner.invoke(app, [*args, "--seeds", "0,1,2"])
    assert more.exit_code == 0
    new = set(_records_on_disk(tmp_path)) - set(rows)
    assert new == _expected_ids(fast, [1, 4], [128, 256], [2])
    assert set(json.loads(more.stdout)["sweep"]["trained"]) == new


def test_corrupt_records_stray_files_and_stale_locks_are_repaired(tmp_path, fast):
    args = ["sweep", "quickstart", "-m", "1,2,3", "--results", str(tmp_path), "--json"]
    args += _sets(fast)
    assert runner.invoke(app, args).exit_code == 0
    a, b, c = sorted(_records_on_disk(tmp_path))
    runs = tmp_path / "runs"
    (runs / f"{a}.parquet").write_bytes(b"PAR1 truncated")  # corrupt record
    (runs / f"{b}.parquet").unlink()  # killed run: stray temp files and a dead owner's lock
    (runs / f".{b}.x1y2.tmp").write_bytes(b"half a parquet")
    (tmp_path / "checkpoints" / f"{b}.tmp").write_bytes(b"half a checkpoint")
    dead = subprocess.Popen(["true"])
    dead.wait()
    lock_path(tmp_path, b).write_text(json.dumps({"pid": dead.pid, "host": os.uname().nodename}))

    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "corrupt run record" in res.stderr and a in res.stderr
    assert sorted(json.loads(res.stdout)["sweep"]["trained"]) == sorted([a, b])
    assert set(_records_on_disk(tmp_path)) == {a, b, c}
    assert _leftovers(tmp_path) == []


def test_a_live_lock_is_respected_and_a_foreign_stale_one_reclaimed(tmp_path) -> None:
    (tmp_path / "runs").mkdir()
    held = claim(tmp_path, "aaaa")
    assert held is not None and lock_path(tmp_path, "aaaa").exists()
    assert claim(tmp_path, "aaaa") is None  # even from the same process
    info = json.loads(lock_path(tmp_path, "aaaa").read_text())
    assert info["pid"] == os.getpid()
    held.release()
    assert not lock_path(tmp_path, "aaaa").exists()

    other = lock_path(tmp_path, "bbbb")
    other.write_text(json.dumps({"pid": 1, "host": "elsewhere"}))
    assert claim(tmp_path, "bbbb") is None  # another host, heartbeat fresh: busy
    old = time.time() - 3600
    os.utime(other, (old, old))
    reclaimed = claim(tmp_path, "bbbb")  # heartbeat stopped an hour ago: the host is gone
    assert reclaimed is not None
    reclaimed.release()


def test_a_diverged_run_is_recorded_and_the_sweep_goes_on(tmp_path, fast) -> None:
    plan = make_plan("quickstart", fast, GridSpec(negatives="2,4"))
    bad = load_recipe("quickstart", [*fast, "train.lr=1e30", "train.grad_clip=0"], m=3)
    plan.recipes.insert(0, bad)  # the first run diverges, the others must still run
    stats = execute(plan, tmp_path)
    rows = _records_on_disk(tmp_path)
    assert set(rows) == set(plan.run_ids)
    assert rows[bad.run_id()]["status"] == "diverged" and stats.diverged == [bad.run_id()]
    assert [rows[r]["status"] for r in plan.run_ids[1:]] == ["ok", "ok"]

    # through the CLI: every run diverges, all are recorded, the sweep still succeeds
    res = runner.invoke(
        app,
        [
            "sweep",
            "quickstart",
            "-m",
            "2,4",
            "--results",
            str(tmp_path / "cli"),
            "--json",
            *_sets([*fast, "train.lr=1e30", "train.grad_clip=0"]),
        ],
    )
    assert res.exit_code == 0, res.output
    assert res.stderr.count("  diverged (loss became") == 2
    rows = _records_on_disk(tmp_path / "cli")
    assert len(rows) == 2 and {r["status"] for r in rows.values()} == {"diverged"}
    doc = json.loads(res.stdout)
    assert [c["diverged"] for c in doc["cells"]] == [1, 1]
    assert all(c["auc"]["mean"] is None for c in doc["cells"])


def test_a_crashing_run_is_reported_the_others_finish_and_it_stays_pending(
    tmp_path, fast, monkeypatch
) -> None:
    import negscale.train

    real_run = negscale.train.run
    crash = load_recipe("quickstart", fast, m=2).run_id()

    def flaky(recipe, *args, **kwargs):
        if recipe.run_id() == crash:
            raise RuntimeError("out of memory")
        return real_run(recipe, *args, **kwargs)

    monkeypatch.setattr(negscale.train, "run", flaky)
    args = ["sweep", "quickstart", "-m", "1,2,4", "--results", str(tmp_path), *_sets(fast)]
    res = runner.invoke(app, args)
    assert res.exit_code == 1 and "out of memory" in res.stderr and "re-run" in res.stderr
    assert set(_records_on_disk(tmp_path)) == _expected_ids(fast, [1, 4], [256], [0])
    assert _leftovers(tmp_path) == []
    monkeypatch.setattr(negscale.train, "run", real_run)
    assert runner.invoke(app, args).exit_code == 0  # the re-run trains the missing one
    assert set(_records_on_disk(tmp_path)) == _expected_ids(fast, [1, 2, 4], [256], [0])


def test_fit_flag_adds_a_fit_or_a_warning(tmp_path, fast) -> None:
    args = ["sweep", "quickstart", "--results", str(tmp_path), "--fit", *_sets(fast)]
    res = runner.invoke(app, [*args, "-m", "1,2", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    # two values of m are too few to fit: a warning, and the sweep still succeeded
    assert doc["fit"] is None and "3 distinct values of m" in doc["fit_warning"]
    assert "warning:" in res.stderr

    res = runner.invoke(app, [*args, "-m", "1,2,4,8", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["fit_warning"] is None and doc["fit"]["metric"] == "auc"
    assert doc["fit"]["setting"] == "self-supervised" and doc["fit"]["runs"] == 4
    assert [g["n"] for g in doc["fit"]["groups"]] == [256]
    text = runner.invoke(app, [*args, "-m", "1,2,4,8"])  # all recorded: fit and render only
    assert text.exit_code == 0 and "negscale fit" in text.stdout and "m_sat" in text.stdout


# ---------------------------------------------------------------- processes


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "negscale.cli", *args]


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "120"}


def _run_concurrently(cmds: list[list[str]]) -> list[dict]:
    procs = [
        subprocess.Popen(c, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for c in cmds
    ]
    outs = [p.communicate(timeout=240) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
    return [json.loads(out) for out, _ in outs]


def test_killed_sweep_is_finished_by_two_concurrent_shards_with_every_run_once(tmp_path, tiny):
    """SIGKILL a sweep twice mid-run, then finish the study with two shards at once.

    Every planned run ends up recorded exactly once, each shard trains only
    its own fixed part of the plan, and the dead owners' locks, temp files and
    half-written checkpoints are all cleaned up.
    """
    sets = [*tiny, "data.n=256", "train.steps=40", "train.checkpoint_every=8"]
    ms, seeds = [1, 2, 4], [0, 1]
    want = _expected_ids(sets, ms, [256], seeds)
    cmd = _cli("sweep", "quickstart", "-m", "1,2,4", "--seeds", "0,1", "--device", "cpu")
    cmd += ["--results", str(tmp_path), *_sets(sets)]
    runs = tmp_path / "runs"
    rng = random.Random(0)
    stopped = []
    for _ in range(2):
        before = len(list(runs.glob("*.parquet"))) if runs.is_dir() else 0
        proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        # wait until it is inside a run of its own (holds a lock), after redoing the run
        # the previous process was killed in
        while time.monotonic() < deadline and proc.poll() is None:
            inside = any(_lock_owner(p) == proc.pid for p in runs.glob(".*.lock"))
            if inside and (not stopped or len(list(runs.glob("*.parquet"))) > before):
                break
            time.sleep(0.01)
        if proc.poll() is None:
            time.sleep(rng.uniform(0.0, 0.2))
            proc.send_signal(signal.SIGKILL)
            stopped.append(proc.pid)
        proc.wait()
    assert len(stopped) == 2, "the sweep finished before it was killed twice"
    left = want - set(_records_on_disk(tmp_path))
    assert left, "nothing left to finish"

    docs = _run_concurrently([[*cmd, "--json", "--shard", f"{i}/2"] for i in (1, 2)])
    one, two = (set(d["sweep"]["trained"]) for d in docs)
    assert one | two == left and not one & two  # each remaining run trained exactly once
    ordered = sorted(want)  # the split is fixed by the sorted run_ids, whatever is done
    assert one <= set(ordered[0::2]) and two <= set(ordered[1::2])
    rows = _records_on_disk(tmp_path)
    assert set(rows) == want and all(r["status"] == "ok" for r in rows.values())
    assert _leftovers(tmp_path) == []


def test_sigterm_releases_the_lock_of_the_run_in_progress(tmp_path, fast) -> None:
    """Schedulers stop jobs with SIGTERM: the sweep exits through Python (143), so the
    run it was training leaves no lock and no temp file, and stays pending."""
    lock_seen = threading.Event()

    def stop_when_inside_a_run() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not lock_seen.is_set():
            if list((tmp_path / "runs").glob(".*.lock")):
                lock_seen.set()
                os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.005)

    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)  # never kill pytest itself
    watcher = threading.Thread(target=stop_when_inside_a_run)
    watcher.start()
    try:
        args = ["sweep", "quickstart", "-m", "1,2", "--results", str(tmp_path)]
        res = runner.invoke(app, [*args, *_sets([*fast, "train.steps=200"])])
    finally:
        lock_seen.set()
        watcher.join()
        signal.signal(signal.SIGTERM, previous)
    assert res.exit_code == 128 + signal.SIGTERM
    assert list((tmp_path / "runs").iterdir()) == []  # no lock, no temp file, no record


def test_two_unsharded_sweeps_at_once_never_train_a_run_twice(tmp_path, fast) -> None:
    """Two sweeps over the same plan in parallel (threads: each claim opens its own
    lock file, exactly as separate processes do) share the work through the locks."""
    plan = make_plan("quickstart", fast, GridSpec(negatives="1,2,3,4", seeds="0,1"))
    results: list = [None, None]

    def sweep(i: int) -> None:
        results[i] = execute(plan, tmp_path)

    threads = [threading.Thread(target=sweep, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    one, two = (set(r.trained) for r in results)
    assert not one & two and one | two == _expected_ids(fast, [1, 2, 3, 4], [256], [0, 1])
    assert set(_records_on_disk(tmp_path)) == one | two and _leftovers(tmp_path) == []
