"""Writers waiting for SQLite's write lock, seen from every process, so background batches let them go first.

SQLite's write lock is the whole file and keeps no queue: when a purge piece commits, its next piece and a
request that has been waiting race for the lock, and on a busy machine the request can lose (a purge at 2M
entries: 8 of 10 appends over 250 ms had waited through two pieces in a row). So a writer that finds the
lock taken holds a shared ``flock`` on a file beside the database while it polls for it, and a batch, before
taking the lock again, waits until no one holds that flock (for a bounded time: the batch must progress too).
A crashed waiter's lock goes with its process."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

SUFFIX = "-writers"
"""The file beside the database (as SQLite's own ``-wal`` and ``-shm``); it holds nothing but the locks."""
POLL_SECONDS = 0.002
"""How often a writer waiting for SQLite's write lock tries again, and a batch looks whether one waits.
SQLite's own busy handler backs off to 100 ms between tries, so a writer behind a run of short
transactions (a purge's pieces) missed the gaps between them and waited seconds."""


class WaitingWriters:
    """The writers waiting for one SQLite database's write lock (``flock``: each wait its own open file, so
    threads of one process count apart, and locks never outlive their process)."""

    def __init__(self, database_path: str) -> None:
        self.path = database_path + SUFFIX

    @classmethod
    def beside(cls, database: str | None) -> WaitingWriters | None:
        """For a database file; none for an in-memory one, which only its own connection can write."""
        if not database or database == ":memory:" or database.startswith("file::memory:"):
            return None
        return cls(database)

    def _open(self) -> int:
        return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    @contextmanager
    def waiting(self) -> Iterator[None]:
        """Counted as waiting meanwhile."""
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)  # blocks only for the instant a batch looks (``any``)
            yield
        finally:
            os.close(fd)  # and with it the lock

    def any(self) -> bool:
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def let_go_first(self, most: float) -> float:
        """Wait while any writer waits, at most ``most`` seconds; how long it waited."""
        began = time.monotonic()
        while self.any():
            waited = time.monotonic() - began
            if waited >= most:
                return waited
            time.sleep(POLL_SECONDS)
        return time.monotonic() - began
