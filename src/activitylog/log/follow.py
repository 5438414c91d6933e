"""Following an account's log: its committed entries after a cursor, in seq order.

Every follower (the stream relay; later detectors, the checkpointer, the purger) keeps its own cursor per
account — the last seq it handled — and moves it only once its side effect is done. Reading by per-account
seq, never by an id shared across accounts, is what makes that safe: appends to one account are serialised
by its head row (``log.record``), so entry N+1 cannot commit before entry N, and a reader that sees the head
at H sees every entry up to H. Transactions of *different* accounts commit in any order, which a global
"id > last id" would get wrong; per-account cursors never compare them.

A filtered follower reads only its matches, but still moves past what it did not match: the batch says how
far it looked (``through``), the head it read first, so the cursor moves up to it even when nothing
matched.

Entries a purge removed are not there to read: a follower behind a purge steps over the purged runs
(:func:`first_purged_after`, :func:`purged_run`, read from the purge's tombstones) and says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import ColumnElement, Connection, Row, Table, func, select
from sqlalchemy.orm import Session

from activitylog.db.models import ActivityEntry, ChainHead, PurgedEntry
from activitylog.log.query import IN_SEQ_ORDER, ActivityFilter, conditions

_entries = cast(Table, ActivityEntry.__table__)
_heads = cast(Table, ChainHead.__table__)


@dataclass(frozen=True)
class Batch:
    rows: list[Row[Any]]
    """The matching committed entries after the cursor, oldest first."""
    through: int
    """The last seq this batch covers: handling every row moves the cursor here."""


def committed_head(reads: Connection | Session, account_id: str) -> int:
    """The seq of the account's last committed entry (0 for an empty log)."""
    seq = reads.execute(select(_heads.c.seq).where(_heads.c.account_id == account_id)).scalar_one_or_none()
    return int(seq or 0)


def entries_after(
    reads: Connection | Session,
    account_id: str,
    after_seq: int,
    *,
    limit: int,
    where: ActivityFilter | None = None,
) -> Batch:
    """Up to ``limit`` committed entries with seq > ``after_seq``, oldest first, matching ``where`` (the
    activity filters, their SQL as the log's query compiles it)."""
    head = committed_head(reads, account_id)  # first: every entry up to it has committed
    if head <= after_seq:
        return Batch([], after_seq)
    filters: Sequence[ColumnElement[bool]] = (
        conditions(account_id, where, IN_SEQ_ORDER)
        if where is not None
        else [_entries.c.account_id == account_id]
    )
    rows = list(
        reads.execute(
            select(_entries)
            .where(*filters, _entries.c.seq > after_seq, _entries.c.seq <= head)
            .order_by(_entries.c.seq)
            .limit(limit)
        ).all()
    )
    through = rows[-1].seq if len(rows) == limit else head
    return Batch(rows, through)


# ---- purged ranges a follower behind a purge steps over ----
# A purge (``log.purge``) deletes old entries and leaves a tombstone for each in ``activity_purged``. A
# follower whose cursor is behind it finds those seqs gone: it must step over them (it cannot handle what is
# not there) and say so, telling a purge apart from a lost entry. Every seq up to the head is an entry or a
# tombstone, so a run of tombstones after the cursor ends at the next entry.
_purged = cast(Table, PurgedEntry.__table__)


@dataclass(frozen=True)
class PurgedRun:
    """Seqs ``first``..``last``, purged by the run whose ``activity_log.purge`` entry is ``purge_seq``."""

    first: int
    last: int
    purge_seq: int
    prev_hash: str
    """Entry ``first``'s prev_hash: the hash of entry ``first - 1``."""
    hash: str
    """Entry ``last``'s hash: the prev_hash of entry ``last + 1``."""


def first_purged_after(
    reads: Connection | Session, account_id: str, after_seq: int, through: int
) -> int | None:
    """The first purged seq in ``after_seq + 1 .. through``, if any (one index probe)."""
    seq = reads.execute(
        select(func.min(_purged.c.seq)).where(
            _purged.c.account_id == account_id, _purged.c.seq > after_seq, _purged.c.seq <= through
        )
    ).scalar_one_or_none()
    return None if seq is None else int(seq)


def purged_run(reads: Connection | Session, account_id: str, first: int, through: int) -> PurgedRun:
    """The purged seqs from ``first`` (a purged seq) on, up to ``through``, that one purge run removed."""
    start = reads.execute(
        select(_purged.c.purge_seq, _purged.c.prev_hash).where(
            _purged.c.account_id == account_id, _purged.c.seq == first
        )
    ).one()
    next_entry = reads.execute(
        select(func.min(_entries.c.seq)).where(
            _entries.c.account_id == account_id, _entries.c.seq > first, _entries.c.seq <= through
        )
    ).scalar_one_or_none()
    next_run = reads.execute(
        select(func.min(_purged.c.seq)).where(
            _purged.c.account_id == account_id,
            _purged.c.seq > first,
            _purged.c.seq <= through,
            _purged.c.purge_seq != start.purge_seq,
        )
    ).scalar_one_or_none()
    last = min(int(s) - 1 for s in (next_entry, next_run, through + 1) if s is not None)
    end = reads.execute(
        select(_purged.c.hash).where(_purged.c.account_id == account_id, _purged.c.seq == last)
    ).scalar_one()
    return PurgedRun(first, last, int(start.purge_seq), start.prev_hash, end)
