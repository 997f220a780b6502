"""Distributed pieces on CPU with gloo: gathered negatives keep their gradients."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from negscale.distributed import all_gather_with_grad, env_info
from negscale.losses import contrastive_loss


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _data(batch: int, dim: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return (
        torch.randn(batch, 6, generator=g),
        torch.randn(batch, 6, generator=g),
        torch.randn(6, dim, generator=g),
    )


def _worker(rank: int, world: int, port: int, queue) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    x, y, w = _data(8, 4)
    w = w.clone().requires_grad_()
    rows = slice(rank * 4, (rank + 1) * 4)
    img = all_gather_with_grad(F.normalize(x[rows] @ w, dim=-1))
    txt = all_gather_with_grad(F.normalize(y[rows] @ w, dim=-1))
    loss = contrastive_loss(img, txt, tau=0.1, form="infonce")
    loss.backward()
    grad = w.grad.clone()
    dist.all_reduce(grad)  # what DDP does: average parameter gradients over ranks
    queue.put((rank, float(loss), (grad / world).tolist()))
    dist.destroy_process_group()


def test_gathered_loss_and_gradient_equal_the_single_process_ones() -> None:
    x, y, w = _data(8, 4)
    w = w.clone().requires_grad_()
    ref = contrastive_loss(
        F.normalize(x @ w, dim=-1), F.normalize(y @ w, dim=-1), tau=0.1, form="infonce"
    )
    ref.backward()
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_worker, args=(r, 2, port, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    for _, loss, grad in results:
        assert loss == pytest.approx(ref.item(), abs=1e-6)
        torch.testing.assert_close(torch.tensor(grad), w.grad, atol=1e-6, rtol=1e-5)


def test_single_process_is_a_no_op(monkeypatch) -> None:
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    info = env_info()
    assert (info.rank, info.world_size, info.enabled, info.is_main) == (0, 1, False, True)
    t = torch.ones(3, requires_grad=True)
    assert all_gather_with_grad(t) is t
