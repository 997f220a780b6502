"""Your own parts on the command line: ``NEGSCALE_PLUGINS=my_parts,lab.data negscale …``.

Each named module is imported before the command runs (and in every
``--jobs`` worker process), so the datasets, towers, negative sources and fit
forms it registers (``@data.register``, ``@negatives.register``, …) are there
for recipes, ``negscale list`` and sweeps. A module that cannot be imported
is a one-line error naming it.
"""

from __future__ import annotations

import importlib
import os

from negscale.errors import NegscaleError

ENV = "NEGSCALE_PLUGINS"


def plugin_names(value: str | None = None) -> list[str]:
    """The module names in ``value`` (default: the environment variable), in order."""
    text = os.environ.get(ENV, "") if value is None else value
    return [name.strip() for name in text.split(",") if name.strip()]


def load_plugins(value: str | None = None) -> list[str]:
    """Import every plugin module (a module already imported is not imported again)."""
    names = plugin_names(value)
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:  # the user's module: any failure is theirs to read
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise NegscaleError(f"{ENV}: cannot import '{name}' ({reason})") from None
    return names
