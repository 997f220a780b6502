"""The trainer's CPU AdamW: torch's AdamW numerics, without importing torch._dynamo."""

from __future__ import annotations

import os
import subprocess
import sys

import torch

from negscale.config import load_recipe
from negscale.optim import build_optimizer


def _model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 3))


def test_cpu_optimizer_steps_exactly_as_plain_adamw() -> None:
    recipe = load_recipe("quickstart", ["train.weight_decay=0.1", "train.lr=0.01"])
    ours_model, ref_model = _model(0), _model(0)
    ours = build_optimizer(ours_model, recipe, fused=False)
    decay = [p for p in ref_model.parameters() if p.ndim >= 2]
    rest = [p for p in ref_model.parameters() if p.ndim < 2]
    ref = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}], lr=0.01
    )
    x = torch.randn(8, 5, generator=torch.Generator().manual_seed(1))
    for step in range(3):
        for model, opt in ((ours_model, ours), (ref_model, ref)):
            opt.zero_grad(set_to_none=True)
            (model(x) ** 2).sum().backward()
            opt.step()
        for a, b in zip(ours_model.parameters(), ref_model.parameters(), strict=True):
            assert torch.equal(a, b), step
    state = ours.state_dict()
    assert state["state"][0]["step"] == 3
    ours.load_state_dict(state)  # round trip keeps stepping identically
    for model, opt in ((ours_model, ours), (ref_model, ref)):
        opt.zero_grad(set_to_none=True)
        (model(x) ** 2).sum().backward()
        opt.step()
    for a, b in zip(ours_model.parameters(), ref_model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_cpu_optimizer_does_not_import_dynamo() -> None:
    code = (
        "import sys, torch\n"
        "from negscale.config import load_recipe\n"
        "from negscale.optim import build_optimizer\n"
        "m = torch.nn.Linear(3, 2)\n"
        "opt = build_optimizer(m, load_recipe('quickstart'), fused=False)\n"
        "sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)\n"
        "m(torch.ones(1, 3)).sum().backward(); opt.step(); sched.step()\n"
        "opt.zero_grad(); opt.load_state_dict(opt.state_dict())\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip().splitlines()[-1] == "False"
