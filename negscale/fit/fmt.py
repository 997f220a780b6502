"""Number formatting shared by the fit's inputs, report and plots."""

from __future__ import annotations

import numpy as np


def fmt(v: float | None, digits: int = 3) -> str:
    """Compact number: 3 significant digits; big counts as 13.6k, 1.8M, 3.3G."""
    if v is None or np.isnan(v):
        return "–"
    if np.isinf(v):
        return "∞" if v > 0 else "−∞"
    a = abs(v)
    if a >= 1e12:
        return f"{v:.{digits - 1}e}"
    for div, suf in ((1e9, "G"), (1e6, "M"), (1e4, "k")):
        if a >= div:
            d = 1e3 if suf == "k" else div
            return f"{v / d:.{digits}g}{suf}"
    if a >= 1e3:
        return f"{v:.0f}"
    if a != 0 and a < 1e-3:
        return f"{v:.{digits - 1}e}"
    return f"{v:.{digits}g}"


def fmt_ci(ci: list[float] | None) -> str:
    """[lo, hi]; an infinite upper end (an open interval) as [lo, ∞)."""
    if not ci or any(v is None for v in ci) or np.isnan(np.asarray(ci, float)).any():
        return "–"
    if np.isinf(ci[1]) and ci[1] > 0:
        return f"[{fmt(ci[0])}, ∞)"
    return f"[{fmt(ci[0])}, {fmt(ci[1])}]"
