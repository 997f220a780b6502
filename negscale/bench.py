"""Loss and step benchmarks against peers, measured in the same process and run.

Ratios are always against a peer timed and measured right next to the
subject, never against numbers from elsewhere: machines and loads differ, a
ratio on one run does not. Memory is the peak *extra* memory of one
forward+backward: on CUDA from the allocator's peak counter, on Linux CPUs from
the process's peak resident set (reset through ``/proc/self/clear_refs``, with
glibc told to return large blocks to the system so the peak is the call's own).
Elsewhere memory is reported as None.
"""

from __future__ import annotations

import ctypes
import statistics
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


def time_ms(fn: Callable[[], Any], device: torch.device, repeats: int = 3) -> float:
    """Median wall time of ``fn()`` in milliseconds, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def _clip_loss() -> Callable[..., torch.Tensor] | None:
    try:
        from open_clip.loss import ClipLoss
    except Exception:  # not installed, or broken optional deps
        return None
    return ClipLoss()


def bench_loss(
    batches: list[int],
    dim: int,
    m: int | None,
    device: str | torch.device,
    *,
    tile: int = 1024,
    tau: float = 0.07,
    repeats: int = 3,
) -> list[dict[str, Any]]:
    """Forward+backward time and peak memory of the contrastive loss, per implementation.

    ``dense``: :func:`contrastive_loss` on the full score matrix; ``tiled``: the
    same call through the tiled LSE (tile width ``min(tile, width // 2)``, so
    there are always at least two tiles); ``open_clip``: open_clip's
    ``ClipLoss`` when importable. ``m=None`` means in-batch symmetric InfoNCE
    (m = B - 1, ClipLoss's setting); otherwise B anchors against m shared
    negatives, one direction (ClipLoss has no such mode). Each row carries
    ``time_ratio`` and ``mem_ratio`` against the ``peer`` of the same batch
    size: ClipLoss when it ran, else dense.
    """
    dev = torch.device(device)
    _glibc_return_large_blocks()
    clip = _clip_loss() if m is None else None
    rows: list[dict[str, Any]] = []
    for b in batches:
        gen = torch.Generator().manual_seed(b)

        def leaf(count: int, gen: torch.Generator = gen) -> torch.Tensor:
            x = F.normalize(torch.randn(count, dim, generator=gen), dim=-1)
            return x.to(dev).requires_grad_()

        img, txt = leaf(b), leaf(b)
        negs = None if m is None else leaf(m)
        width = b if m is None else m
        used_tile = max(1, min(tile, width // 2))
        inputs = [t for t in (img, txt, negs) if t is not None]

        def run(loss_fn: Callable[[], torch.Tensor], inputs: list = inputs) -> None:
            loss = loss_fn()
            torch.autograd.grad(loss, inputs)

        impls: dict[str, Callable[[], torch.Tensor]] = {
            "dense": lambda img=img, txt=txt, negs=negs: contrastive_loss(
                img, txt, negs, tau=tau, form="infonce"
            ),
            "tiled": lambda img=img, txt=txt, negs=negs, t=used_tile: contrastive_loss(
                img, txt, negs, tau=tau, form="infonce", tile=t
            ),
        }
        if clip is not None:
            scale = torch.tensor(1.0 / tau, device=dev)
            impls["open_clip"] = lambda img=img, txt=txt, s=scale: clip(img, txt, s)
        found: dict[str, dict[str, Any]] = {}
        for name, loss_fn in impls.items():
            ms = time_ms(lambda f=loss_fn: run(f), dev, repeats)
            mem = peak_extra_mb(lambda f=loss_fn: run(f), dev)
            found[name] = {
                "batch": b,
                "dim": dim,
                "m": width - 1 if m is None else m,
                "impl": name,
                "tile": used_tile if name == "tiled" else None,
                "device": str(dev),
                "ms": ms,
                "peak_mb": mem,
            }
        peer = "open_clip" if "open_clip" in found else "dense"
        for row in found.values():
            ref = found[peer]
            row["peer"] = peer
            row["time_ratio"] = row["ms"] / ref["ms"] if ref["ms"] else None
            both = row["peak_mb"] is not None and ref["peak_mb"]
            row["mem_ratio"] = row["peak_mb"] / ref["peak_mb"] if both else None
            rows.append(row)
    return rows


def bench_pool_step(
    ms: list[int],
    overrides: list[str] | None = None,
    *,
    recipe: str = "quickstart",
    steps: int = 30,
    warmup: int = 3,
    device: str | None = "cpu",
) -> list[dict[str, Any]]:
    """Median per-step train time of the ``pool`` source for each m, same batch size.

    Also times in-batch negatives (``batch``) as the reference a pool step is
    compared with; ``ratio`` is each row's step time over the first m's.
    """
    from negscale.recipe import load_recipe
    from negscale.train import Trainer, resolve_runtime

    rows: list[dict[str, Any]] = []
    configs: list[tuple[str, int | None]] = [("pool", m) for m in ms] + [("batch", None)]
    for source, m in configs:
        sets = [*(overrides or []), f"negatives.source='{source}'", f"train.steps={warmup + steps}"]
        r = load_recipe(recipe, sets, m=m)
        rt = resolve_runtime(r, device)
        trainer = Trainer(r, rt, progress=False)
        for _ in range(warmup):
            trainer.train_step()
        times = []
        for _ in range(steps):
            if rt.device.type == "cuda":
                torch.cuda.synchronize(rt.device)
            t0 = time.perf_counter()
            trainer.train_step()
            if rt.device.type == "cuda":
                torch.cuda.synchronize(rt.device)
            times.append((time.perf_counter() - t0) * 1e3)
        exact = getattr(trainer.source, "exact", None)
        rows.append(
            {
                "source": source,
                "m": r.m,
                "n": r.data.n,
                "batch": r.train.batch_size,
                "mode": "in-batch" if exact is None else ("exact" if exact else "estimator"),
                "step_ms": statistics.median(times),
                "device": str(rt.device),
            }
        )
    for row in rows:
        row["ratio"] = row["step_ms"] / rows[0]["step_ms"]
    return rows
