"""The ``negscale`` command: a thin Typer layer that parses, calls and renders.

Errors on bad input are one ``error: ...`` line on stderr with exit code 2 and
no traceback; ``--json`` puts exactly one JSON document on stdout, while logs
and progress bars go to stderr.

One module per command (``train``, ``sweep``, ``results``, ``fit``, ``bench``,
``listing`` for ``list``) registers on the one app of :mod:`negscale.cli.app`;
what they share is in :mod:`negscale.cli.common`. Importing this package
imports every command module, in the order ``--help`` lists them.
"""

# isort: off
# Each command module registers its command on import; --help lists them in this order.
from negscale.cli import train, sweep, results, fit, bench, listing  # noqa: F401
from negscale.cli.app import app

# isort: on

__all__ = ["app"]
