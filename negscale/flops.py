"""Forward FLOPs of both towers for one pair: module hooks for the built-in towers, else
torch's FlopCounterMode.

FlopCounterMode counts every aten matmul, convolution and attention op, but
entering it imports ``torch._dynamo`` (about 1.5 s), a third of a CPU
quickstart run. The built-in towers are made of ``Linear``, ``Conv2d`` and
``MultiheadAttention`` modules, whose multiply-adds forward hooks count
exactly (2 FLOPs each, as FlopCounterMode does), so they are counted that way;
any other tower (timm, transformers) goes through FlopCounterMode.
"""

from __future__ import annotations

import torch
from torch import nn

from negscale.encoders.dual import DualEncoder
from negscale.encoders.tiny import CNNTower, MLPTower, TokenTransformerTower

_BUILT_IN = (MLPTower, CNNTower, TokenTransformerTower)


def _linear(module: nn.Linear, inputs: tuple, output: torch.Tensor) -> int:
    rows = inputs[0].numel() // module.in_features
    return 2 * rows * module.in_features * module.out_features


def _conv(module: nn.Conv2d, inputs: tuple, output: torch.Tensor) -> int:
    kh, kw = module.kernel_size
    per_out = (module.in_channels // module.groups) * kh * kw
    return 2 * per_out * output.numel()


def _attention(module: nn.MultiheadAttention, inputs: tuple, output: object) -> int:
    """Input and output projections plus the two L x L score products, per sequence."""
    query = inputs[0]
    length, embed = query.shape[-2] if module.batch_first else query.shape[0], module.embed_dim
    seqs = query.numel() // (length * embed)
    projections = 2 * length * embed * 4 * embed  # q, k, v in; one out
    scores = 2 * 2 * length * length * embed  # q k^T and (softmax) v
    return seqs * (projections + scores)


_COUNTERS = {nn.Linear: _linear, nn.Conv2d: _conv, nn.MultiheadAttention: _attention}


def _hooked_flops(model: nn.Module, run: object) -> int:
    total = [0]
    handles = []
    for module in model.modules():
        for kind, count in _COUNTERS.items():
            if type(module) is kind:  # not subclasses: MHA's out_proj is counted by MHA

                def hook(mod, inputs, output, count=count) -> None:
                    total[0] += count(mod, inputs, output)

                handles.append(module.register_forward_hook(hook))
    try:
        run()  # type: ignore[operator]
    finally:
        for h in handles:
            h.remove()
    return total[0]


def encoder_flops_per_item(
    model: DualEncoder, x: torch.Tensor, y: torch.Tensor, autocast: torch.autocast
) -> float:
    """Forward FLOPs of both towers for one pair (a no-graph pass on up to 8 pairs).

    The RNG state is kept, so counting changes nothing in the run. A step's
    encoder FLOPs are this times the item-forwards the step ran (backward
    counts as two forwards).
    """
    rows = min(len(x), 8)
    devices = [x.device] if x.device.type == "cuda" else []

    def forward() -> None:
        model(x[:rows], y[:rows])

    with torch.random.fork_rng(devices=devices), torch.no_grad(), autocast:
        if isinstance(model.image_tower, _BUILT_IN) and isinstance(model.text_tower, _BUILT_IN):
            return _hooked_flops(model, forward) / rows
        from torch.utils.flop_counter import FlopCounterMode

        counter = FlopCounterMode(display=False)
        with counter:
            forward()
    return counter.get_total_flops() / rows


__all__ = ["encoder_flops_per_item"]
