"""The dual MLP encoder of R runs written as batched ops on their stacked parameters.

``vmap(functional_call)`` stacks any tower, but on the built-in MLP it spent a
fifth of a stacked step in its own machinery (each linear and layer norm
unbatched, rewritten, re-batched, on every call and again in the backward).
The MLP is four kinds of layer, so here they are applied directly to the
stacked tensors: a linear is a ``baddbmm`` with each run's weight, a layer
norm normalises and then applies each run's scale and shift, a GELU is
elementwise. Equal to the vmapped module to float rounding
(tests/test_cohort.py); any other layer leaves the stack on ``vmap``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from negscale.encoders.dual import DualEncoder
from negscale.encoders.tiny import MLPTower

LAYERS = (nn.Linear, nn.LayerNorm, nn.GELU)


def writes_out(model: nn.Module) -> bool:
    """Whether :func:`encode` covers ``model``: a dual encoder of MLP towers of these layers."""
    if not isinstance(model, DualEncoder):
        return False
    towers = (model.image_tower, model.text_tower)
    return all(
        isinstance(t, MLPTower) and all(isinstance(layer, LAYERS) for layer in t.net)
        for t in towers
    )


def _linear(params: dict[str, torch.Tensor], name: str, h: torch.Tensor) -> torch.Tensor:
    """(R, b, in) -> (R, b, out) with each run's weight (R, out, in) and bias."""
    weight, bias = params[f"{name}.weight"], params.get(f"{name}.bias")
    if bias is None:
        return torch.bmm(h, weight.transpose(1, 2))
    return torch.baddbmm(bias[:, None, :], h, weight.transpose(1, 2))


class _LayerNorm(torch.autograd.Function):
    """Layer norm over the last dimension, without the affine part, with torch's backward.

    torch's CPU ``layer_norm`` kernel spends ~1.3 ns an element on rows of 64
    (the quickstart's hidden width), about three times what a mean, a
    subtraction, a norm and a scaling take (benchmarks/bench_batched_runs.py
    times the stack). The backward is torch's own
    ``native_layer_norm_backward`` from the saved mean and 1/σ, so only the
    forward's rounding differs from ``F.layer_norm`` (by float rounding).
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, eps: float) -> torch.Tensor:
        mean = x.mean(dim=-1, keepdim=True)
        centred = x - mean
        norm = torch.linalg.vector_norm(centred, dim=-1, keepdim=True)
        rstd = norm.square_().div_(x.shape[-1]).add_(eps).rsqrt_()
        ctx.save_for_backward(x, mean, rstd)
        return centred.mul_(rstd)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        x, mean, rstd = ctx.saved_tensors
        dx, _, _ = torch.ops.aten.native_layer_norm_backward(
            grad, x, [x.shape[-1]], mean, rstd, None, None, [True, False, False]
        )
        return dx, None


class _Normalize(torch.autograd.Function):
    """``F.normalize(x, dim=-1)`` with its gradient written out: (g - y (g·y)) / ‖x‖.

    The same forward (x over max(‖x‖, 1e-12)); autograd's backward of the norm,
    the clamp and the division took about twice as long on a stack's (R, B, 32)
    embeddings. Where the norm was clamped, the gradient is g / 1e-12, as autograd's.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
        denom = norm.clamp_min(1e-12)
        y = x / denom
        ctx.save_for_backward(y, denom, norm < 1e-12)
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        y, denom, clamped = ctx.saved_tensors
        along = (grad * y).sum(dim=-1, keepdim=True).masked_fill_(clamped, 0.0)
        return (grad - y * along).div_(denom)


def _layer_norm(layer: nn.LayerNorm, h: torch.Tensor) -> torch.Tensor:
    """``F.layer_norm`` without its affine part: the fast one for floats over one dimension."""
    if len(layer.normalized_shape) == 1 and h.dtype == torch.float32:
        return _LayerNorm.apply(h, layer.eps)
    return F.layer_norm(h, layer.normalized_shape, eps=layer.eps)


def _tower(net: nn.Sequential, prefix: str, params: dict, h: torch.Tensor) -> torch.Tensor:
    for i, layer in enumerate(net):
        name = f"{prefix}.{i}"
        if isinstance(layer, nn.Linear):
            h = _linear(params, name, h)
        elif isinstance(layer, nn.LayerNorm):
            h = _layer_norm(layer, h)
            if layer.weight is not None:
                h = h * params[f"{name}.weight"][:, None]
            if layer.bias is not None:
                h = h + params[f"{name}.bias"][:, None]
        else:
            h = F.gelu(h, approximate=layer.approximate)
    return h


def encode(base: DualEncoder, params: dict[str, torch.Tensor], x: torch.Tensor,
           y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """(R, b, d) normalised embeddings of each run's (R, b, ...) inputs, as ``base`` does one."""
    img = _tower(base.image_tower.net, "image_tower.net", params, x)
    txt = _tower(base.text_tower.net, "text_tower.net", params, y)
    img = _Normalize.apply(_linear(params, "image_proj", img))
    txt = _Normalize.apply(_linear(params, "text_proj", txt))
    return img, txt
