"""Work done in batches, so background work (a purge, a recount) shares the database with the requests:
each batch a transaction of its own. On SQLite, whose write lock is the whole database, a request may wait
for one batch, so batches are sized by time, short on any machine. On PostgreSQL requests never wait for
them (a batch locks only the rows it changes, none a request writes), so batches are large: each one's
fixed statements (the counts of the hours it touched) are paid once per ``LARGE_BATCH`` entries, not per
few hundred (a purge at 2M entries: 850 entries/s in 0.1 s pieces, 11,300/s in 20,000-entry ones).

On SQLite a batch is also followed by a rest with the write lock free, so the requests waiting for it
(polling for the lock every ``db.base.SQLITE_POLL_SECONDS``) take it before the next batch does."""

from __future__ import annotations

import time

BATCH_SECONDS = 0.1
"""How long one batch of background work holds its transaction on SQLite: what a request may wait for it."""
LARGE_BATCH = 20_000
"""The seqs of one batch on PostgreSQL, and the most of one on SQLite."""
REST_SECONDS = 0.01
"""The pause after each batch on SQLite: several of a waiting writer's tries, a tenth of a batch."""


SMALL_BATCH = 100
"""The fewest seqs of a batch on SQLite, and its first: nothing is known yet of what a seq costs (a first
purge piece of 1,000 held the write lock 524 ms at 2M entries), and the size at most doubles a batch."""


def for_engine(dialect: str, batch: int | None = None) -> Pacer:
    """Batches sized by time on SQLite, ``LARGE_BATCH`` seqs each on PostgreSQL; ``batch``: a fixed size."""
    if batch is None and dialect != "sqlite":
        batch = LARGE_BATCH
    rest = REST_SECONDS if dialect == "sqlite" else 0.0
    return Pacer(first=SMALL_BATCH, most=LARGE_BATCH, fixed=batch, rest=rest)


class Pacer:
    """How many seqs the next batch takes: as many as the last whole batch went through in ``seconds``, so
    a batch holds its transaction (on SQLite, the database's write lock) about that long on any machine and
    engine; the size at most doubles or halves from one batch to the next, within ``least``..``most``.
    ``fixed`` keeps one size throughout (tests cut batches exactly where they want them); ``rest``: the
    pause after each batch, its transaction ended, in which others take the lock."""

    def __init__(
        self,
        seconds: float = BATCH_SECONDS,
        *,
        first: int = 1000,
        least: int = SMALL_BATCH,
        most: int = 20_000,
        fixed: int | None = None,
        rest: float = 0.0,
    ) -> None:
        self.seconds, self.least, self.most, self.rest = seconds, least, most, rest
        self.size = fixed or first
        self.fixed = fixed is not None

    def took(self, seqs: int, seconds: float) -> None:
        """A batch of ``seqs`` seqs took ``seconds`` and has committed: rest, and size the next one."""
        if self.rest:
            time.sleep(self.rest)
        if self.fixed or seqs < self.size:  # a short last batch says little of the rate
            return
        wanted = seqs * self.seconds / max(seconds, 1e-6)
        self.size = int(min(self.most, max(self.least, self.size // 2, min(wanted, self.size * 2))))
