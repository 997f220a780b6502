"""What ``negscale list`` shows: datasets, encoders, bundled recipes and negative sources.

Each row is a plain dict (name, summary, and a field or two), so the CLI only
renders. Recipe files are read once each: the summary is the file's first
comment line, the source its ``[negatives] source``.
"""

from __future__ import annotations

import tomllib

from negscale.errors import NegscaleError

KINDS = ("datasets", "encoders", "recipes", "negatives")


def catalogue(what: str) -> list[dict[str, str]]:
    """The rows of one kind; an unknown kind is a one-line error."""
    if what not in KINDS:
        raise NegscaleError(
            f"list: expected datasets, encoders, recipes or negatives, got {what!r}"
        )
    return {"datasets": _datasets, "encoders": _encoders, "recipes": _recipes,
            "negatives": _negatives}[what]()  # fmt: skip


def _datasets() -> list[dict[str, str]]:
    from negscale.data import DATASETS

    return [{"name": k, "summary": v.summary} for k, v in DATASETS.items()]


def _encoders() -> list[dict[str, str]]:
    from negscale.encoders import ENCODERS

    return [
        {"name": k, "inputs": "/".join(v.kinds), "summary": v.summary} for k, v in ENCODERS.items()
    ]


def _recipes() -> list[dict[str, str]]:
    from negscale.config import bundled_recipes

    rows = []
    for name, path in sorted(bundled_recipes().items()):
        text = path.read_text()
        first = text.splitlines()[0] if text else ""
        source = tomllib.loads(text).get("negatives", {}).get("source", "batch")
        rows.append({"name": name, "summary": first.lstrip("# ").strip(), "source": source})
    return rows


def _negatives() -> list[dict[str, str]]:
    from negscale.negatives import sources

    def options(cls: type) -> str:
        """The shared fields it reads; then its own, set in ``[negatives.<name>]``."""
        own = ", ".join(cls.spec.options.model_fields)
        return ", ".join(cls.spec.fields) + (f"; own: {own}" if own else "")

    return [{"name": k, "setting": v.setting, "summary": v.summary, "options": options(v)}
            for k, v in sources().items()]  # fmt: skip
