"""A negative source and a dataset defined in this test module, not in negscale:
each is one class or function plus its registration, and a run trains with both.

The references are independent of the registries: the toy source's loss is
checked against a hand-written masked loss, and the run's record must name the
toy parts and carry the toy dataset's field in its recipe.
"""

from __future__ import annotations

import math
from typing import Literal

import pytest
import torch
from pydantic import Field

from negscale import data as datasets
from negscale import negatives
from negscale.config import DATA_CONFIGS, DatasetConfig, Section, load_recipe
from negscale.config.sources import SPECS, SourceSpec
from negscale.data.base import Modality, PairedData, Split
from negscale.negatives.base import CLASSES, Embedded, NegativeSource, StepLoss
from negscale.train import Runtime, Trainer, run


# ----------------------------------------------------------------- a toy dataset
class RingData(DatasetConfig):
    """Points on a noisy ring: the text side is the image side rotated, plus noise."""

    name: Literal["toy-ring"] = "toy-ring"
    noise: float = Field(0.1, ge=0)


def build_ring(cfg: RingData, model=None) -> PairedData:
    gen = torch.Generator().manual_seed(cfg.seed)
    total = cfg.n + cfg.n_eval
    angle = 2 * math.pi * torch.rand(total, generator=gen)
    x = torch.stack([angle.cos(), angle.sin(), (3 * angle).cos(), (3 * angle).sin()], dim=1)
    y = x.roll(1, dims=1) + cfg.noise * torch.randn(total, 4, generator=gen)
    train, held = Split(x[: cfg.n], y[: cfg.n]), Split(x[cfg.n :], y[cfg.n :])
    side = Modality("vector", dim=4)
    return PairedData(train=train, eval=held, image=side, text=side)


# ------------------------------------------------------------ a toy negative source
class FirstMOptions(Section):
    """The toy source's own options: ``[negatives.toy-first-m]``."""

    from_end: bool = False  # the last m other items instead of the first


def _first_m_rule(m: int | None, batch: int, n: int) -> str | None:
    return None if m is None or m <= batch - 1 else f"at most B - 1 = {batch - 1}, got {m}"


class FirstMSource(NegativeSource):
    """Anchor i's negatives: the first m other items of the batch, in batch order."""

    spec = SourceSpec("toy-first-m", "self-supervised", "the first m other batch items",
                      "negatives per anchor", ("tile",), _first_m_rule,
                      options=FirstMOptions)  # fmt: skip

    def loss(self, emb: Embedded, draw, tau: torch.Tensor) -> StepLoss:
        b = emb.batch
        # its own option, from [negatives.toy-first-m]
        keep = (last_m_mask if self.neg.from_end else first_m_mask)(b, self.m)
        loss = negatives_loss(emb.img, emb.txt, keep, tau, self.form)
        return StepLoss(loss, float(self.m), 2 * b * b)


def first_m_mask(b: int, m: int) -> torch.Tensor:
    """(B, B): row i keeps the first m columns other than i."""
    others = ~torch.eye(b, dtype=torch.bool)
    return others & (others.long().cumsum(dim=1) <= m)


def last_m_mask(b: int, m: int) -> torch.Tensor:
    """(B, B): row i keeps the last m columns other than i."""
    others = ~torch.eye(b, dtype=torch.bool)
    return others & (others.long().flip(1).cumsum(dim=1).flip(1) <= m)


def negatives_loss(img, txt, keep, tau, form) -> torch.Tensor:
    """The masked loss by hand, both directions (reference for the source's loss)."""
    from negscale.losses import in_batch_loss

    return in_batch_loss(img, txt, tau=tau, form=form, negative_mask=keep)


def hand_loss(img, txt, keep, tau: float) -> torch.Tensor:
    """Paper form written out: tau * (log mean_{j kept} exp(s_ij / tau) - s_ii / tau)."""
    s = img @ txt.T / tau
    rows = [
        torch.logsumexp(s[i][keep[i]], 0) - math.log(keep[i].sum()) - s[i, i] for i in range(len(s))
    ]
    st = s.T
    cols = [
        torch.logsumexp(st[i][keep[i]], 0) - math.log(keep[i].sum()) - st[i, i]
        for i in range(len(s))
    ]
    return tau * 0.5 * (torch.stack(rows) + torch.stack(cols)).mean()


@pytest.fixture
def toy_parts():
    """Register the toy dataset and source as a plugin would, and forget them after."""
    datasets.register("toy-ring", "points on a noisy ring (a test plugin)", config=RingData)(
        build_ring
    )
    negatives.register(FirstMSource)
    yield
    for registry, name in ((datasets.DATASETS, "toy-ring"), (DATA_CONFIGS, "toy-ring"),
                           (CLASSES, "toy-first-m"), (SPECS, "toy-first-m")):  # fmt: skip
        registry.remove(name)


SETS = ["data.name='toy-ring'", "data.n=256", "data.n_eval=64", "data.noise=0.05",
        "negatives.source='toy-first-m'", "negatives.m=3", "negatives.loss_form='paper'",
        "train.batch_size=16", "train.steps=64", "train.select='last'", "sweep.samples=[]",
        "sweep.negatives=[]", "sweep.seeds=[0]", "model.hidden=8", "model.embed_dim=4"]  # fmt: skip


def test_the_masks_keep_the_first_or_last_m_others_by_brute_force() -> None:
    first, last = first_m_mask(5, 2), last_m_mask(5, 2)
    for i in range(5):
        others = [j for j in range(5) if j != i]
        assert torch.nonzero(first[i]).flatten().tolist() == others[:2]
        assert torch.nonzero(last[i]).flatten().tolist() == others[-2:]


def test_a_toy_source_and_dataset_from_outside_train_a_step(toy_parts) -> None:
    recipe = load_recipe("quickstart", SETS)
    assert recipe.data.name == "toy-ring" and recipe.data.noise == 0.05
    assert recipe.negatives.source == "toy-first-m" and recipe.setting == "self-supervised"
    trainer = Trainer(recipe, Runtime(torch.device("cpu"), "fp32", False), progress=False)
    batch = trainer.feed(0)
    with torch.no_grad():
        img, txt = trainer.model(batch.x, batch.y)
        want = hand_loss(img, txt, first_m_mask(16, 3), float(trainer.model.tau))
    loss = trainer.train_step()
    assert float(loss) == pytest.approx(float(want), rel=1e-5)
    assert trainer.log.negatives_seen == [3.0]


def test_a_toy_sources_own_option_section_reaches_it(toy_parts) -> None:
    recipe = load_recipe("quickstart", [*SETS, "negatives.toy-first-m.from_end=true"])
    assert recipe.negatives.options == FirstMOptions(from_end=True)
    assert recipe.run_id() != load_recipe("quickstart", SETS).run_id()
    trainer = Trainer(recipe, Runtime(torch.device("cpu"), "fp32", False), progress=False)
    batch = trainer.feed(0)
    with torch.no_grad():
        img, txt = trainer.model(batch.x, batch.y)
        want = hand_loss(img, txt, last_m_mask(16, 3), float(trainer.model.tau))
    assert float(trainer.train_step()) == pytest.approx(float(want), rel=1e-5)
    from negscale.errors import NegscaleError

    with pytest.raises(NegscaleError, match=r"^negatives\.toy-first-m: options of source"):
        load_recipe("quickstart", ["negatives.toy-first-m.from_end=true"])  # source: batch


def test_a_run_with_the_toy_parts_is_recorded_and_a_bad_m_is_the_specs_error(
    toy_parts, tmp_path
) -> None:
    record = run(load_recipe("quickstart", SETS), tmp_path, progress=False)
    assert (record.dataset, record.negatives, record.m, record.status) == (
        "toy-ring", "toy-first-m", 3, "ok")  # fmt: skip
    assert '"noise":0.05' in record.recipe.replace(" ", "")
    from negscale.errors import NegscaleError

    with pytest.raises(NegscaleError, match=r"negatives\.m: at most B - 1 = 15, got 16"):
        load_recipe("quickstart", [*SETS, "negatives.m=16"])
    with pytest.raises(NegscaleError, match=r"data\.radius: unknown key"):
        load_recipe("quickstart", [*SETS, "data.radius=2.0"])


def test_after_the_plugin_is_gone_its_names_are_unknown_again() -> None:
    from negscale.errors import NegscaleError

    with pytest.raises(NegscaleError, match="unknown dataset 'toy-ring'"):
        load_recipe("quickstart", ["data.name='toy-ring'"])
    with pytest.raises(NegscaleError, match="unknown negative source 'toy-first-m'"):
        load_recipe("quickstart", ["negatives.source='toy-first-m'"])


# ------------------------------------------------- the same parts from the command line
PLUGIN = """
from negscale import data, negatives
from test_plugins import FirstMSource, RingData, build_ring

data.register("toy-ring", "points on a noisy ring (a test plugin)", config=RingData)(build_ring)
negatives.register(FirstMSource)
"""


@pytest.fixture
def plugin_module(tmp_path, monkeypatch):
    """A plugin module on the path, named by NEGSCALE_PLUGINS; its parts forgotten after."""
    import sys

    (tmp_path / "toy_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("NEGSCALE_PLUGINS", "toy_plugin")
    yield tmp_path
    sys.modules.pop("toy_plugin", None)
    for registry, name in ((datasets.DATASETS, "toy-ring"), (DATA_CONFIGS, "toy-ring"),
                           (CLASSES, "toy-first-m"), (SPECS, "toy-first-m")):  # fmt: skip
        registry.remove(name)


def _cli(args: list[str]):
    from typer.testing import CliRunner

    from negscale.cli import app

    return CliRunner().invoke(app, args)


def test_negscale_plugins_brings_the_parts_to_train_and_to_sweep_workers(plugin_module):
    sets = [a for s in SETS for a in ("--set", s)]
    res = _cli(["train", "quickstart", *sets, "--results", str(plugin_module / "one"), "--json"])
    assert res.exit_code == 0, res.output
    assert '"dataset": "toy-ring"' in res.stdout and '"negatives": "toy-first-m"' in res.stdout
    grid = [a for s in SETS if not s.startswith("negatives.m=") for a in ("--set", s)]
    args = ["sweep", "quickstart", *grid, "-m", "2,3", "--jobs", "2"]
    res = _cli([*args, "--results", str(plugin_module / "two"), "--json"])
    assert res.exit_code == 0, res.output  # the spawned workers imported the plugin too
    from negscale.results import load

    df = load(plugin_module / "two")
    assert sorted(df["m"]) == [2, 3] and set(df["negatives"]) == {"toy-first-m"}


def test_a_plugin_that_cannot_be_imported_is_a_one_line_error(monkeypatch):
    monkeypatch.setenv("NEGSCALE_PLUGINS", "no_such_module_here")
    res = _cli(["list", "datasets"])
    assert res.exit_code == 2
    assert "NEGSCALE_PLUGINS: cannot import 'no_such_module_here'" in res.output
    assert "Traceback" not in res.output
