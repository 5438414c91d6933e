"""Work done in batches, so background work (a purge, a recount) shares the database with the requests:
each batch a transaction of its own. On SQLite, whose write lock is the whole database, a request may wait
for one batch, so batches are sized by time, short on any machine. On PostgreSQL requests never wait for
them (a batch locks only the rows it changes, none a request writes), so batches are large: each one's
fixed statements (the counts of the hours it touched) are paid once per ``LARGE_BATCH`` entries, not per
few hundred (a purge at 2M entries: 850 entries/s in 0.1 s pieces, 11,300/s in 20,000-entry ones).

On SQLite a batch is also followed by a rest with the write lock free, so the requests waiting for it
(polling for the lock every ``db.waiting.POLL_SECONDS``) take it before the next batch does; and when
writers are still waiting after it (``db.waiting``: a slow machine may not have run them yet), the next
batch waits for them, up to a batch's own time, so an append waits for one batch, not two."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from activitylog.db.base import Database

BATCH_SECONDS = 0.1
"""How long one batch of background work holds its transaction on SQLite: what a request may wait for it."""
LARGE_BATCH = 20_000
"""The seqs of one batch on PostgreSQL, and the most of one on SQLite."""
REST_SECONDS = 0.01
"""The pause after each batch on SQLite: several of a waiting writer's tries, a tenth of a batch."""


SMALL_BATCH = 100
"""The fewest seqs of a batch on SQLite, and its first: nothing is known yet of what a seq costs (a first
purge piece of 1,000 held the write lock 524 ms at 2M entries), and the size at most doubles a batch."""


def for_engine(
    dialect: str, batch: int | None = None, waiting: Callable[[float], float] | None = None
) -> Pacer:
    """Batches sized by time on SQLite, ``LARGE_BATCH`` seqs each on PostgreSQL; ``batch``: a fixed size;
    ``waiting``: the database's ``WaitingWriters.let_go_first`` (SQLite)."""
    if batch is None and dialect != "sqlite":
        batch = LARGE_BATCH
    rest = REST_SECONDS if dialect == "sqlite" else 0.0
    return Pacer(first=SMALL_BATCH, most=LARGE_BATCH, fixed=batch, rest=rest, let_go_first=waiting)


def for_database(db: Database, batch: int | None = None) -> Pacer:
    """:func:`for_engine` for this database, letting the writers waiting for its lock go first."""
    waiters = db.waiting_writers
    return for_engine(db.dialect, batch, waiters.let_go_first if waiters is not None else None)


class Pacer:
    """How many seqs the next batch takes: as many as the last whole batch went through in ``seconds``, so
    a batch holds its transaction (on SQLite, the database's write lock) about that long on any machine and
    engine; the size at most doubles or halves from one batch to the next, within ``least``..``most``.
    ``fixed`` keeps one size throughout (tests cut batches exactly where they want them); ``rest``: the
    pause after each batch, its transaction ended, in which others take the lock; ``let_go_first``, given
    at most ``seconds``, returns once no other writer waits for the lock (or that time is up)."""

    def __init__(
        self,
        seconds: float = BATCH_SECONDS,
        *,
        first: int = 1000,
        least: int = SMALL_BATCH,
        most: int = 20_000,
        fixed: int | None = None,
        rest: float = 0.0,
        let_go_first: Callable[[float], float] | None = None,
    ) -> None:
        self.seconds, self.least, self.most, self.rest = seconds, least, most, rest
        self.let_go_first = let_go_first
        self.size = fixed or first
        self.fixed = fixed is not None

    def took(self, seqs: int, seconds: float) -> None:
        """A batch of ``seqs`` seqs took ``seconds`` and has committed: rest, and size the next one."""
        if self.rest:
            time.sleep(self.rest)
        if self.let_go_first is not None:
            self.let_go_first(self.seconds)
        if self.fixed or seqs < self.size:  # a short last batch says little of the rate
            return
        wanted = seqs * self.seconds / max(seconds, 1e-6)
        self.size = int(min(self.most, max(self.least, self.size // 2, min(wanted, self.size * 2))))
