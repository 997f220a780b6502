"""Sweeps: a grid over (m, n, seed) planned up front, run resumably, shardable.

A study is dozens to hundreds of runs that crash, get killed, or are split over
a job array, so every step here is safe to repeat:

* **plan** — the grid (lists ``1,2,4``, power ranges ``2**0..2**10``, geometric
  grids ``geom:1:1024:11``, n as fractions of ``data.n``, m as ratios of n) is
  resolved into validated :class:`Recipe` objects before anything runs, so an
  infeasible point is one error, not a crash an hour in;
* **shard** — ``I/N`` takes every N-th of the plan's *sorted run_ids*, a split
  that depends only on the plan (never on what is done), so concurrent shards
  never overlap and together cover the plan;
* **claim** — a run is trained only under an atomic lock file
  (``runs/.<run_id>.lock``, O_CREAT|O_EXCL, holding pid/host, flock-ed while
  held, its mtime touched as a heartbeat), so two processes never train the
  same run; locks of dead processes are reclaimed;
* **resume** — a valid record means done; a corrupt one is reported, removed
  and redone; temp files left by a killed write are removed under the claim.

This module has no Typer: the CLI renders what :class:`Listener` reports.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import re
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

from negscale.errors import NegscaleError
from negscale.recipe import Recipe, apply_overrides, read_recipe_file, validate, with_design
from negscale.results import RunRecord, is_valid_record, load, record_path, runs_dir

HEARTBEAT_S = 30.0  # a held lock's mtime is refreshed this often
FOREIGN_STALE_S = 600.0  # a lock from another host is stale when not refreshed for this long
EMPTY_STALE_S = 30.0  # a lock file without owner info (killed while claiming) after this long
HOST = socket.gethostname()
_COST_COLUMNS = {"epochs", "tau", "wall_s", "train_s", "samples_per_s", "peak_mem_mb",
                 "loss_gflops", "negatives_used"}  # fmt: skip

# ---------------------------------------------------------------- grid parsing

_NUMBER = re.compile(r"^(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_POWER = re.compile(r"^(\d+)\*\*(\d+)$")


def _number(text: str, what: str) -> float:
    """One value: a decimal (``0.25``, ``1e3``) or a power (``2**10``)."""
    t = text.strip()
    power = _POWER.match(t)
    if power:
        return float(int(power[1]) ** int(power[2]))
    if not _NUMBER.match(t):
        raise NegscaleError(f"{what}: {text.strip()!r} is not a positive number or B**E")
    return float(t)


def _range(text: str, what: str) -> list[float]:
    """``B**a..B**b`` gives the powers B^a..B^b; ``a..b`` the integers a..b."""
    lo_text, hi_text = (s.strip() for s in text.split("..", 1))
    lo_pow, hi_pow = _POWER.match(lo_text), _POWER.match(hi_text)
    if lo_pow and hi_pow:
        if lo_pow[1] != hi_pow[1]:
            raise NegscaleError(f"{what}: range {text!r} mixes bases {lo_pow[1]} and {hi_pow[1]}")
        base, lo, hi = int(lo_pow[1]), int(lo_pow[2]), int(hi_pow[2])
        return [float(base**e) for e in range(lo, hi + 1)]
    lo_v, hi_v = _number(lo_text, what), _number(hi_text, what)
    if lo_v != int(lo_v) or hi_v != int(hi_v):
        raise NegscaleError(f"{what}: range {text!r} needs integer ends or B**a..B**b")
    return [float(v) for v in range(int(lo_v), int(hi_v) + 1)]


def _geom(text: str, what: str, integer: bool) -> list[float]:
    parts = text.split(":")
    if len(parts) != 4:
        raise NegscaleError(f"{what}: expected geom:START:STOP:COUNT, got {text!r}")
    lo, hi = _number(parts[1], what), _number(parts[2], what)
    try:
        count = int(parts[3])
    except ValueError:
        raise NegscaleError(f"{what}: geom COUNT must be an integer, got {parts[3]!r}") from None
    if lo <= 0 or hi < lo or count < 1:
        raise NegscaleError(f"{what}: geom needs 0 < START <= STOP and COUNT >= 1, got {text!r}")
    if count == 1:
        return [lo]
    step = (hi / lo) ** (1 / (count - 1))
    values = [lo * step**i for i in range(count)]
    values[-1] = hi
    # Integer grids are rounded (then deduplicated by the caller); float grids
    # keep 6 significant digits so 0.1 does not print as 0.10000000000000002.
    return [float(round(v)) if integer else float(f"{v:.6g}") for v in values]


def parse_values(text: str, what: str, *, integer: bool) -> list[float]:
    """Parse a grid axis: ``1,2,4``, ``2**0..2**10``, ``geom:1:1024:11`` (or a mix of the
    first two, comma separated). Returns sorted, deduplicated positive values."""
    spec = text.strip()
    if not spec:
        raise NegscaleError(f"{what}: empty list")
    if spec.startswith("geom:"):
        values = _geom(spec, what, integer)
    else:
        values = []
        for item in spec.split(","):
            if not item.strip():
                raise NegscaleError(f"{what}: empty item in {text!r}")
            values += _range(item, what) if ".." in item else [_number(item, what)]
    for v in values:
        if not math.isfinite(v) or v <= 0:
            raise NegscaleError(f"{what}: values must be positive, got {v:g}")
        if integer and v != int(v):
            raise NegscaleError(f"{what}: expected integers, got {v:g}")
    return sorted(set(values))


def parse_ints(text: str, what: str) -> list[int]:
    return [int(v) for v in parse_values(text, what, integer=True)]


def parse_seeds(text: str) -> list[int]:
    """Seeds may be 0, which the positive-value grammar forbids: a plain list or a..b range."""
    out: set[int] = set()
    for item in text.split(","):
        t = item.strip()
        lo, _, hi = t.partition("..")
        try:
            out.update(range(int(lo), int(hi) + 1) if hi else [int(t)])
        except ValueError:
            raise NegscaleError(
                f"--seeds: expected integers like 0,1,2 or 0..4, got {text!r}"
            ) from None
    if not out:
        raise NegscaleError("--seeds: empty list")
    return sorted(out)


def resolve_samples(values: Sequence[float], data_n: int) -> list[int]:
    """n values: a value <= 1 is a fraction of the recipe's ``data.n`` (``1`` = all of it)."""
    ns = set()
    for v in values:
        if v <= 1:
            n = math.floor(v * data_n + 0.5)
            if n < 2:
                raise NegscaleError(f"--samples: {v:g} of data.n = {data_n} is fewer than 2 pairs")
        elif v != int(v):
            raise NegscaleError(f"--samples: {v:g} is neither a fraction <= 1 nor an integer")
        else:
            n = int(v)
        ns.add(n)
    return sorted(ns)


def m_from_ratio(ratio: float, n: int) -> int:
    """The paper's design: m = round(ratio * n), at least 1 (half rounds up)."""
    return max(1, math.floor(ratio * n + 0.5))


def parse_shard(text: str) -> tuple[int, int]:
    """``I/N`` with shards numbered 1..N (Slurm: ``--array=1-N``)."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match:
        raise NegscaleError(f"--shard: expected I/N (e.g. 1/4), got {text!r}")
    i, n = int(match[1]), int(match[2])
    if n < 1 or not 1 <= i <= n:
        raise NegscaleError(f"--shard: shards are numbered 1..N, got {text!r}")
    return i, n


# ---------------------------------------------------------------- the plan


@dataclass(frozen=True)
class GridSpec:
    """The grid as typed on the command line; None falls back to the recipe's [sweep]."""

    negatives: str | None = None
    ratios: str | None = None
    samples: str | None = None
    seeds: str | None = None


@dataclass
class Plan:
    """The resolved, validated runs of a study, in a deterministic (n, m, seed) order."""

    name: str
    setting: str
    recipes: list[Recipe]

    @property
    def run_ids(self) -> list[str]:
        return [r.run_id() for r in self.recipes]

    def shard(self, shard: tuple[int, int] | None) -> list[Recipe]:
        """Shard I of N: every N-th of the sorted run_ids, starting at the (I-1)-th.

        The split depends only on the plan, never on what is done, so shards
        started at different times never overlap and always cover the plan.
        """
        if shard is None:
            return list(self.recipes)
        i, count = shard
        ids = sorted(self.run_ids)
        mine = set(ids[i - 1 :: count])
        return [r for r in self.recipes if r.run_id() in mine]


def _axes(
    raw: dict[str, Any], grid: GridSpec
) -> tuple[Recipe, list[int] | None, list[float] | None, list[int], list[int]]:
    """Read the base recipe and the grid axes (command line over the recipe's [sweep])."""
    sweep_raw = raw.get("sweep") if isinstance(raw.get("sweep"), dict) else {}
    if grid.negatives is not None and grid.ratios is not None:
        raise NegscaleError("give --negatives or --ratios, not both")
    # A source like pool needs m, which the grid will supply: validate the base
    # recipe with a placeholder m when the grid has an m axis.
    keys = (grid.negatives, grid.ratios, sweep_raw.get("negatives"), sweep_raw.get("ratios"))
    base = validate(with_design(raw, m=1) if any(keys) else raw)
    cfg = base.sweep
    negatives: list[int] | None = None
    ratios: list[float] | None = None
    if grid.negatives is not None:
        negatives = parse_ints(grid.negatives, "--negatives")
    elif grid.ratios is not None:
        ratios = parse_values(grid.ratios, "--ratios", integer=False)
    elif cfg.negatives and cfg.ratios:
        raise NegscaleError("recipe [sweep]: set negatives or ratios, not both")
    elif cfg.negatives:
        negatives = sorted(set(cfg.negatives))
    elif cfg.ratios:
        ratios = sorted(set(cfg.ratios))
        if min(ratios) <= 0:
            raise NegscaleError("recipe [sweep].ratios: values must be positive")
    if grid.samples is not None:
        ns = resolve_samples(parse_values(grid.samples, "--samples", integer=False), base.data.n)
    else:
        ns = sorted(set(cfg.samples)) or [base.data.n]
    seeds = parse_seeds(grid.seeds) if grid.seeds is not None else sorted(set(cfg.seeds))
    return base, negatives, ratios, ns, seeds


def make_plan(
    source: str, overrides: Sequence[str] | None = None, grid: GridSpec | None = None
) -> Plan:
    """Resolve and validate every point of the grid before anything runs.

    An infeasible point (m > n for a pool, m > B-1 for in-batch negatives, a
    source not available) is one NegscaleError naming the point and how many
    others share the problem.
    """
    from negscale.negatives import SOURCES

    grid = grid or GridSpec()
    name, raw = read_recipe_file(source)
    raw = apply_overrides(raw, list(overrides or []))
    raw["name"] = raw.get("name", name)
    base, negatives, ratios, ns, seeds = _axes(raw, grid)

    points: list[tuple[int, int | None, int]] = []
    for n in ns:
        if ratios is not None:
            ms: list[int | None] = sorted({m_from_ratio(r, n) for r in ratios})
        else:
            ms = list(negatives) if negatives is not None else [None]
        points += [(n, m, seed) for m in ms for seed in seeds]

    recipes: list[Recipe] = []
    problems: list[str] = []
    for n, m, seed in points:
        try:
            r = validate(with_design(raw, m=m, n=n, seed=seed))
            if r.negatives.source not in SOURCES:
                raise NegscaleError(
                    f"negatives.source: '{r.negatives.source}' is not available"
                    f" (have: {', '.join(SOURCES)})"
                )
        except NegscaleError as exc:
            problems.append(f"m={m if m is not None else base.m}, n={n}: {exc}")
            continue
        recipes.append(r)
    if problems:
        raise NegscaleError(
            f"sweep: {len(problems)} of {len(points)} planned runs are invalid, e.g. {problems[0]}"
        )
    unique = {r.run_id(): r for r in recipes}
    ordered = sorted(unique.values(), key=lambda r: (r.data.n, r.m, r.train.seed, r.run_id()))
    return Plan(name=base.name, setting=base.setting, recipes=ordered)


# ---------------------------------------------------------------- files on disk


def lock_path(results: str | Path, run_id: str) -> Path:
    return runs_dir(results) / f".{run_id}.lock"


def stray_files(results: str | Path, run_id: str) -> list[Path]:
    """Temporary files a killed write of this run may leave (record and checkpoint)."""
    results = Path(results)
    found = list(runs_dir(results).glob(f".{run_id}.*.tmp"))
    ckpt_tmp = results / "checkpoints" / f"{run_id}.tmp"
    return found + ([ckpt_tmp] if ckpt_tmp.exists() else [])


def record_state(results: str | Path, run_id: str) -> str:
    """``done`` (a valid record), ``corrupt`` (a file that is not one) or ``pending``."""
    path = record_path(results, run_id)
    if not path.exists():
        return "pending"
    return "done" if is_valid_record(path) else "corrupt"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _try_flock(fd: int) -> bool | None:
    """True: locked; False: another open file holds it; None: the filesystem cannot flock."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:
        return None
    return True


def _owner(fd: int) -> dict[str, Any]:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _is_stale(fd: int, flock_free: bool | None) -> bool:
    """Whether the lock open on ``fd`` was left by a process that is gone.

    Same host: its pid is dead, or nobody holds the flock that every live owner
    holds. Another host: its heartbeat (mtime) stopped ``FOREIGN_STALE_S`` ago.
    """
    info = _owner(fd)
    age = time.time() - os.fstat(fd).st_mtime
    if "pid" not in info or "host" not in info:
        return age > EMPTY_STALE_S
    if info["host"] == HOST:
        return bool(flock_free) or not _pid_alive(int(info["pid"]))
    return age > FOREIGN_STALE_S


def _reclaim_if_stale(path: Path) -> bool:
    """Remove a stale lock; True when the caller should try to create it again."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return True
    try:
        locked = _try_flock(fd)
        if locked is False:
            return False  # a live owner holds it
        try:
            if os.fstat(fd).st_ino != os.stat(path).st_ino:
                return True  # replaced while we looked: look again
        except FileNotFoundError:
            return True
        if not _is_stale(fd, locked):
            return False
        # We hold the flock on this inode, so no other reclaimer can act on it now.
        os.unlink(path)
        return True
    finally:
        os.close(fd)


class Claim:
    """An exclusive hold on one run: the lock file exists, is flock-ed and heartbeats."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path, self.fd = path, fd
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, daemon=True)
        self._beat.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                os.utime(self.fd)
            except OSError:
                return

    def release(self) -> None:
        """Stop the heartbeat and remove the lock (idempotent)."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._beat.join()
        try:
            if os.fstat(self.fd).st_ino == os.stat(self.path).st_ino:
                os.unlink(self.path)
        except FileNotFoundError:
            pass
        os.close(self.fd)


def claim(results: str | Path, run_id: str) -> Claim | None:
    """Claim a run for this process, or None when a live process holds it."""
    path = lock_path(results, run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(8):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
        except FileExistsError:
            if not _reclaim_if_stale(path):
                return None
            continue
        try:
            # Blocking: a reclaimer may hold it for an instant while it sees no owner yet.
            # Without flock (some network filesystems) the pid/heartbeat checks still apply.
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_EX)
            owner = {"pid": os.getpid(), "host": HOST, "since": time.time()}
            os.write(fd, json.dumps(owner).encode())
            return Claim(path, fd)
        except BaseException:  # e.g. SIGTERM's SystemExit right after the lock appeared
            path.unlink(missing_ok=True)
            os.close(fd)
            raise
    return None


def lock_state(results: str | Path, run_id: str) -> str | None:
    """``running`` when a live process holds the run's lock, else None (read-only check)."""
    path = lock_path(results, run_id)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        locked = _try_flock(fd)
        return None if _is_stale(fd, locked) else "running"
    finally:
        os.close(fd)


def plan_states(plan_recipes: Sequence[Recipe], results: str | Path) -> dict[str, str]:
    """run_id -> done | corrupt | running | pending, as the files show it now."""
    states = {}
    for r in plan_recipes:
        rid = r.run_id()
        state = record_state(results, rid)
        if state != "done":
            state = lock_state(results, rid) or state
        states[rid] = state
    return states


# ---------------------------------------------------------------- execution


class Listener(Protocol):
    """What a sweep reports while it runs; the CLI renders it, tests may record it."""

    def begin(self, pending: int) -> None:
        """``pending``: runs of this shard not done when the sweep started."""

    def notice(self, message: str) -> None:
        """Something the user should know (a corrupt record removed, a busy run)."""

    def started(self, recipe: Recipe) -> None:
        """A run is claimed and about to train."""

    def finished(self, recipe: Recipe, record: RunRecord | None, seconds: float) -> None:
        """A run ended: ``record`` is None when it was skipped after all (done/busy) or failed."""


class SilentListener:
    """The default listener: reports nothing."""

    def begin(self, pending: int) -> None:
        pass

    def notice(self, message: str) -> None:
        pass

    def started(self, recipe: Recipe) -> None:
        pass

    def finished(self, recipe: Recipe, record: RunRecord | None, seconds: float) -> None:
        pass


@dataclass
class SweepStats:
    """What one ``execute`` did, by run_id."""

    in_shard: int = 0
    done_before: int = 0
    trained: list[str] = field(default_factory=list)
    diverged: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    busy: list[str] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)
    cleaned: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "in_shard": self.in_shard,
            "done_before": self.done_before,
            "trained": list(self.trained),
            "diverged": list(self.diverged),
            "failed": dict(self.failed),
            "busy": list(self.busy),
            "corrupt_redone": list(self.corrupt),
            "stray_files_removed": list(self.cleaned),
        }


class _DataCache:
    """The last built dataset, reused while the data config is equal: all m and seeds of one n."""

    def __init__(self) -> None:
        self.key: str | None = None
        self.data: Any = None

    def get(self, recipe: Recipe) -> Any:
        from negscale import data as datasets

        # the towers pick the tokenizer and image statistics, so they are part of the key
        key = recipe.data.model_dump_json() + recipe.model.model_dump_json()
        if key != self.key:
            self.key, self.data = None, None  # free the old one before building the next
            self.data, self.key = datasets.build(recipe.data, recipe.model), key
        return self.data


def execute(
    plan: Plan,
    results: str | Path,
    *,
    shard: tuple[int, int] | None = None,
    device: str | None = None,
    listener: Listener | None = None,
) -> SweepStats:
    """Train every run of this shard that has no valid record, each under a claim.

    A diverged run is recorded by the trainer and reported; an unexpected error
    in one run is reported and the sweep goes on (the run stays pending, so a
    re-run retries it); a user error (NegscaleError) stops the sweep.
    """
    from negscale.train import run

    listener = listener or SilentListener()
    results = Path(results)
    mine = plan.shard(shard)
    states = {r.run_id(): record_state(results, r.run_id()) for r in mine}
    todo = [r for r in mine if states[r.run_id()] != "done"]
    stats = SweepStats(in_shard=len(mine), done_before=len(mine) - len(todo))
    cache = _DataCache()
    listener.begin(len(todo))
    for recipe in todo:
        rid = recipe.run_id()
        held = claim(results, rid)
        if held is None:
            stats.busy.append(rid)
            listener.notice(f"run {rid} is being trained by another process: skipped")
            listener.finished(recipe, None, 0.0)
            continue
        # try/finally rather than `with`: a signal arriving while __enter__ runs
        # would skip __exit__ and leave the lock behind.
        try:
            for stray in stray_files(results, rid):
                stray.unlink(missing_ok=True)
                stats.cleaned.append(str(stray))
            state = record_state(results, rid)
            if state == "done":  # finished by another process since we looked
                listener.finished(recipe, None, 0.0)
                continue
            if state == "corrupt":
                path = record_path(results, rid)
                listener.notice(f"corrupt run record {path}: removed, redoing the run")
                path.unlink(missing_ok=True)
                stats.corrupt.append(rid)
            listener.started(recipe)
            start = time.perf_counter()
            try:
                record = run(recipe, results, device=device, progress=False, data=cache.get(recipe))
            except NegscaleError:
                raise
            except Exception as exc:
                stats.failed[rid] = f"{type(exc).__name__}: {exc}"
                listener.notice(f"run {rid} (m={recipe.m}, n={recipe.data.n}) failed: {exc}")
                listener.finished(recipe, None, time.perf_counter() - start)
                continue
            stats.trained.append(rid)
            if record.status != "ok":
                stats.diverged.append(rid)
            listener.finished(recipe, record, time.perf_counter() - start)
        finally:
            held.release()
    return stats


# ---------------------------------------------------------------- summary


def check_metric(metric: str) -> None:
    """The summary metric must be a numeric outcome column of the run records."""
    numeric = [f.name for f in fields(RunRecord) if "float" in str(f.type)]
    outcomes = [n for n in numeric if n not in _COST_COLUMNS]
    if metric not in outcomes:
        raise NegscaleError(f"--metric: expected one of {', '.join(outcomes)}, got {metric!r}")


def _mean_sd(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"mean": None, "sd": None}
    mean = sum(values) / len(values)
    if len(values) < 2:
        return {"mean": mean, "sd": None}
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return {"mean": mean, "sd": math.sqrt(var)}


def study_frame(plan: Plan, results: str | Path) -> Any:
    """The valid records of the planned runs as one DataFrame (what --fit reads)."""
    files = [record_path(results, rid) for rid in plan.run_ids]
    return load([f for f in files if f.exists() and is_valid_record(f)])


def summarise(
    plan: Plan, results: str | Path, metrics: Sequence[str] = ("auc", "recall_at_1")
) -> dict[str, Any]:
    """Per run and per (n, m) cell: each metric's mean and sd over the seeds that finished ok."""
    frame = study_frame(plan, results)
    rows = {row["run_id"]: row for row in frame.to_dict("records")}
    runs, cells = [], {}
    for r in plan.recipes:
        rid = r.run_id()
        row = rows.get(rid)
        status = "pending" if row is None else str(row["status"])
        values = {k: (row or {}).get(k) for k in metrics}
        runs.append({"run_id": rid, "m": r.m, "n": r.data.n, "seed": r.train.seed,
                     "status": status, **values})  # fmt: skip
        cell = cells.setdefault((r.data.n, r.m), {"planned": 0, "ok": 0, "diverged": 0,
                                                  "values": {k: [] for k in metrics}})  # fmt: skip
        cell["planned"] += 1
        if status == "ok":
            cell["ok"] += 1
            for k in metrics:
                v = values[k]
                if v is not None and math.isfinite(float(v)):
                    cell["values"][k].append(float(v))
        elif status == "diverged":
            cell["diverged"] += 1
    cell_rows = [
        {
            "n": n,
            "m": m,
            "ratio": m / n,
            "planned": c["planned"],
            "ok": c["ok"],
            "diverged": c["diverged"],
            **{k: _mean_sd(c["values"][k]) for k in metrics},
        }
        for (n, m), c in sorted(cells.items())
    ]
    done = sum(1 for r in runs if r["status"] != "pending")
    return {
        "study": plan.name,
        "setting": plan.setting,
        "results": str(results),
        "metrics": list(metrics),
        "planned": len(runs),
        "recorded": done,
        "cells": cell_rows,
        "runs": runs,
    }
