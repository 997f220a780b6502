"""Loss and step benchmarks against peers, measured in the same process and run.

Ratios are always against a peer timed right next to the subject, never
against numbers from elsewhere: machines and loads differ, a ratio on one run
does not. Fairness rules:

- implementations alternate call by call, so a busy spell hits all of them;
- time is CPU time of the process (``time.process_time``) on CPUs, so other
  processes on a shared machine do not count; wall time with syncs on CUDA;
  the median of ``repeats`` calls after a warm-up;
- the timing process runs with the allocator as a user's process has it.
  Memory is measured in a separate pass in a child process (on CPUs the peak
  resident set, with glibc told to return large blocks to the system there
  only), on CUDA from the allocator's peak counter;
- every loss row carries its multiple of the FLOP floor, 6 B M d FLOPs (the
  three matmuls a forward+backward of one score matrix needs) at this
  machine's sgemm rate, measured in the same run.
"""

from __future__ import annotations

import ctypes
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from negscale import memory
from negscale.losses import contrastive_loss


def _glibc_return_large_blocks() -> None:
    """Serve blocks >= 64 KiB with mmap so a freed tensor leaves the resident set."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 64 * 1024)  # M_MMAP_THRESHOLD: fixed, no dynamic growth
    except (OSError, AttributeError):
        pass


def peak_extra_mb(fn: Callable[[], Any], device: torch.device) -> float | None:
    """Peak memory (MiB) that ``fn()`` needs beyond what was held before it."""
    if not memory.reset_peak(device):
        return None
    base = memory.current_mb(device)
    fn()
    peak = memory.peak_mb(device)
    return None if base is None else max(0.0, peak - base)


def _clock(device: torch.device) -> Callable[[], float]:
    if device.type == "cuda":

        def wall() -> float:
            torch.cuda.synchronize(device)
            return time.perf_counter()

        return wall
    return time.process_time


def time_alternating(
    fns: dict[str, Callable[[], Any]], device: torch.device, repeats: int = 5
) -> dict[str, float]:
    """Median time (ms) of each ``fn()``: one warm-up each, then ``repeats`` rounds in turn."""
    clock = _clock(device)
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = clock()
            fn()
            times[name].append((clock() - t0) * 1e3)
    return {name: statistics.median(ts) for name, ts in times.items()}


def _sgemm_probe(dim: int, device: torch.device, size: int = 1024) -> Callable[[], Any]:
    """A cache-friendly (size x dim) @ (dim x size) matmul: the machine's sgemm rate probe."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(size, dim, generator=gen).to(device)
    y = torch.randn(size, dim, generator=gen).to(device)
    out = torch.empty(size, size, device=device)
    return lambda: torch.mm(x, y.T, out=out)


def _clip_loss() -> Callable[..., torch.Tensor] | None:
    try:
        from open_clip.loss import ClipLoss
    except Exception:  # not installed, or broken optional deps
        return None
    return ClipLoss()


def _dense_reference(
    img: torch.Tensor, txt: torch.Tensor, negs: torch.Tensor | None, tau: float
) -> torch.Tensor:
    """The textbook loss in plain autograd: the full score matrix, logsumexp per direction."""
    pos = (img * txt).sum(dim=-1) / tau
    if negs is None:
        logits = img @ txt.T / tau
        fwd, back = torch.logsumexp(logits, dim=1), torch.logsumexp(logits, dim=0)
        return (0.5 * (fwd + back) - pos).mean()
    lse = torch.logsumexp(img @ negs.T / tau, dim=1)
    return (torch.logaddexp(pos, lse) - pos).mean()


def _loss_impls(
    b: int, dim: int, m: int | None, dev: torch.device, tile: int | None, tau: float
) -> tuple[dict[str, Callable[[], None]], int]:
    """Forward+backward closures per implementation on seeded inputs, and the width M."""
    gen = torch.Generator().manual_seed(b)

    def leaf(count: int) -> torch.Tensor:
        x = F.normalize(torch.randn(count, dim, generator=gen), dim=-1)
        return x.to(dev).requires_grad_()

    img, txt = leaf(b), leaf(b)
    negs = None if m is None else leaf(m)
    inputs = [t for t in (img, txt, negs) if t is not None]

    def run(loss_fn: Callable[[], torch.Tensor]) -> Callable[[], None]:
        return lambda: torch.autograd.grad(loss_fn(), inputs) and None

    impls = {
        "tiled": run(lambda: contrastive_loss(img, txt, negs, tau=tau, form="infonce", tile=tile))
    }
    clip = _clip_loss() if m is None else None
    if clip is not None:
        scale = torch.tensor(1.0 / tau, device=dev)
        impls["open_clip"] = run(lambda: clip(img, txt, scale))
    else:
        impls["dense"] = run(lambda: _dense_reference(img, txt, negs, tau))
    return impls, b if m is None else m


def _memory_pass(spec: dict[str, Any]) -> dict[str, float | None]:
    """Peak extra MiB of each (B, impl) of ``spec``: run in a child process (see module doc)."""
    dev = torch.device(spec["device"])
    if dev.type == "cpu":
        _glibc_return_large_blocks()
    torch.set_num_threads(spec["threads"])
    out: dict[str, float | None] = {}
    for b in spec["batches"]:
        impls, _ = _loss_impls(b, spec["dim"], spec["m"], dev, spec["tile"], spec["tau"])
        for name, fn in impls.items():
            fn()  # warm-up: lazy initialisation is not the loss's memory
            out[f"{b}:{name}"] = peak_extra_mb(fn, dev)
    return out


def _in_child(func: str, spec: dict[str, Any]) -> Any:
    """``negscale.bench.<func>(spec)`` in a fresh interpreter, its JSON result (None on failure).

    Memory passes run there so the timing process keeps its allocator as a
    user's process has it.
    """
    code = f"import json,sys;from negscale.bench import {func} as f;"
    code += "print(json.dumps(f(json.loads(sys.argv[1]))))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    res = subprocess.run(
        [sys.executable, "-c", code, json.dumps(spec)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if res.returncode != 0 or not res.stdout.strip():
        return None
    return json.loads(res.stdout.strip().splitlines()[-1])


def measure_memory(spec: dict[str, Any]) -> dict[str, float | None]:
    """:func:`_memory_pass` in a child process (see :func:`_in_child`)."""
    return _in_child("_memory_pass", spec) or {}


def _step_memory_pass(spec: dict[str, Any]) -> float | None:
    """Peak extra MiB of a few train steps of one (source, m), after a warm-up step."""
    from negscale.config import load_recipe
    from negscale.train import Trainer, resolve_runtime

    torch.set_num_threads(spec["threads"])
    sets = [*spec["overrides"], f"negatives.source='{spec['source']}'", "train.steps=8"]
    r = load_recipe(spec["recipe"], sets, m=spec["m"])
    trainer = Trainer(r, resolve_runtime(r, spec["device"]), progress=False)
    if trainer.runtime.device.type == "cpu":
        _glibc_return_large_blocks()
    trainer.train_step()

    def steps() -> None:
        for _ in range(3):
            trainer.train_step()

    return peak_extra_mb(steps, trainer.runtime.device)


def bench_loss(
    batches: list[int],
    dim: int,
    m: int | None,
    device: str | torch.device,
    *,
    tile: int | None = None,
    tau: float = 0.07,
    repeats: int = 5,
    memory: bool = True,
) -> list[dict[str, Any]]:
    """Forward+backward time, FLOP-floor multiple and peak memory of the loss, per implementation.

    ``tiled``: :func:`contrastive_loss` (the shared-tile LSE, at most ``tile``
    columns a tile); ``open_clip``: open_clip's ``ClipLoss`` when importable,
    else ``dense``: the textbook loss in plain autograd. ``m=None`` means
    in-batch symmetric InfoNCE (m = B - 1, ClipLoss's setting); otherwise B
    anchors against m shared negatives, one direction (``tiled`` vs ``dense``).
    Each row carries ``time_ratio`` and ``mem_ratio`` against the ``peer``
    of the same B, and ``floor_ms`` / ``floor_x``: 6 B M d FLOPs at the sgemm
    rate measured alongside. ``memory=False`` skips the memory pass.
    """
    dev = torch.device(device)
    spec = {"batches": batches, "dim": dim, "m": m, "device": str(dev), "tile": tile, "tau": tau}
    spec["threads"] = torch.get_num_threads()
    mem = measure_memory(spec) if memory else {}
    probe, probe_flops = _sgemm_probe(dim, dev), 2 * 1024 * 1024 * dim
    rows: list[dict[str, Any]] = []
    for b in batches:
        impls, width = _loss_impls(b, dim, m, dev, tile, tau)
        ms = time_alternating({**impls, "sgemm": probe}, dev, repeats)
        gflops = probe_flops / ms.pop("sgemm") / 1e6
        floor = 6 * b * width * dim / (gflops * 1e6)
        peer = "open_clip" if "open_clip" in ms else "dense"
        for name, t in ms.items():
            peak, ref_peak = mem.get(f"{b}:{name}"), mem.get(f"{b}:{peer}")
            rows.append(
                {
                    "batch": b,
                    "dim": dim,
                    "m": width - 1 if m is None else m,
                    "impl": name,
                    "tile": tile if name == "tiled" else None,
                    "device": str(dev),
                    "ms": t,
                    "sgemm_gflops": gflops,
                    "floor_ms": floor,
                    "floor_x": t / floor,
                    "peak_mb": peak,
                    "peer": peer,
                    "time_ratio": t / ms[peer],
                    "mem_ratio": peak / ref_peak if peak is not None and ref_peak else None,
                }
            )
    return rows


def bench_source_steps(
    configs: list[tuple[str, int | None]],
    overrides: list[str] | None = None,
    *,
    recipe: str = "quickstart",
    steps: int = 30,
    warmup: int = 3,
    device: str | None = "cpu",
    memory: bool = False,
) -> list[dict[str, Any]]:
    """Median per-step train time of each (source, m), trainers stepped in turn.

    All trainers are built first and then stepped round-robin, so load spells
    on a shared machine hit every configuration alike. ``ratio`` is each row's
    step time over the first row's; ``mode`` says which pool path ran.
    ``memory``: also ``peak_mb``, the peak extra memory of 3 steps of each
    configuration, measured in a child process per configuration.
    """
    from negscale.config import load_recipe
    from negscale.train import Trainer, resolve_runtime

    trainers = []
    for source, m in configs:
        own = options_for(source, overrides or [])
        sets = [*own, f"negatives.source='{source}'", f"train.steps={warmup + steps}"]
        r = load_recipe(recipe, sets, m=m)
        trainers.append((r, Trainer(r, resolve_runtime(r, device), progress=False)))
    dev = trainers[0][1].runtime.device
    fns = {str(i): tr.train_step for i, (_, tr) in enumerate(trainers)}
    for _ in range(max(0, warmup - 1)):
        for fn in fns.values():
            fn()
    ms = time_alternating(fns, dev, steps)
    rows: list[dict[str, Any]] = []
    for i, (r, tr) in enumerate(trainers):
        exact = getattr(tr.source, "exact", None)
        mode = "in-batch" if r.negatives.source in ("batch", "subsample") else "per-anchor"
        if exact is not None:
            mode = "exact" if exact else "estimator"
        rows.append(
            {
                "source": r.negatives.source,
                "m": r.m,
                "n": r.data.n,
                "batch": r.train.batch_size,
                "mode": mode,
                "step_ms": ms[str(i)],
                "device": str(dev),
            }
        )
    for row, (source, m) in zip(rows, configs, strict=True):
        row["ratio"] = row["step_ms"] / rows[0]["step_ms"]
        if memory:
            own = options_for(source, overrides or [])
            spec = {"source": source, "m": m, "overrides": own, "recipe": recipe}
            spec.update(device=device, threads=torch.get_num_threads())
            row["peak_mb"] = _in_child("_step_memory_pass", spec)
    return rows


def options_for(source: str, overrides: list[str]) -> list[str]:
    """The ``--set`` overrides a run of ``source`` takes: one list is passed to every
    source compared, so another source's own options (``negatives.pool.gamma``, or its
    flat spelling ``negatives.gamma``) are left out rather than refused."""
    from negscale.config import parse_override
    from negscale.config.sources import source_of_key

    def foreign(text: str) -> bool:
        keys, _ = parse_override(text)
        owner = source_of_key(keys[1]) if len(keys) > 1 and keys[0] == "negatives" else None
        return owner not in (None, source)

    return [text for text in overrides if not foreign(text)]


def bench_pool_step(
    ms: list[int],
    overrides: list[str] | None = None,
    *,
    recipe: str = "quickstart",
    steps: int = 30,
    warmup: int = 3,
    device: str | None = "cpu",
) -> list[dict[str, Any]]:
    """Median per-step train time of the ``pool`` source for each m, and of ``batch``.

    ``ratio`` is each row's step time over the first m's (see :func:`bench_source_steps`).
    """
    configs: list[tuple[str, int | None]] = [("pool", m) for m in ms] + [("batch", None)]
    kw = {"recipe": recipe, "steps": steps, "warmup": warmup, "device": device}
    return bench_source_steps(configs, overrides, **kw)
