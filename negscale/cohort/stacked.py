"""R runs of one architecture as one stacked model: one forward, one backward, one AdamW step.

The runs' own modules stay the place where everything else looks (evaluation,
selection, checkpoints): their parameters become views of the stacked tensors,
and once the stacked optimiser has state, their optimisers' states become views
of it. So a run's model, optimiser and checkpoint always hold the run's current
weights and moments, with nothing copied back.

The built-in MLP towers are applied as batched ops on the stacked tensors
(:mod:`negscale.cohort.mlp`, faster); any other module goes through ``vmap``
over ``functional_call``, which batches it without a second implementation
(only MLP towers are stacked today: :func:`negscale.cohort.mlp_towers` says why).
AdamW is elementwise, so one optimiser over the stacked tensors takes each
run's own step; gradient clipping is per run.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch.func import functional_call, vmap

from negscale.cohort import mlp
from negscale.encoders.dual import temperature
from negscale.optim import adamw

if TYPE_CHECKING:
    from negscale.train import Trainer

MOMENTS = ("exp_avg", "exp_avg_sq")


class StackedRuns:
    """The trainers' models stacked along a new leading dimension, with one optimiser."""

    def __init__(self, trainers: Sequence[Trainer]) -> None:
        self.trainers = list(trainers)
        models = [t.model for t in self.trainers]
        self.written = mlp.writes_out(models[0])  # batched ops, not vmap
        self.base = copy.deepcopy(models[0]).to("meta").train()
        named = [dict(m.named_parameters()) for m in models]
        self.params = {
            k: torch.stack([n[k].detach() for n in named]).requires_grad_(p.requires_grad)
            for k, p in named[0].items()
        }
        buffers = [dict(m.named_buffers()) for m in models]
        self.buffers = {k: torch.stack([b[k] for b in buffers]) for k in buffers[0]}
        for r, n in enumerate(named):  # each run's parameters: views of its slice
            for k, p in n.items():
                p.data = self.params[k].detach()[r]
        self.optimizer = self._optimizer(named[0])
        self._linked = False
        if self.trainers[0].optimizer.state:  # resumed runs: their moments go into the stack
            self._stack_state()
        self._forward = vmap(self._one, in_dims=(0, 0, 0, 0))
        self._shared = vmap(self._one, in_dims=(0, 0, None, None))  # one input for all runs

    def _one(self, params: dict, buffers: dict, x: torch.Tensor, y: torch.Tensor):
        return functional_call(self.base, (params, buffers), (x, y))

    def _optimizer(self, first: dict[str, torch.nn.Parameter]) -> torch.optim.Optimizer:
        """AdamW with the first run's param groups (lr, decay), over the stacked tensors."""
        name_of = {id(p): k for k, p in first.items()}
        opt = self.trainers[0].optimizer
        groups = [
            {**{k: v for k, v in g.items() if k != "params"},
             "params": [self.params[name_of[id(p)]] for p in g["params"]]}
            for g in opt.param_groups
        ]  # fmt: skip
        fused = bool(opt.defaults.get("fused"))
        return adamw(groups, opt.defaults["lr"], fused)

    def _pairs(self) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
        """(stacked tensor, each run's parameter) in the optimisers' order."""
        out = []
        runs = [t.optimizer.param_groups for t in self.trainers]
        for gi, group in enumerate(self.optimizer.param_groups):
            for pi, stacked in enumerate(group["params"]):
                out.append((stacked, [g[gi]["params"][pi] for g in runs]))
        return out

    def _stack_state(self) -> None:
        """Resumed runs at the same step: their AdamW moments become the stack's."""
        for stacked, params in self._pairs():
            states = [t.optimizer.state[p] for t, p in zip(self.trainers, params, strict=True)]
            if not states[0]:
                continue
            merged = {k: torch.stack([s[k] for s in states]) for k in MOMENTS}
            merged["step"] = states[0]["step"].clone()
            self.optimizer.state[stacked] = merged
        self._link()

    def _link(self) -> None:
        """Each run's optimiser state: views of its slice of the stack's (checkpoints read them)."""
        for stacked, params in self._pairs():
            state = self.optimizer.state.get(stacked)
            if not state:
                continue
            for r, (t, p) in enumerate(zip(self.trainers, params, strict=True)):
                own = {k: state[k][r] for k in MOMENTS}
                own["step"] = state["step"]
                t.optimizer.state[p] = own
        for t in self.trainers:  # their step is the stack's (what LR schedulers check for)
            t.optimizer._opt_called = True  # type: ignore[attr-defined]
        self._linked = True

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(R, B, d) embeddings of each run's own (R, B, ...) inputs."""
        if self.written:
            return mlp.encode(self.base, self.params, x, y)
        return self._forward(self.params, self.buffers, x, y)

    @torch.no_grad()
    def embed(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(R, b, d) every run's eval-mode embeddings of the same (b, ...) inputs."""
        if self.written:  # no layer of these depends on train/eval mode
            runs = len(self.trainers)
            return mlp.encode(self.base, self.params, x.expand(runs, *x.shape),
                              y.expand(runs, *y.shape))  # fmt: skip
        self.base.eval()
        try:
            return self._shared(self.params, self.buffers, x, y)
        finally:
            self.base.train()

    def tau(self) -> torch.Tensor:
        """(R,) each run's temperature."""
        scale = self.params.get("logit_scale", self.buffers.get("logit_scale"))
        return temperature(scale)

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def clip(self, max_norm: float) -> None:
        """Each run's gradients scaled as ``clip_grad_norm_`` scales one run's."""
        grads = [p.grad for p in self.params.values() if p.grad is not None]
        norms = torch.stack([g.flatten(1).norm(dim=1) for g in grads]).norm(dim=0)
        coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(coef.view(-1, *[1] * (g.dim() - 1)))

    def step(self) -> None:
        """One AdamW step of every run at the first run's current learning rates."""
        lead = self.trainers[0].optimizer.param_groups
        for group, own in zip(self.optimizer.param_groups, lead, strict=True):
            group["lr"] = own["lr"]
        self.optimizer.step()
        if not self._linked:
            self._link()
