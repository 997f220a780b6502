"""Run locks: a run is trained only under an exclusive claim on ``runs/.<run_id>.lock``.

The lock file is created with O_CREAT|O_EXCL, holds the owner's pid and host,
is flock-ed while held and its mtime is touched as a heartbeat. A lock whose
owner is gone (dead pid on this host, no flock holder, or a heartbeat that
stopped on another host) is reclaimed, so a killed sweep never blocks a run.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from negscale.results import runs_dir

HEARTBEAT_S = 30.0  # a held lock's mtime is refreshed this often
FOREIGN_STALE_S = 600.0  # a lock from another host is stale when not refreshed for this long
EMPTY_STALE_S = 30.0  # a lock file without owner info (killed while claiming) after this long
HOST = socket.gethostname()


def lock_path(results: str | Path, run_id: str) -> Path:
    return runs_dir(results) / f".{run_id}.lock"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _try_flock(fd: int) -> bool | None:
    """True: locked; False: another open file holds it; None: the filesystem cannot flock."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:
        return None
    return True


def _owner(fd: int) -> dict[str, Any]:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _is_stale(fd: int, flock_free: bool | None) -> bool:
    """Whether the lock open on ``fd`` was left by a process that is gone.

    Same host: its pid is dead, or nobody holds the flock that every live owner
    holds. Another host: its heartbeat (mtime) stopped ``FOREIGN_STALE_S`` ago.
    """
    info = _owner(fd)
    age = time.time() - os.fstat(fd).st_mtime
    if "pid" not in info or "host" not in info:
        return age > EMPTY_STALE_S
    if info["host"] == HOST:
        return bool(flock_free) or not _pid_alive(int(info["pid"]))
    return age > FOREIGN_STALE_S


@contextlib.contextmanager
def _flocked(path: Path, flags: int) -> Iterator[tuple[int, bool | None] | None]:
    """An existing lock file opened and flock attempted: ``(fd, locked)``, or None if gone.

    ``locked`` is :func:`_try_flock`'s answer; the file is closed (and any flock
    dropped) on exit. The one place a lock someone else made is opened.
    """
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        yield None
        return
    try:
        yield fd, _try_flock(fd)
    finally:
        os.close(fd)


def _reclaim_if_stale(path: Path) -> bool:
    """Remove a stale lock; True when the caller should try to create it again."""
    with _flocked(path, os.O_RDWR) as held:
        if held is None:
            return True
        fd, locked = held
        if locked is False:
            return False  # a live owner holds it
        try:
            if os.fstat(fd).st_ino != os.stat(path).st_ino:
                return True  # replaced while we looked: look again
        except FileNotFoundError:
            return True
        if not _is_stale(fd, locked):
            return False
        # We hold the flock on this inode, so no other reclaimer can act on it now.
        os.unlink(path)
        return True


class Claim:
    """An exclusive hold on one run: the lock file exists, is flock-ed and heartbeats."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path, self.fd = path, fd
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, daemon=True)
        self._beat.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                os.utime(self.fd)
            except OSError:
                return

    def release(self) -> None:
        """Stop the heartbeat and remove the lock (idempotent)."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._beat.join()
        try:
            if os.fstat(self.fd).st_ino == os.stat(self.path).st_ino:
                os.unlink(self.path)
        except FileNotFoundError:
            pass
        os.close(self.fd)


def claim(results: str | Path, run_id: str) -> Claim | None:
    """Claim a run for this process, or None when a live process holds it."""
    path = lock_path(results, run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(8):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
        except FileExistsError:
            if not _reclaim_if_stale(path):
                return None
            continue
        try:
            # Blocking: a reclaimer may hold it for an instant while it sees no owner yet.
            # Without flock (some network filesystems) the pid/heartbeat checks still apply.
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_EX)
            owner = {"pid": os.getpid(), "host": HOST, "since": time.time()}
            os.write(fd, json.dumps(owner).encode())
            return Claim(path, fd)
        except BaseException:  # e.g. SIGTERM's SystemExit right after the lock appeared
            path.unlink(missing_ok=True)
            os.close(fd)
            raise
    return None


def lock_state(results: str | Path, run_id: str) -> str | None:
    """``running`` when a live process holds the run's lock, else None (read-only check)."""
    with _flocked(lock_path(results, run_id), os.O_RDONLY) as held:
        if held is None:
            return None
        fd, locked = held
        return None if _is_stale(fd, locked) else "running"
