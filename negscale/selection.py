"""Best-checkpoint selection on validation pairs (``train.select = "best"``).

Held-out AUC first rises with training and, on a small n, falls again as the
towers memorise their pairs; where it peaks depends on n. A fixed budget then
over-trains one n and under-trains another, and the study's plateau is set by
the step count, not by m and n. Selection removes the over-training side: the
run is evaluated about ``SELECT_POINTS`` times on validation pairs it never
trains on, and it reports the weights of the best validation AUC, so a longer
budget can only add candidates. The evaluation pairs stay untouched by the
choice (no test-set selection).

Validation pairs are the synthetic task's own draws (``PairedData.val``, a
stream of their own); a file-backed dataset cuts ``data.n_eval`` of them from
its training rows after the run's first n (``PairedData.val_builder``), which
the run never trains on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from negscale.data.base import PairedData, PairSet
from negscale.errors import NegscaleError

SELECT_POINTS = 50  # validation evaluations per run, whatever its length


def select_every(steps: int) -> int:
    """Steps between validation evaluations: about SELECT_POINTS per run, the last step always."""
    return max(1, math.ceil(steps / SELECT_POINTS))


def is_due(step: int, steps: int) -> bool:
    return step % select_every(steps) == 0 or step == steps


def validation_pairs(data: PairedData, n: int, size: int) -> PairSet:
    """The validation pairs of a run training on the first ``n`` pairs."""
    if data.val is not None:
        return data.val
    pairs = data.val_builder(size) if data.val_builder is not None else None
    if pairs is None:
        raise NegscaleError(
            f'train.select = "best" needs {size} validation pairs (data.n_eval) besides the '
            f"first data.n = {n} training pairs, and this dataset has not that many; lower "
            'data.n or data.n_eval, or set train.select = "last"'
        )
    return pairs


@dataclass
class Selection:
    """The best validation AUC seen so far, its step, and a CPU copy of those weights."""

    best_auc: float = -math.inf
    best_step: int | None = None
    weights: dict[str, torch.Tensor] | None = None
    trace: list[tuple[int, float]] = field(default_factory=list)  # (step, validation AUC)

    def offer(self, step: int, auc: float, model: torch.nn.Module) -> None:
        """Keep ``model``'s weights when ``auc`` beats every earlier one (ties keep the earlier)."""
        self.trace.append((step, auc))
        if auc > self.best_auc:
            self.best_auc, self.best_step = auc, step
            state = model.state_dict()
            self.weights = {k: v.detach().to("cpu", copy=True) for k, v in state.items()}

    def restore(self, model: torch.nn.Module) -> None:
        """Put the selected weights back into ``model`` (no-op before any offer)."""
        if self.weights is not None:
            model.load_state_dict(self.weights)

    def state_dict(self) -> dict:
        return {
            "best_auc": self.best_auc,
            "best_step": self.best_step,
            "weights": self.weights,
            "trace": list(self.trace),
        }

    def load_state_dict(self, state: dict) -> None:
        self.best_auc, self.best_step = state["best_auc"], state["best_step"]
        self.weights, self.trace = state["weights"], [tuple(t) for t in state["trace"]]
