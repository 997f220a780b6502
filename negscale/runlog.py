"""A run's books: step losses, negatives seen, the training curve, divergence, timings.

Kept apart from the trainer so that the record is built from what the run
logged (and what the evaluation measured), not from the trainer's internals,
and so that a checkpoint carries the books as one piece of state.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from negscale.optim import warmup_cosine

HISTORY_POINTS = 100  # rows of a run's training curve (runs/<run_id>.history.parquet)


class Diverged(RuntimeError):
    """The training loss became NaN or infinite."""


def history_every(steps: int) -> int:
    """Steps between training-curve rows: about HISTORY_POINTS rows whatever the run length."""
    return max(1, math.ceil(steps / HISTORY_POINTS))


class RunLog:
    """What one run has done so far, step by step.

    Step losses stay on the device until ``flush`` (one host sync for several
    steps on GPU); a non-finite one raises :class:`Diverged` there. ``tau``
    gives the temperature now, for the curve's rows.
    """

    def __init__(
        self, steps: int, lr: float, warmup: float, sync_every: int, tau: Callable[[], float]
    ) -> None:
        self.steps, self.lr, self.warmup = steps, lr, warmup
        self.sync_every, self.tau = sync_every, tau
        self.losses: list[float] = []
        self.pending: list[torch.Tensor | float] = []  # step losses not yet checked
        self.negatives_seen: list[float] = []
        self.scores_per_step = 0
        self.history: list[dict[str, float]] = []
        self.train_s = 0.0  # the steps
        self.select_s = 0.0  # selection's validation evaluations (train.select = "best")
        self.eval_s = 0.0  # the held-out evaluations at step 0 and at the end

    def add(self, loss: torch.Tensor | float, negatives_per_anchor: float, scores: int) -> None:
        """One step's outcome; the losses reach the host every ``sync_every`` steps (a
        float is on the host already: runs stepped together on CPU bring theirs at once)."""
        self.pending.append(loss)
        self.negatives_seen.append(negatives_per_anchor)
        self.scores_per_step = scores
        if len(self.pending) >= self.sync_every:
            self.flush()

    def flush(self) -> None:
        """Bring pending step losses to the host in one sync; stop at the first non-finite one.

        A diverged step has already updated the weights, which is moot: the run
        stops here and is recorded as diverged.
        """
        if not self.pending:
            return
        pending = self.pending
        if isinstance(pending[0], torch.Tensor):
            values = torch.stack(pending).float().cpu().tolist()  # type: ignore[arg-type]
        else:
            values = [float(v) for v in pending]
        first = len(self.losses)
        self.pending.clear()
        for i, value in enumerate(values):
            if not math.isfinite(value):
                raise Diverged(f"loss became {value} at step {first + i}")
            self.losses.append(value)
            self._curve_row(first + i + 1)

    def _curve_row(self, step: int) -> None:
        """A training-curve row every :func:`history_every` steps and at the last one.

        ``loss`` is the mean step loss since the previous row; ``lr`` the rate
        the scheduler used for that step; ``tau`` the temperature now.
        """
        if step % history_every(self.steps) and step != self.steps:
            return
        last = int(self.history[-1]["step"]) if self.history else 0
        window = self.losses[last:step]
        lr = self.lr * warmup_cosine(step - 1, self.steps, self.warmup)
        self.history.append(
            {"step": step, "loss": sum(window) / len(window), "lr": lr, "tau": self.tau()}
        )

    def train_loss(self) -> float | None:
        """Mean loss of the last tenth of the steps (the record's ``train_loss``)."""
        tail = self.losses[-max(1, len(self.losses) // 10) :]
        return sum(tail) / len(tail) if tail else None

    def negatives_used(self) -> float | None:
        """Mean negatives per anchor over the steps; None before the first step."""
        seen = self.negatives_seen
        return sum(seen) / len(seen) if seen else None

    def state_dict(self) -> dict[str, Any]:
        self.flush()
        return {
            "losses": self.losses,
            "negatives_seen": self.negatives_seen,
            "history": self.history,
            "train_s": self.train_s,
            "select_s": self.select_s,
            "eval_s": self.eval_s,
            "scores_per_step": self.scores_per_step,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.losses = list(state["losses"])
        self.negatives_seen = list(state["negatives_seen"])
        self.history = list(state.get("history", []))  # checkpoints before the curve lack it
        self.train_s = state["train_s"]
        self.select_s = state.get("select_s", 0.0)  # older checkpoints lack the two
        self.eval_s = state.get("eval_s", 0.0)
        # a run resumed at its last step takes no step to count them again
        self.scores_per_step = state.get("scores_per_step", self.scores_per_step)
