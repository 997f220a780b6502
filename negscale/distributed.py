"""torch.distributed plumbing for multi-GPU / multi-node runs launched by ``torchrun``.

negscale never launches processes itself: ``torchrun`` (or Slurm's srun with the
same environment variables) starts one process per device, and this module
reads ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` from the environment. NCCL is used
on CUDA and gloo on CPU, so the same code path runs in CPU tests.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def env_info() -> DistInfo:
    """What torchrun told this process (a single process when nothing was set)."""
    return DistInfo(
        rank=int(os.environ.get("RANK", 0)),
        world_size=int(os.environ.get("WORLD_SIZE", 1)),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
    )


def init(device_type: str) -> DistInfo:
    """Join the process group torchrun prepared (idempotent); no-op outside torchrun.

    A 1-process torchrun run joins too (NCCL on CUDA), so it exercises the
    backend; the collectives themselves are skipped for a world of one.
    """
    info = env_info()
    launched = "TORCHELASTIC_RUN_ID" in os.environ  # torchrun, even with one process
    if (info.enabled or launched) and not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend=backend)
    return info


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums every rank's gradient for this rank's slice.

    Plain ``all_gather`` cuts the graph, so other ranks' losses would not reach
    this rank's encoder. Under the local loss each rank's loss is the mean over
    its own B/W anchors, and the global loss is the mean of those W losses:
    the summed slice is W times the global loss's gradient for this rank's
    rows, and averaging parameter gradients over the W ranks
    (:func:`average_gradients`) divides the W back out, so the update equals
    one process's on the global batch (open_clip's ``gather_with_grad``).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        ctx.rank, ctx.rows = dist.get_rank(), x.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows]


def all_gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from every rank in rank order, differentiably (equal shapes)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return x
    return _GatherWithGrad.apply(x)


def world_rank() -> tuple[int, int]:
    """(world size, rank) of the joined process group; (1, 0) for one process."""
    if not dist.is_initialized():
        return 1, 0
    return dist.get_world_size(), dist.get_rank()


def all_gather(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from every rank in rank order, without gradient (equal shapes)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def share(total: int, world: int, rank: int) -> range:
    """Rank ``rank``'s contiguous share of ``total`` rows: sizes differ by at most one."""
    return range(rank * total // world, (rank + 1) * total // world)


def gather_shares(x: torch.Tensor, total: int, world: int, device: torch.device) -> torch.Tensor:
    """Every rank's :func:`share` of ``total`` rows, in order, from each rank's ``x`` (on CPU).

    all_gather needs equal shapes, so each share is padded to the largest and
    the padding dropped; NCCL gathers on ``device``, gloo on the CPU.
    """
    if world == 1:
        return x
    if world_rank()[0] != world:
        raise RuntimeError(f"gather_shares over {world} ranks outside a process group of {world}")
    rows = -(-total // world)
    padded = x.new_zeros((rows, *x.shape[1:]))
    padded[: x.shape[0]] = x
    parts = all_gather(padded.to(device)).cpu().split(rows)
    return torch.cat([part[: len(share(total, world, r))] for r, part in enumerate(parts)])


def mean_over_ranks(x: torch.Tensor) -> torch.Tensor:
    """The mean of ``x`` over ranks (a rank's local loss -> the global batch's loss)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return x
    x = x.clone()
    dist.all_reduce(x)
    return x / dist.get_world_size()


def average_gradients(params: list[torch.nn.Parameter]) -> None:
    """Average parameter gradients over ranks in one coalesced all_reduce.

    Used instead of DDP's reducer because negative sources may run the
    encoders more than once per step (extra negatives, pool members), which
    DDP's one-forward-per-step bookkeeping does not allow.
    """
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def broadcast_parameters(module: torch.nn.Module) -> None:
    """Start every rank from rank 0's weights and buffers."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return
    for t in [*module.parameters(), *module.buffers()]:
        dist.broadcast(t.data, src=0)


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()
