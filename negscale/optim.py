"""The optimiser and its schedule: AdamW with decay on matrices, linear warm-up, cosine decay."""

from __future__ import annotations

import math
import sys
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from negscale.config import Recipe


def warmup_cosine(step: int, total: int, warmup_frac: float) -> float:
    """LR multiplier: linear warmup, then cosine decay to zero."""
    warm = max(1, round(warmup_frac * total))
    if step < warm:
        return (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def schedule(opt: torch.optim.Optimizer, recipe: Recipe) -> torch.optim.lr_scheduler.LambdaLR:
    """The per-step learning-rate multiplier :func:`warmup_cosine` over ``train.steps``."""
    total, warm = recipe.train.steps, recipe.train.warmup
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, total, warm))


def build_optimizer(model: torch.nn.Module, recipe: Recipe, fused: bool) -> torch.optim.Optimizer:
    """AdamW, weight decay on matrices only; on CPU built and stepped without torch._dynamo.

    ``Optimizer.add_param_group`` and ``AdamW.step`` import ``torch._dynamo``
    (1-2 s of start-up) only to opt themselves out of compilation. An eager
    CPU optimiser never meets the compiler, so there the undecorated functions
    run: the same single-tensor AdamW maths (torch's CPU default), step under
    no_grad as torch's own wrapper does. Fused (CUDA) optimisers are built as usual.
    """
    from negscale.encoders.tuning import param_groups

    groups = param_groups(model, recipe.model, recipe.train.lr, recipe.train.weight_decay)
    return adamw(groups, recipe.train.lr, fused)


def adamw(groups: list[dict], lr: float, fused: bool) -> torch.optim.Optimizer:
    """torch's AdamW over ``groups``: fused (CUDA), else single-tensor without torch._dynamo."""
    import inspect
    import types

    if fused:
        return torch.optim.AdamW(groups, lr=lr, fused=True)
    add = getattr(torch.optim.Optimizer.add_param_group, "__wrapped__", None)
    if add is None or "torch._dynamo" in sys.modules:  # nothing to save, or another torch
        return torch.optim.AdamW(groups, lr=lr, foreach=False, fused=False)
    add.__dynamo_disable = add  # torch's lazy cache of the dynamo-disabled function
    try:
        opt = torch.optim.AdamW(groups, lr=lr, foreach=False, fused=False)
    finally:
        del add.__dynamo_disable
    raw_step = inspect.unwrap(torch.optim.AdamW.step)

    def step(self: torch.optim.Optimizer, closure: object = None) -> object:
        with torch.no_grad():
            return raw_step(self, closure)

    opt.step = types.MethodType(step, opt)  # type: ignore[method-assign]
    for name in ("zero_grad", "state_dict", "load_state_dict"):
        raw = inspect.unwrap(getattr(torch.optim.Optimizer, name))
        setattr(opt, name, types.MethodType(raw, opt))
    return opt
