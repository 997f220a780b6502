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


@pytest.mark.parametrize(
    "extra,m",
    [([], 9), (["negatives.source='pool'", "negatives.m=100", "negatives.pool_exact_max=0"], None)],
)
def test_torchrun_two_processes_equal_one_process(tmp_path, tiny_overrides, extra, m) -> None:
    """Two gloo processes on one global batch train exactly what one process trains."""
    import json
    import subprocess
    import sys

    from negscale.recipe import load_recipe
    from negscale.train import run

    overrides = [*tiny_overrides, "train.steps=12", *extra]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(_free_port()),
        "-m",
        "negscale.cli",
        "train",
        "quickstart",
        *[a for o in overrides for a in ("--set", o)],
        *(["-m", str(m)] if m else []),
        "--results",
        str(tmp_path / "two"),
        "--device",
        "cpu",
        "--json",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    two = json.loads(done.stdout)

    one = run(load_recipe("quickstart", overrides, m=m), tmp_path / "one", progress=False)
    assert two["world_size"] == 2 and one.world_size == 1
    assert two["run_id"] == one.run_id
    assert two["train_loss"] == pytest.approx(one.train_loss, rel=1e-5)
    for key in ("auc", "recall_at_1", "val_loss"):
        assert two[key] == pytest.approx(getattr(one, key), abs=1e-4)
    assert [p.name for p in (tmp_path / "two" / "runs").iterdir()] == [f"{one.run_id}.parquet"]


def test_global_batch_must_split_evenly_over_processes(monkeypatch) -> None:
    from negscale import train
    from negscale.distributed import DistInfo
    from negscale.errors import NegscaleError
    from negscale.recipe import load_recipe

    monkeypatch.setattr(train.distributed, "init", lambda kind: DistInfo(0, 3, 0))
    with pytest.raises(NegscaleError, match="divide evenly over 3 processes"):
        train.resolve_runtime(load_recipe("quickstart"), "cpu")  # batch 320 over 3
    monkeypatch.setattr(train.distributed, "init", lambda kind: DistInfo(1, 4, 1))
    assert train.resolve_runtime(load_recipe("quickstart"), "cpu").dist.rank == 1
