"""Batches through the DataLoader: the same for any worker count, resumable, sliced per rank.

References: the trainer's own ``batch_indices`` order and a plain fetch in the
main process under the same per-step seed (no DataLoader at all).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from data_fixtures import class_folder, tar_shards

from negscale.config import DataConfig, load_recipe
from negscale.data import build, loader
from negscale.errors import NegscaleError
from negscale.train import Runtime, Trainer, batch_indices

SEED = 3


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return class_folder(tmp_path_factory.mktemp("classes"), 36)


def _augmented(root: Path):
    """A file-backed set whose training fetch is random (crops, flips, template draws)."""
    cfg = DataConfig(
        name="folder",
        path=str(root),
        n=24,
        n_eval=8,
        image_size=16,
        templates=["a photo of a {}.", "a {} shape."],
    )
    return build(cfg).train


def _order(n: int, batch: int):
    return lambda s: batch_indices(n, batch, SEED, s)


def test_same_batches_with_0_and_2_workers_as_a_plain_fetch(folder: Path) -> None:
    pairs = _augmented(folder)
    sampler = loader.StepSampler(_order(len(pairs), 8), 0, 5)
    runs = {
        w: list(loader.batches(pairs, sampler, seed=SEED, workers=w, pin=False)) for w in (0, 2)
    }
    for step, (a, b) in enumerate(zip(runs[0], runs[2], strict=True)):
        idx = batch_indices(len(pairs), 8, SEED, step)
        with loader.seeded(loader.step_seed(SEED, step)):
            x, y = pairs.fetch(idx)
        for got in (a, b):
            assert torch.equal(got[0], idx)
            assert torch.equal(got[1], x) and torch.equal(got[2], y)
    again = pairs.fetch(torch.arange(4))
    assert not torch.equal(again[0], pairs.fetch(torch.arange(4))[0])  # augmentation is live


def test_rank_slices_make_up_the_global_batch() -> None:
    order = _order(40, 8)
    whole = list(loader.StepSampler(order, 2, 6))
    parts = [list(loader.StepSampler(order, 2, 6, rank=r, world=2)) for r in range(2)]
    for w, a, b in zip(whole, *parts, strict=True):
        assert torch.equal(a.index, w.index) and torch.equal(b.index, w.index)  # global ids
        assert torch.equal(torch.cat([a.mine, b.mine]), w.mine) and len(a.mine) == 4


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shards")
    tar_shards(root, [20, 16])
    return root


def _recipe(name: str, root: Path, workers: int):
    return load_recipe(
        "quickstart",
        [
            f"data.name='{name}'",
            f"data.path='{root}'",
            "data.n=24",
            "data.n_eval=8",
            "data.image_size=16",
            f"data.workers={workers}",
            "train.batch_size=8",
            "train.steps=7",
            "train.select=last",
            "model.hidden=16",
            "model.embed_dim=8",
            "eval.prototypes=24",
        ],
        m=4,
    )


@pytest.mark.parametrize("name", ["folder", "shards"])
def test_resumed_file_backed_run_equals_uninterrupted_with_workers(
    name: str, request: pytest.FixtureRequest
) -> None:
    root = request.getfixturevalue(name)
    rt = Runtime(torch.device("cpu"), "fp32", False)
    straight = Trainer(_recipe(name, root, 0), rt, progress=False)
    for _ in range(7):
        straight.train_step()
    first = Trainer(_recipe(name, root, 1), rt, progress=False)
    for _ in range(3):
        first.train_step()
    second = Trainer(_recipe(name, root, 1), rt, progress=False)
    second.load_state_dict(first.state_dict())
    for _ in range(4):
        second.train_step()
    assert second.log.losses == straight.log.losses
    for p, q in zip(second.model.parameters(), straight.model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_a_file_broken_after_the_check_is_a_one_line_error_from_a_worker(tmp_path: Path) -> None:
    root = class_folder(tmp_path / "c", 12)
    pairs = build(DataConfig(name="folder", path=str(root), n=8, n_eval=4, image_size=16)).train
    victim = Path(pairs.images.paths[pairs.rows[0]])
    victim.write_bytes(victim.read_bytes()[:60])  # header intact, pixels cut off
    sampler = loader.StepSampler(lambda s: torch.arange(len(pairs)), 0, 1)
    with pytest.raises(NegscaleError) as err:
        list(loader.batches(pairs, sampler, seed=0, workers=1, pin=False))
    assert str(victim) in str(err.value) and "\n" not in str(err.value)


class _PidPairs:
    """Pairs whose image side is the fetching process's pid (which worker ran the fetch)."""

    labels = None

    def __len__(self) -> int:
        return 10

    def fetch(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        import os

        return torch.full((len(ids), 1), os.getpid()), ids[:, None].float()


def test_chunk_loader_passes_are_the_rows_in_order_and_persistent_workers_stay() -> None:
    """Rows 3..9 in chunks of 3, twice: same rows, and the same worker process both times."""
    keep = loader.chunk_loader(_PidPairs(), range(3, 10), 3, workers=1, pin=False, persistent=True)
    passes = [list(loader.unwrapped(keep)) for _ in range(2)]
    for items in passes:
        assert [i.tolist() for i, _, _ in items] == [[3, 4, 5], [6, 7, 8], [9]]
        assert torch.cat([y for _, _, y in items]).flatten().tolist() == list(range(3, 10))
    pids = [{int(x.flatten()[0]) for _, x, _ in items} for items in passes]
    assert len(pids[0]) == 1 and pids[0] == pids[1]  # one worker, kept between the passes
    fresh = loader.chunk_loader(_PidPairs(), range(3, 10), 3, workers=1, pin=False)
    again = [{int(x.flatten()[0]) for _, x, _ in loader.unwrapped(fresh)} for _ in range(2)]
    assert again[0] != again[1]  # without persistence each pass starts its own worker


def test_without_workers_the_items_are_the_dataloaders_own(folder: Path) -> None:
    """``unwrapped`` fetches a worker-less, unpinned loader's items itself; they must be
    what the DataLoader's own single-process iterator yields, random fetches included."""
    pairs = _augmented(folder)
    sampler = loader.StepSampler(_order(len(pairs), 8), 0, 5)
    for make in (
        lambda: loader._loader(pairs, sampler, seed=SEED, workers=0, pin=False, persistent=False),
        lambda: loader.chunk_loader(pairs, range(3, 21), 8, workers=0, pin=False),
    ):
        ours = list(loader.unwrapped(make()))
        theirs = [loader._unwrap(b) for b in make()]  # torch's iterator
        assert len(ours) == len(theirs) > 0
        for a, b in zip(ours, theirs, strict=True):
            assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
