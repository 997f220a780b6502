"""Stop signals held back while the sweep takes a run's lock.

A scheduler's SIGTERM (raised as ``SystemExit`` by the CLI's handler) or a
Ctrl-C lands between any two bytecodes. Between the moment a lock file is
created and the moment its claim joins the sweep's list of held claims, an
exception would leave the lock behind, so that run reads as "running" until
its heartbeat goes stale. Inside :func:`signals_deferred` the signal is only
noted; it is delivered, through the handler that was in place, when the
block ends, where every lock taken is already in the list the unwinding
releases. Python offers no per-thread way to hold a signal back
(``pthread_sigmask`` leaves process-directed signals to other threads), hence
this small swap of handlers.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGTERM and SIGINT over the block, then deliver the first one that came."""
    if threading.current_thread() is not threading.main_thread():
        yield  # handlers run in the main thread only; a sweep in a thread is not signalled
        return
    caught: list[int] = []

    def note(signum: int, frame: Any) -> None:
        caught.append(signum)

    previous = {s: signal.signal(s, note) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if caught:
            signal.raise_signal(caught[0])  # the restored handler runs (raises) right here
