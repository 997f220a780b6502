"""The study at a glance: a metric against m (log scale), one line per n, a band over seeds.

matplotlib is imported here, when a plot is asked for, never at start-up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def study_lines(summary: dict[str, Any], metric: str) -> dict[int, dict[str, list[float]]]:
    """n -> the line to draw: m, mean, and the band mean ± sd (sd 0 for a single seed).

    Cells without an ok run are left out of their line.
    """
    lines: dict[int, dict[str, list[float]]] = {}
    for c in sorted(summary["cells"], key=lambda c: (c["n"], c["m"])):
        stat = c[metric]
        if stat["mean"] is None:
            continue
        line = lines.setdefault(c["n"], {"m": [], "mean": [], "lo": [], "hi": []})
        sd = stat["sd"] or 0.0
        line["m"].append(c["m"])
        line["mean"].append(stat["mean"])
        line["lo"].append(stat["mean"] - sd)
        line["hi"].append(stat["mean"] + sd)
    return lines


def plot_study(summary: dict[str, Any], metric: str, path: str | Path) -> Path:
    """Draw ``summary`` (from :func:`negscale.sweep.summarise`) to ``path``; returns it.

    Each n is one line through the per-cell means over the seeds that ran ok,
    with a band of ± one sd where a cell has two or more seeds
    (:func:`study_lines`); the metric's chance level on the held-out data is a
    dashed line.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    lines = study_lines(summary, metric)
    for n, line in lines.items():
        (drawn,) = ax.plot(line["m"], line["mean"], marker="o", label=f"n = {n}")
        ax.fill_between(
            line["m"], line["lo"], line["hi"], color=drawn.get_color(), alpha=0.2, linewidth=0
        )
    chance = (summary.get("chance") or {}).get(metric)
    if chance is not None:
        _chance_line(ax, chance, lines)
    ax.set_xscale("log")
    ax.set_xlabel("negatives per anchor m")
    ax.set_ylabel(metric)
    ax.set_title(f"{summary['study']}: {metric} (mean ± sd over seeds)")
    ax.legend()
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def _chance_line(ax: Any, chance: float, lines: dict[int, dict[str, list[float]]]) -> None:
    """The chance level as a dashed line when it is near the data; named in the legend
    otherwise, so a study far above chance is not squashed into a flat band."""
    values = [v for line in lines.values() for key in ("lo", "hi") for v in line[key]]
    if not values:
        return
    lo, hi = min(values), max(values)
    if lo - (hi - lo) <= chance <= hi + (hi - lo):
        ax.axhline(chance, color="grey", linestyle="--", linewidth=1, label="chance")
    else:
        ax.plot([], [], " ", label=f"chance: {chance:.3g} (off the axis)")
