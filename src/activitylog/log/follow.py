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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import ColumnElement, Connection, Row, Table, select
from sqlalchemy.orm import Session

from activitylog.db.models import ActivityEntry, ChainHead
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
