"""The one exception type users see as a clean message instead of a traceback."""


class NegscaleError(Exception):
    """User-facing error: the CLI prints 'error: <msg>' and exits 2."""
