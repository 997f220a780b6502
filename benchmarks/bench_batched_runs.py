"""The "batched runs" lever, measured: the runs of one (n, seed) cell stepped as one model.

The quickstart's 63 tiny runs are overhead-bound (bench_quickstart.py: the
study is 14x its arithmetic), so one lever is to advance several runs per
step. Here the 7 runs of one (n, seed) cell (m = 1 … 319, the same batches
and initial weights) are stepped two ways, alternated, CPU-time medians:

* **one at a time**: 7 plain steps (forward, the exact subsample loss,
  backward, clipping, AdamW with torch's default decay on every parameter,
  the same on both sides), as a hand-written loop would;
* **batched**: the 7 models' parameters stacked (``torch.func.stack_module_state``),
  one ``vmap``'d forward of both towers, each run's exact subsample loss on its
  slice, one backward, per-run clipping, one AdamW over the stacked parameters.

It also reports how far the two drift apart after the timed steps (float
rounding: a batched matmul sums in another order), which is what a batched
trainer would have to accept, or hide behind a new run-id version. Nothing
here is used by negscale's trainer yet.

    OMP_NUM_THREADS=1 python benchmarks/bench_batched_runs.py [--n 4096] [--steps 40]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch


def _runs(n: int, ms: list[int]) -> tuple[list, object]:
    from negscale import data as datasets
    from negscale import encoders
    from negscale.config import load_recipe

    recipes = [load_recipe("quickstart", ["train.select='last'"], m=m, n=n) for m in ms]
    data = datasets.build(recipes[0].data, recipes[0].model)
    models = []
    for r in recipes:
        torch.manual_seed(r.train.seed)
        models.append(encoders.build(r.model, data))
    return list(zip(recipes, models, strict=True)), data


def _batches(data, n: int, b: int, steps: int):
    gen = torch.Generator().manual_seed(0)
    order = torch.randperm(n, generator=gen)
    split = data.train.head(n)
    out = []
    for s in range(steps):
        idx = order[(s * b) % (n - b) :][:b]
        x, y = split.fetch(idx)
        out.append((x, y, torch.randperm(b, generator=gen)))
    return out


def one_at_a_time(runs, lr: float, clip: float):
    from negscale.losses import subsample_loss

    opts = [torch.optim.AdamW(m.parameters(), lr=lr, foreach=False) for _, m in runs]

    def step(x, y, order) -> None:
        for (r, model), opt in zip(runs, opts, strict=True):
            opt.zero_grad(set_to_none=True)
            img, txt = model(x, y)
            loss = subsample_loss(img, txt, order, r.m, tau=model.tau, form=r.negatives.loss_form)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()

    return step


def batched(runs, lr: float, clip: float):
    from torch.func import functional_call, stack_module_state, vmap

    from negscale.losses import subsample_loss

    base = copy.deepcopy(runs[0][1]).to("meta")
    params, buffers = stack_module_state([copy.deepcopy(m) for _, m in runs])
    params = {k: v.detach().requires_grad_() for k, v in params.items()}
    opt = torch.optim.AdamW(list(params.values()), lr=lr, foreach=False)
    forward = vmap(lambda p, b, x, y: functional_call(base, (p, b), (x, y)),
                   in_dims=(0, 0, None, None))  # fmt: skip
    tau = runs[0][1].tau

    def step(x, y, order) -> None:
        opt.zero_grad(set_to_none=True)
        img, txt = forward(params, buffers, x, y)
        loss = sum(subsample_loss(img[i], txt[i], order, r.m, tau=tau, form=r.negatives.loss_form)
                   for i, (r, _) in enumerate(runs))  # fmt: skip
        loss.backward()
        per_run = torch.stack([p.grad.flatten(1).norm(dim=1) for p in params.values()]).norm(dim=0)
        coef = (clip / (per_run + 1e-6)).clamp(max=1.0)
        for p in params.values():
            p.grad.mul_(coef.view(-1, *[1] * (p.dim() - 1)))
        opt.step()

    return step, params


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--steps", type=int, default=40, help="timed steps of each (alternated)")
    args = ap.parse_args()
    ms = [1, 3, 8, 20, 50, 130, 319]
    runs, data = _runs(args.n, ms)
    r0 = runs[0][0]
    lr, clip, b = r0.train.lr, r0.train.grad_clip, r0.train.batch_size
    seq_runs = [(r, copy.deepcopy(m)) for r, m in runs]
    seq = one_at_a_time(seq_runs, lr, clip)
    bat, stacked = batched(runs, lr, clip)
    batches = _batches(data, args.n, b, args.steps + 3)
    times: dict[str, list[float]] = {"one at a time": [], "batched": []}
    for i, (x, y, order) in enumerate(batches):
        for name, fn in (("one at a time", seq), ("batched", bat)):
            t0 = time.process_time()
            fn(x, y, order)
            if i >= 3:  # the first steps allocate
                times[name].append((time.process_time() - t0) * 1e3)
    one, both = (statistics.median(times[k]) for k in ("one at a time", "batched"))
    drift = max(
        float((stacked[name][i] - dict(m.named_parameters())[name]).detach().abs().max())
        for i, (_, m) in enumerate(seq_runs)
        for name in stacked
    )
    print(f"{len(ms)} runs of one (n = {args.n}, seed) cell, B = {b}, {args.steps} steps each, "
          f"{torch.get_num_threads()} thread(s)")  # fmt: skip
    print(f"  one at a time: {one:6.2f} ms a step of all {len(ms)} runs")
    print(f"  batched:       {both:6.2f} ms  ({one / both:.2f}x)")
    print(f"  largest parameter difference after {args.steps + 3} steps: {drift:.2e}")


if __name__ == "__main__":
    main()
