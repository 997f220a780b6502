"""Two floors for a study's wall time, measured on this machine in the same run.

* **hand loop**: a tight training loop written without negscale's machinery
  (no DataLoader, no staged step, no loss books, no selection): the same model
  (built by negscale from the recipe, so the same towers and initialisation),
  the same batches (one seeded permutation per epoch), the same loss
  (``subsample_loss``: the source's own maths), AdamW with decay on matrices,
  gradient clipping and the warm-up/cosine schedule. Each (n, m) of the study is
  timed for a few dozen steps, alternated with negscale's ``Trainer.train_step``
  on the same point, CPU-time medians; a step's cost does not depend on its
  index, so ``steps x median`` is the run's floor.
* **arithmetic**: the FLOPs the study cannot do without, at this machine's
  measured single-thread sgemm rate, spread over the sweep's processes: the
  training FLOPs the records report (``encoder_gflops`` + ``loss_gflops`` per
  step, times the steps) and those of the evaluations the recipe asks for
  (:func:`evaluation_gflop`: selection's ~50 validation passes a run and the
  final one; the step-0 metrics are left out, so the floor errs low).

Used by ``bench_quickstart.py``; kept out of the package because only the
benchmark needs it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch


def _groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    rest = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def hand_loop(recipe: Any, data: Any) -> Callable[[], None]:
    """One step of a plain loop for ``recipe`` (an in-batch ``subsample``/``batch`` study)."""
    from negscale.encoders import build as build_model
    from negscale.losses import subsample_loss
    from negscale.train import warmup_cosine

    r = recipe
    torch.manual_seed(r.train.seed)
    model = build_model(r.model, data)
    opt = torch.optim.AdamW(_groups(model, r.train.weight_decay), lr=r.train.lr, foreach=False)
    total, warm = r.train.steps, r.train.warmup
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, total, warm))
    split = data.train.head(r.data.n)
    n, b, m = r.data.n, r.train.batch_size, r.m
    gen = torch.Generator().manual_seed(r.train.seed)
    state = {"step": 0, "order": torch.randperm(n, generator=gen)}

    def step() -> None:
        per_epoch = n // b
        pos = state["step"] % per_epoch
        if pos == 0 and state["step"]:
            state["order"] = torch.randperm(n, generator=gen)
        idx = state["order"][pos * b : (pos + 1) * b]
        x, y = split.fetch(idx)
        opt.zero_grad(set_to_none=True)
        img, txt = model(x, y)
        cols = torch.randperm(b, generator=gen)
        loss = subsample_loss(img, txt, cols, m, tau=model.tau, form=r.negatives.loss_form)
        loss.backward()
        if r.train.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), r.train.grad_clip)
        opt.step()
        sched.step()
        state["step"] += 1
        float(loss.detach())  # the trainer reads its losses too (once per sync)

    return step


def step_times(
    recipe_name: str, cells: list[tuple[int, int]], steps: int = 40
) -> list[dict[str, Any]]:
    """Per (n, m): median ms of negscale's step and of the hand loop's, alternated."""
    from negscale import data as datasets
    from negscale.bench import time_alternating
    from negscale.config import load_recipe
    from negscale.train import Trainer, resolve_runtime

    rows, cache = [], {}
    for n, m in cells:
        r = load_recipe(recipe_name, ["train.select='last'"], m=m, n=n)
        key = r.data.model_dump_json()
        if key not in cache:
            cache = {key: datasets.build(r.data, r.model)}  # one n's data at a time
        trainer = Trainer(r, resolve_runtime(r, "cpu"), data=cache[key], progress=False)
        fns = {"negscale": trainer.train_step, "hand": hand_loop(r, cache[key])}
        for _ in range(3):  # warm both (first steps allocate)
            for fn in fns.values():
                fn()
        ms = time_alternating(fns, torch.device("cpu"), steps)
        rows.append({"n": n, "m": m, "negscale_ms": ms["negscale"], "hand_ms": ms["hand"]})
    return rows


def sgemm_gflops(repeats: int = 20) -> float:
    """This process's sgemm rate (GFLOP/s) on a 1024 x 256 x 1024 product, the fastest of
    the repeats: the rate the machine reaches, so a busy moment never lowers the rate and
    flatters the study against its floor (a median once read 77 against 94-101)."""
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(1024, 256, generator=gen), torch.randn(256, 1024, generator=gen)
    out = torch.empty(1024, 1024)
    torch.mm(a, b, out=out)
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        for _ in range(10):
            torch.mm(a, b, out=out)
        times.append((time.process_time() - t0) / 10)
    return 2 * 1024 * 256 * 1024 / min(times) / 1e9


def evaluations(steps: int, best: bool) -> int:
    """Evaluations a run of ``steps`` makes after step 0: the validation passes of
    ``train.select = "best"`` (at the steps ``selection.is_due`` names) and the final one."""
    from negscale.selection import is_due

    return 1 + (sum(is_due(s, steps) for s in range(1, steps + 1)) if best else 0)


def evaluation_gflop(records: Any) -> float:
    """GFLOP of the study's evaluations, from its records: each embeds ``n_eval`` pairs
    with both towers (a forward is a third of the recorded forward + backward per
    item) and scores every pair against every other (2 n_eval² embed_dim FLOPs; both
    retrieval directions read the one matrix)."""
    import pandas as pd

    total = 0.0
    for row in records.itertuples():
        forward = row.encoder_gflops / (3 * row.batch_size) * row.n_eval
        scores = 2 * row.n_eval**2 * row.embed_dim / 1e9
        best = bool(pd.notna(row.selected_step))  # train.select = "best" records a step
        total += evaluations(int(row.steps), best) * (forward + scores)
    return total
