"""The built-in towers' hook FLOP count equals torch's FlopCounterMode, without importing dynamo."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from negscale.data.base import Modality
from negscale.encoders.dual import DualEncoder
from negscale.encoders.tiny import tiny_tower
from negscale.flops import encoder_flops_per_item

CASES = {
    "vectors": (Modality("vector", dim=12), Modality("vector", dim=12)),
    "images+tokens": (
        Modality("image", shape=(1, 16, 16)),
        Modality("tokens", vocab=50, length=7, pad_id=0),
    ),
}


def _inputs(image: Modality, text: Modality) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = (
        torch.randn(5, image.dim, generator=gen)
        if image.kind == "vector"
        else torch.randn(5, *image.shape, generator=gen)
    )
    y = (
        torch.randn(5, text.dim, generator=gen)
        if text.kind == "vector"
        else torch.randint(1, text.vocab, (5, text.length), generator=gen)
    )
    return x, y


@pytest.mark.parametrize("case", sorted(CASES))
def test_hook_count_equals_flop_counter_mode(case: str) -> None:
    image, text = CASES[case]
    model = DualEncoder(tiny_tower(image, 16, 2), tiny_tower(text, 16, 2), 8, 0.1, False)
    model.train()  # as in the trainer: no fused inference fast path (which neither counts)
    x, y = _inputs(image, text)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x, y)
    # FlopCounterMode misses the CPU attention kernel's two L x L products (q k^T and
    # weights v): 2 * 2 * L^2 * hidden FLOPs per layer and sequence, added by hand
    attention = 2 * 2 * 2 * text.length**2 * 16 if text.kind == "tokens" else 0
    off = torch.autocast("cpu", enabled=False)
    assert encoder_flops_per_item(model, x, y, off) == pytest.approx(
        counter.get_total_flops() / len(x) + attention
    )


def test_counting_the_built_in_towers_does_not_import_dynamo() -> None:
    code = (
        "import sys, torch\n"
        "from negscale.data.base import Modality\n"
        "from negscale.encoders.dual import DualEncoder\n"
        "from negscale.encoders.tiny import tiny_tower\n"
        "from negscale.flops import encoder_flops_per_item\n"
        "m = Modality('vector', dim=4)\n"
        "model = DualEncoder(tiny_tower(m, 8, 1), tiny_tower(m, 8, 1), 4, 0.1, False)\n"
        "x = torch.randn(3, 4)\n"
        "encoder_flops_per_item(model, x, x, torch.autocast('cpu', enabled=False))\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr[-500:]
