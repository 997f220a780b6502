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


def _tower(net: nn.Sequential, prefix: str, params: dict, h: torch.Tensor) -> torch.Tensor:
    for i, layer in enumerate(net):
        name = f"{prefix}.{i}"
        if isinstance(layer, nn.Linear):
            h = _linear(params, name, h)
        elif isinstance(layer, nn.LayerNorm):
            h = F.layer_norm(h, layer.normalized_shape, eps=layer.eps)
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
    img = F.normalize(_linear(params, "image_proj", img), dim=-1)
    txt = F.normalize(_linear(params, "text_proj", txt), dim=-1)
    return img, txt
