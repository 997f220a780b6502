"""The fit's answer as data: :class:`FitReport` and its JSON (docs/fitting.md).

The JSON leads with one headline answer per n group,
``groups[].answer = {m_sat, ci, status, basis}`` (``null`` = an open bound),
then the decline, the ratio m_sat/n and the bracket; everything the answer
rests on (levels, forms, checks) sits under ``details``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from negscale.fit.answer import Answer
from negscale.fit.balance import Balance
from negscale.fit.cells import Curve, Outlier
from negscale.fit.scaling import Scaling
from negscale.jsonsafe import clean

M_SAT_DEFINITION = (
    "m_sat(ε) = the smallest m such that for every m' ≥ m one more doubling of the "
    "negatives gains at most ε in the metric: f(2m') − f(m') ≤ ε (higher is better)"
)


def _num(x: float) -> float | int:
    return int(x) if float(x).is_integer() else float(x)


def _ratio(x: float | None, n: float) -> float | None:
    return None if x is None else float(x) / n


@dataclass
class GroupReport:
    """One n group: its answer, and the cells it was read from (score units)."""

    answer: Answer
    curve: Curve
    sign: float  # score = sign · metric
    left_out: list[dict] = field(default_factory=list)

    @property
    def n(self) -> float:
        return self.answer.n

    def levels_table(self) -> list[dict]:
        """Per tested level: centre (metric units), se, seeds kept of all, gain per doubling."""
        c = self.curve
        rows = []
        for i in range(len(c)):
            gain = None
            if i + 1 < len(c):
                w = max(1.0, float(c.t[i + 1] - c.t[i]))
                gain = float((c.centre[i + 1] - c.centre[i]) / w)
            rows.append(
                {
                    "m": float(c.m[i]),
                    "centre": float(self.sign * c.centre[i]),
                    "se": float(c.se[i]),
                    "seeds": int(c.k[i]),
                    "seeds_all": int(c.k_all[i]),
                    "gain_per_doubling": gain,
                }
            )
        return rows

    def to_dict(self) -> dict:
        a = self.answer
        n = a.n
        d = a.decline
        return {
            "n": _num(n),
            "points": a.runs,
            "levels": int(a.m_levels.size),
            "answer": {"m_sat": a.m_sat, "ci": list(a.ci), "status": a.status, "basis": a.basis},
            "decline": None
            if d is None
            else {"from_m": d.from_m, "to_m": d.to_m, "drop": d.drop, "drop_sd": d.drop_sd},
            "ratio": _ratio(a.m_sat, n),
            "ratio_ci": [_ratio(a.ci[0], n), _ratio(a.ci[1], n)],
            "bracket": list(a.bracket),
            "seeds_left_out": self.left_out,
            "details": {
                "levels": self.levels_table(),
                "tested_levels": {
                    "status": a.reading.status,
                    "m_sat": a.reading.m_sat,
                    "ci": list(a.reading.interval),
                },
                "laws": [
                    {
                        "form": la.form,
                        "formula": la.formula,
                        "m_sat": la.m_sat,
                        "passed": la.passed,
                        "why": la.why,
                        "lack_of_fit_p": la.check_p,
                        "loo_z": la.loo_z,
                        "params": la.params,
                    }
                    for la in a.laws
                ],
                "used": a.used,
                "note": a.note,
                "extrapolated": a.extrapolated,
                "joint_ci": list(a.joint_ci),
                "scatter": a.scatter,
            },
        }


@dataclass
class FitReport:
    """What ``negscale fit`` found; :meth:`to_dict` is the JSON contract."""

    metric: str
    higher_is_better: bool
    scale: str
    setting: str
    tolerance: float
    tolerance_source: str
    noise_sd: float | None
    noise_source: str
    runs: int
    bootstrap: int
    confidence: float
    groups: list[GroupReport]
    scaling: Scaling | None
    predictions: list[dict]
    balance: Balance | None
    outliers: list[Outlier]
    warnings: list[str]
    dropped: list[str]
    label: str | None = None
    group: dict | None = None  # {"column", "value"} when fitted per value of --group-col
    tested: set[tuple[int, float, int]] = field(default_factory=set)  # (m, n, seed) of the runs

    @property
    def unit(self) -> str:
        return "percentage points" if self.scale == "percent" else f"{self.metric} units"

    def to_dict(self) -> dict[str, Any]:
        return clean(
            {
                "metric": self.label or self.metric,
                "metric_column": self.metric,
                "higher_is_better": self.higher_is_better,
                "scale": self.scale,
                "setting": self.setting,
                "tolerance": self.tolerance,
                "tolerance_source": self.tolerance_source,
                "noise_sd": self.noise_sd,
                "noise_source": self.noise_source,
                "confidence": self.confidence,
                "runs": self.runs,
                "bootstrap": self.bootstrap,
                "m_sat_definition": M_SAT_DEFINITION,
                "groups": [g.to_dict() for g in self.groups],
                "scaling": None if self.scaling is None else self.scaling.to_dict(),
                "predictions": self.predictions,
                "balance": None if self.balance is None else self.balance.to_dict(),
                "budget": [] if self.balance is None else self.balance.budget,
                "outliers": [
                    {"run_id": o.run_id, "n": o.n, "m": o.m, "value": o.value, "z": o.z}
                    for o in self.outliers
                ],
                "warnings": self.warnings,
                "dropped": self.dropped,
                "group": self.group,
            }
        )

    def answers(self) -> list[Answer]:
        return [g.answer for g in self.groups]


def finite(x: float | None) -> bool:
    return x is not None and bool(np.isfinite(x))
