"""Where and how a run executes: device, precision, compile, and its place under torchrun.

Device-agnostic: ``auto`` takes CUDA when present. The CUDA fast paths (bf16
autocast, TF32, torch.compile) are switches that default on only on GPU; on
CPU the same code runs in fp32 (bf16 autocast still works there when asked for).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from negscale import distributed
from negscale.errors import NegscaleError

if TYPE_CHECKING:
    from negscale.config import Recipe


@dataclass
class Runtime:
    """Resolved execution choices for this machine (and this rank under torchrun)."""

    device: torch.device
    precision: str  # fp32 | bf16
    compile: bool
    dist: distributed.DistInfo = field(default_factory=distributed.DistInfo)
    loss_sync: int | None = None  # None: every step on CPU, every 16 on GPU

    @property
    def sync_every(self) -> int:
        """Steps between host syncs for the loss: every step is free on CPU, costly on GPU."""
        if self.loss_sync is not None:
            return self.loss_sync
        return 1 if self.device.type == "cpu" else 16

    @property
    def autocast(self) -> torch.autocast:
        return torch.autocast(
            self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"
        )

    @property
    def pin(self) -> bool:
        """Pinned host memory and non-blocking copies: only worth it towards a GPU."""
        return self.device.type == "cuda"


def resolve_device(want: str) -> torch.device:
    """``auto`` takes CUDA when present; asking for CUDA without it is a user error."""
    if want == "cuda" and not torch.cuda.is_available():
        raise NegscaleError("--device cuda: CUDA is not available on this machine")
    on_gpu = want == "cuda" or (want == "auto" and torch.cuda.is_available())
    return torch.device("cuda" if on_gpu else "cpu")


def resolve_runtime(recipe: Recipe, device: str | None = None) -> Runtime:
    """Device, precision and compile choices; joins torchrun's process group if launched so."""
    dev = resolve_device(device or recipe.train.device)
    info = distributed.init(dev.type)
    if info.enabled:
        if recipe.train.batch_size % info.world_size:
            raise NegscaleError(
                f"train.batch_size: the global batch {recipe.train.batch_size} must divide "
                f"evenly over {info.world_size} processes"
            )
        if dev.type == "cuda":
            dev = torch.device("cuda", info.local_rank)
    on_gpu = dev.type == "cuda"
    precision = recipe.train.precision
    if precision == "auto":
        precision = "bf16" if on_gpu else "fp32"
    compile_ = recipe.train.compile == "on" or (recipe.train.compile == "auto" and on_gpu)
    if on_gpu:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return Runtime(dev, precision, compile_, info)
