"""``--report-to tensorboard``: a finished run's curve and metrics as TensorBoard scalars.

Written from the run's history and record once the run ends (the training loop
is untouched), to ``<results>/tensorboard/<run_id>/``, so ``tensorboard
--logdir <results>/tensorboard`` shows every run of a study side by side.
tensorboard is an optional dependency (``pip install negscale[tensorboard]``).
"""

from __future__ import annotations

from pathlib import Path

from negscale.errors import NegscaleError
from negscale.results import RunRecord

TARGETS = ("tensorboard",)
EVAL_SCALARS = ("auc", "recall_at_1", "recall_at_5", "recall_at_10", "mean_rank", "val_loss",
                "zeroshot_top1")  # fmt: skip


def check_report_to(target: str | None) -> None:
    """Fail before training when the target is unknown or its package is missing."""
    if target is None:
        return
    if target not in TARGETS:
        raise NegscaleError(f"--report-to: expected {', '.join(TARGETS)}, got {target!r}")
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise NegscaleError(
            "--report-to tensorboard: the tensorboard package is not installed "
            "(pip install tensorboard)"
        ) from None


def log_dir(results: str | Path, run_id: str) -> Path:
    return Path(results) / "tensorboard" / run_id


def write_tensorboard(results: str | Path, record: RunRecord, history: list[dict]) -> Path:
    """Scalars ``train/{loss,lr,tau}`` per curve row; ``eval/<metric>`` at step 0 and the end."""
    from torch.utils.tensorboard import SummaryWriter

    path = log_dir(results, record.run_id)
    with SummaryWriter(log_dir=str(path)) as writer:
        for row in history:
            for key in ("loss", "lr", "tau"):
                writer.add_scalar(f"train/{key}", row[key], int(row["step"]))
        for key in EVAL_SCALARS:
            init = getattr(record, f"{key}_init", None)
            if init is not None:
                writer.add_scalar(f"eval/{key}", init, 0)
            value = getattr(record, key)
            if value is not None:
                writer.add_scalar(f"eval/{key}", value, record.steps)
        writer.add_text("status", f"{record.status}: {record.message or ''}".rstrip(": "), 0)
    return path
