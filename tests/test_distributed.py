"""Distributed on CPU with gloo: gathers keep their gradients; local loss = one process."""

from __future__ import annotations

import io
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


def _join(rank: int, world: int, port: int) -> None:
    """A spawned worker joins the gloo group on one thread."""
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)


def _spawn(target, world: int, timeout: float = 240) -> dict:
    """Run ``target(rank, world, port, queue)`` in ``world`` processes; rank -> what it put."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=target, args=(r, world, port, queue)) for r in range(world)]
    for p in procs:
        p.start()
    got = dict(queue.get(timeout=timeout) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    return got


def _data(batch: int, dim: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return (
        torch.randn(batch, 6, generator=g),
        torch.randn(batch, 6, generator=g),
        torch.randn(6, dim, generator=g),
    )


def _worker(rank: int, world: int, port: int, queue) -> None:
    _join(rank, world, port)
    x, y, w = _data(8, 4)
    w = w.clone().requires_grad_()
    rows = slice(rank * 4, (rank + 1) * 4)
    img = all_gather_with_grad(F.normalize(x[rows] @ w, dim=-1))
    txt = all_gather_with_grad(F.normalize(y[rows] @ w, dim=-1))
    loss = contrastive_loss(img, txt, tau=0.1, form="infonce")
    loss.backward()
    grad = w.grad.clone()
    dist.all_reduce(grad)  # what DDP does: average parameter gradients over ranks
    queue.put((rank, (float(loss), (grad / world).tolist())))
    dist.destroy_process_group()


def test_gathered_loss_and_gradient_equal_the_single_process_ones() -> None:
    x, y, w = _data(8, 4)
    w = w.clone().requires_grad_()
    ref = contrastive_loss(
        F.normalize(x @ w, dim=-1), F.normalize(y @ w, dim=-1), tau=0.1, form="infonce"
    )
    ref.backward()
    results = _spawn(_worker, 2).values()
    for loss, grad in results:
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
    [(["negatives.source='pool'", "negatives.m=100", "negatives.pool_exact_max=0"], None)],
)
def test_torchrun_two_processes_equal_one_process(tmp_path, tiny_overrides, extra, m) -> None:
    """Two gloo processes launched by torchrun train what one process trains (the CLI path;
    every source is compared in-process by the local-loss test below)."""
    import json
    import subprocess
    import sys

    from negscale.config import load_recipe
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
    for key in ("auc", "recall_at_1", "val_loss", "select_auc"):
        assert two[key] == pytest.approx(getattr(one, key), abs=1e-4)
    assert two["selected_step"] == one.selected_step  # the ranks chose as one process did
    # rank 0 alone writes: one record and its training curve, nothing per rank
    written = sorted(p.name for p in (tmp_path / "two" / "runs").iterdir())
    assert written == [f"{one.run_id}.history.parquet", f"{one.run_id}.parquet"]


def test_global_batch_must_split_evenly_over_processes(monkeypatch) -> None:
    from negscale import train
    from negscale.config import load_recipe
    from negscale.distributed import DistInfo
    from negscale.errors import NegscaleError

    monkeypatch.setattr(train.distributed, "init", lambda kind: DistInfo(0, 3, 0))
    with pytest.raises(NegscaleError, match="divide evenly over 3 processes"):
        train.resolve_runtime(load_recipe("quickstart"), "cpu")  # batch 320 over 3
    monkeypatch.setattr(train.distributed, "init", lambda kind: DistInfo(1, 4, 1))
    assert train.resolve_runtime(load_recipe("quickstart"), "cpu").dist.rank == 1


# ------------------------------------------------------------------ local loss, every source

SMALL = [
    "data.n=40",
    "data.n_eval=64",
    "train.batch_size=8",
    "train.steps=3",
    "model.hidden=16",
    "model.embed_dim=8",
    "eval.prototypes=64",
    "negatives.chunk=4",
    "model.learn_tau=true",
]
CASES = {
    "batch": ([], None),
    "subsample": ([], 5),
    "independent": (["negatives.source='independent'"], 12),
    "independent-cached": (["negatives.source='independent'", "train.micro_batch=3"], 12),
    "pool-exact": (["negatives.source='pool'", "negatives.loss_form='paper'"], 20),
    "pool-estimator": (
        ["negatives.source='pool'", "negatives.pool_exact_max=0", "negatives.pool_batch=6"],
        30,
    ),
    "pool-at-n": (["negatives.source='pool'", "negatives.pool_exact_max=0"], 40),
    "queue": (["negatives.source='queue'"], 20),
    "queue-momentum": (["negatives.source='queue'", "negatives.momentum=0.5"], 20),
    "queue-momentum-cached": (
        ["negatives.source='queue'", "negatives.momentum=0.5", "train.micro_batch=3"],
        20,
    ),
}


def _train_cases(info) -> dict:
    """Per case: step losses, final parameters, source state after 3 steps."""
    from negscale.config import load_recipe
    from negscale.train import Runtime, Trainer

    out = {}
    for name, (extra, m) in CASES.items():
        r = load_recipe("quickstart", [*SMALL, *extra], m=m)
        trainer = Trainer(r, Runtime(torch.device("cpu"), "fp32", False, info), progress=False)
        rows = trainer.stepper.rows(8)  # local loss: this rank's 8 / world anchors
        assert (rows.start, rows.stop) == (
            info.rank * 8 // info.world_size,
            (info.rank + 1) * 8 // info.world_size,
        )
        for _ in range(r.train.steps):
            trainer.train_step()
        trainer.log.flush()
        params = torch.cat([p.detach().flatten() for p in trainer.model.parameters()])
        out[name] = (trainer.log.losses, params, trainer.source.state_dict())
    return out


def _validation(info) -> tuple[float, list[int]]:
    """A tiny run's validation AUC after its steps, and the validation rows this rank embeds.

    63 validation pairs: shares of 31 and 32 rows over two ranks (the padded gather).
    """
    from negscale.config import load_recipe
    from negscale.data import loader
    from negscale.train import Runtime, Trainer

    r = load_recipe("quickstart", [*SMALL, "data.n_eval=63"])
    assert r.train.select == "best"
    trainer = Trainer(r, Runtime(torch.device("cpu"), "fp32", False, info), progress=False)
    for _ in range(r.train.steps):
        trainer.train_step()
    auc = trainer.evaluator.validation_auc()
    rows = torch.cat([i for i, _, _ in loader.unwrapped(trainer.evaluator._val_loader)]).tolist()
    return auc, rows


def _local_worker(rank: int, world: int, port: int, queue) -> None:
    from negscale.distributed import DistInfo

    _join(rank, world, port)
    try:
        blob = io.BytesIO()  # plain bytes: shared-memory tensors die with the process
        info = DistInfo(rank, world, rank)
        torch.save({"cases": _train_cases(info), "validation": _validation(info)}, blob)
        queue.put((rank, blob.getvalue()))
    except Exception as exc:  # fail the test at once, not at the queue's timeout
        queue.put((rank, repr(exc)))
        raise
    finally:
        dist.destroy_process_group()


def _same(a, b, what: str) -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys(), what
        for k in a:
            _same(a[k], b[k], f"{what}.{k}")
    elif isinstance(a, torch.Tensor):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, equal_nan=True, msg=what)
    else:
        assert a == b, what


def test_two_gloo_processes_with_local_loss_equal_one_process_for_every_source() -> None:
    """Each rank scores its own anchors against the gathered set; one process's run results."""
    from negscale.distributed import DistInfo

    got = _spawn(_local_worker, 2)
    errors = [v for v in got.values() if isinstance(v, str)]
    assert not errors, errors
    results = {rank: torch.load(io.BytesIO(blob), weights_only=False) for rank, blob in got.items()}
    one = _train_cases(DistInfo())
    for name, (losses, params, state) in one.items():
        for rank in (0, 1):
            r_losses, r_params, r_state = results[rank]["cases"][name]
            assert r_losses == pytest.approx(losses, rel=1e-5), name
            torch.testing.assert_close(r_params, params, rtol=1e-5, atol=1e-5, msg=name)
            _same(r_state, state, name)
    # validation (train.select = "best"): each rank embeds its share, every rank the same AUC
    auc, rows = _validation(DistInfo())
    assert rows == list(range(63))
    assert [results[r]["validation"][1] for r in (0, 1)] == [list(range(31)), list(range(31, 63))]
    for rank in (0, 1):
        assert results[rank]["validation"][0] == pytest.approx(auc, abs=1e-6)


def test_shares_cover_the_rows_once_and_a_gather_needs_its_process_group() -> None:
    from negscale.distributed import gather_shares, share

    for total, world in ((5, 2), (63, 2), (10, 4), (8, 8)):
        rows = [list(share(total, world, r)) for r in range(world)]
        assert [i for part in rows for i in part] == list(range(total))
        assert max(map(len, rows)) - min(map(len, rows)) <= 1
    x = torch.arange(6.0)[:, None]
    assert gather_shares(x, 6, 1, torch.device("cpu")) is x
    with pytest.raises(RuntimeError, match="outside a process group of 2"):
        gather_shares(x, 12, 2, torch.device("cpu"))
