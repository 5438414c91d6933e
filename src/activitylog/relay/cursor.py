"""A stream's cursor as the relay moves it: a lease so one worker at a time delivers a stream, and moves
that hold only if nobody else moved the cursor meanwhile.

The lease is a row update that succeeds only when the lease is free or expired (``UPDATE … WHERE
lease_until < now``): one statement, atomic on both engines (PostgreSQL re-checks the condition on the row
it waited for; SQLite holds its write lock). A worker that stalls past its lease loses it; every later move
it tries names its lease, the generation and the seq it started from, so it changes nothing and stops —
and the event it had in flight is sent again by the next worker, with the same id.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Connection, Table, delete, insert, select, update
from sqlalchemy.orm import Session

from activitylog.db.base import Database
from activitylog.db.models import StreamCursor, StreamDelivery
from activitylog.ids import new_id

_cursors = cast(Table, StreamCursor.__table__)
_deliveries = cast(Table, StreamDelivery.__table__)
KEEP_DELIVERIES = 200
PRUNE_EVERY = 50


def _mine(account_id: str, stream_id: str) -> list[Any]:
    return [_cursors.c.account_id == account_id, _cursors.c.stream_id == stream_id]


def claim(db: Database, account_id: str, stream_id: str, owner: str, now: datetime, ttl: float) -> bool:
    """Take (or renew) the stream's lease for ``ttl`` seconds; False if another worker holds it."""
    free = (
        (_cursors.c.lease_owner.is_(None))
        | (_cursors.c.lease_until < now)
        | (_cursors.c.lease_owner == owner)
    )
    with db.for_account(account_id).writer() as session:
        result = session.execute(
            update(_cursors)
            .where(*_mine(account_id, stream_id), free)
            .values(lease_owner=owner, lease_until=now + timedelta(seconds=ttl))
        )
        session.commit()
    return cast(int, result.rowcount) == 1  # type: ignore[attr-defined]


def release(db: Database, account_id: str, stream_id: str, owner: str) -> None:
    with db.for_account(account_id).writer() as session:
        session.execute(
            update(_cursors)
            .where(*_mine(account_id, stream_id), _cursors.c.lease_owner == owner)
            .values(lease_owner=None, lease_until=None)
        )
        session.commit()


@dataclass(frozen=True)
class Cursor:
    """What a worker last saw of a stream's cursor (and, after each of its moves, what it set)."""

    account_id: str
    stream_id: str
    delivered_seq: int
    generation: int
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    delivered_at: datetime | None
    pending_checkpoint: int | None
    checkpoint_seq: int
    checkpoint_at: datetime | None
    lease_owner: str | None


_FIELDS = tuple(f.name for f in fields(Cursor))


def read(reads: Connection | Session, account_id: str, stream_id: str) -> Cursor | None:
    """The cursor as a read the caller has open sees it."""
    row = reads.execute(
        select(*(_cursors.c[name] for name in _FIELDS)).where(*_mine(account_id, stream_id))
    ).one_or_none()
    return Cursor(**row._mapping) if row is not None else None


def move(
    db: Database,
    cursor: Cursor,
    owner: str,
    values: dict[str, Any],
    *,
    attempts: list[dict[str, Any]] | None = None,
    now: datetime,
    ttl: float,
) -> Cursor | None:
    """Set ``values`` on the cursor (and renew the lease) if it is still where ``cursor`` saw it, under
    this worker's lease, and record the delivery ``attempts`` in the same transaction. Returns the cursor
    as it now is, or None if someone else moved it (a replay, a resume, another worker after this one's
    lease expired): the caller stops."""
    account_id, stream_id = cursor.account_id, cursor.stream_id
    with db.for_account(account_id).writer() as session:
        result = session.execute(
            update(_cursors)
            .where(
                *_mine(account_id, stream_id),
                _cursors.c.lease_owner == owner,
                _cursors.c.generation == cursor.generation,
                _cursors.c.delivered_seq == cursor.delivered_seq,
            )
            .values(lease_until=now + timedelta(seconds=ttl), **values)
        )
        moved = cast(int, result.rowcount) == 1  # type: ignore[attr-defined]
        if attempts:
            ids = [new_id("dlv") for _ in attempts]
            session.execute(
                insert(_deliveries),
                [
                    {
                        "account_id": account_id,
                        "stream_id": stream_id,
                        "id": i,
                        "at": now,
                        **a,
                    }  # an attempt that says when it was made keeps its own "at"
                    for i, a in zip(ids, attempts, strict=True)
                ],
            )
            if any(hash(i) % PRUNE_EVERY == 0 for i in ids):
                _prune(session, account_id, stream_id)
        session.commit()
    return replace(cursor, **values) if moved else None


def _prune(session: Any, account_id: str, stream_id: str) -> None:
    """Keep the stream's latest attempts only."""
    where = [_deliveries.c.account_id == account_id, _deliveries.c.stream_id == stream_id]
    oldest_kept = session.execute(
        select(_deliveries.c.id)
        .where(*where)
        .order_by(_deliveries.c.id.desc())
        .offset(KEEP_DELIVERIES)
        .limit(1)
    ).scalar_one_or_none()
    if oldest_kept is not None:
        session.execute(delete(_deliveries).where(*where, _deliveries.c.id <= oldest_kept))
