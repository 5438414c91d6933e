"""Purging entries past an account's retention, keeping what the proofs need.

A purge removes every entry that occurred before a cut-off (``older_than``) and that no active legal hold
covers, and leaves a tombstone for each (``activity_purged``: seq, hash, prev_hash and the policy), so the
Merkle tree keeps its leaves (``log.tree_store`` reads a purged seq's leaf from its tombstone), the chain's
links across each gap are still checkable, and ``verify`` says which ranges went under which policy. The
tree itself is never touched. Since ``occurred_at`` never decreases along seq, the entries before the cut-off
are a prefix of the log; legal holds cut holes in it, so one run may purge several ranges.

The deletion itself goes through the database's own door (migration 0012): ``activity_purge()``, a
``SECURITY DEFINER`` function on PostgreSQL that re-checks the policy, and on SQLite the same statements in
the caller's transaction, which the append-only triggers let through only for rows whose tombstone exists.
The plan is found in a read (appends go on meanwhile); the run's ``activity_log.purge`` entry (written by
the caller, under the head's lock, with the plan) comes first; then the plan is carried out in pieces
(``activitylog.pacing``), each in a transaction of its own that does not hold the chain head, so appends
go on between them (``services.retention``). A hold placed during a run protects what the remaining
pieces would have taken: the database re-checks the holds in each piece.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Table,
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    text,
)
from sqlalchemy.orm import Session

from activitylog.db.models import ActivityEntry, AffectedResource, ChainHead, LegalHold, PurgedEntry
from activitylog.db.planning import not_an_index
from activitylog.log import search_index
from activitylog.log.chain import format_instant
from activitylog.pacing import Pacer

_entries = cast(Table, ActivityEntry.__table__)
_holds = cast(Table, LegalHold.__table__)
_purged = cast(Table, PurgedEntry.__table__)
_affected = cast(Table, AffectedResource.__table__)
_heads = cast(Table, ChainHead.__table__)

Range = tuple[int, int]


def held(occurred_at: ColumnElement[Any], account_id: ColumnElement[Any]) -> ColumnElement[bool]:
    """Whether an active legal hold of the account covers an entry of that instant (both ends inclusive)."""
    return exists().where(
        _holds.c.account_id == account_id,
        _holds.c.released_at.is_(None),
        or_(_holds.c.since.is_(None), occurred_at >= _holds.c.since),
        or_(_holds.c.until.is_(None), occurred_at <= _holds.c.until),
    )


def purgeable(account_id: str, older_than: datetime) -> list[ColumnElement[bool]]:
    """The entries a purge at ``older_than`` removes: older than it, under no active legal hold."""
    return _older_and_unheld(account_id, _entries.c.occurred_at, older_than)


def still_purgeable(account_id: str, older_than: datetime) -> list[ColumnElement[bool]]:
    """The same, as a re-check inside a piece's seq range: the range is the access path, not the age (on
    SQLite the time index would walk every older entry of the account, 1M at 2M entries, 50 ms a piece)."""
    return _older_and_unheld(account_id, not_an_index(_entries.c.occurred_at), older_than)


def _older_and_unheld(
    account_id: str, age: ColumnElement[Any], older_than: datetime
) -> list[ColumnElement[bool]]:
    return [
        _entries.c.account_id == account_id,
        age < older_than,
        ~held(_entries.c.occurred_at, _entries.c.account_id),
    ]


@dataclass(frozen=True)
class Plan:
    """What a purge at ``older_than`` removes: maximal runs of consecutive seqs, oldest first."""

    account_id: str
    older_than: datetime
    retention_days: int
    ranges: list[Range]
    count: int

    def changes(self) -> dict[str, Any]:
        """The ``activity_log.purge`` entry's changes."""
        return {
            "ranges": [list(r) for r in self.ranges],
            "count": self.count,
            "older_than": format_instant(self.older_than),
            "retention_days": self.retention_days,
        }


def plan(session: Session, account_id: str, older_than: datetime, retention_days: int) -> Plan:
    """The ranges a purge would remove, found by the database in one pass (gaps and islands: consecutive
    seqs share ``seq - row_number()``)."""
    candidates = (
        select(
            _entries.c.seq,
            (_entries.c.seq - func.row_number().over(order_by=_entries.c.seq)).label("island"),
        )
        .where(*purgeable(account_id, older_than))
        .subquery()
    )
    islands = (
        select(func.min(candidates.c.seq), func.max(candidates.c.seq), func.count())
        .group_by(candidates.c.island)
        .order_by(func.min(candidates.c.seq))
    )
    ranges: list[Range] = []
    count = 0
    for lo, hi, n in session.execute(islands):
        ranges.append((int(lo), int(hi)))
        count += int(n)
    return Plan(account_id, older_than, retention_days, ranges, count)


def lock_head(session: Session, account_id: str) -> int:
    """Lock the account's chain head (appends wait; SQLite's writer already holds the database's lock) and
    return the seq the run's own entry will take."""
    seq = session.execute(
        select(_heads.c.seq).where(_heads.c.account_id == account_id).with_for_update()
    ).scalar_one_or_none()
    return int(seq or 0) + 1


_PG_PURGE = text("SELECT activity_purge(:account, :lo, :hi, :older_than, :purge_seq)")


def batches(ranges: list[Range], pacer: Pacer) -> Iterator[Range]:
    """The ranges cut into pieces of ``pacer.size`` seqs as it stands when each piece is cut, oldest first."""
    for lo, hi in ranges:
        start = lo
        while start <= hi:
            end = min(hi, start + pacer.size - 1)
            yield start, end
            start = end + 1


def execute_range(session: Session, plan: Plan, lo: int, hi: int, purge_seq: int) -> int:
    """Tombstone and delete the plan's entries in ``lo..hi`` (one of its ranges or a piece of one); returns
    how many went. ``purge_seq`` is the run's ``activity_log.purge`` entry, written before in a transaction
    of its own (or by the caller, in this one, while it holds the head's lock)."""
    if session.get_bind().dialect.name == "postgresql":
        params = {
            "account": plan.account_id,
            "lo": lo,
            "hi": hi,
            "older_than": plan.older_than,
            "purge_seq": purge_seq,
        }
        n = int(session.execute(_PG_PURGE, params).scalar_one())
    else:
        n = _purge_sqlite(session, plan, lo, hi, purge_seq)
    if n > hi - lo + 1:
        raise RuntimeError(f"purge of seq {lo}..{hi} removed {n} entries, more than {hi - lo + 1}")
    return n


def _purge_sqlite(session: Session, plan: Plan, lo: int, hi: int, purge_seq: int) -> int:
    """What ``activity_purge()`` does on PostgreSQL: tombstones first, then the deletes the triggers allow
    only for tombstoned rows, and the text-search index's copies of them."""
    in_range = [_entries.c.seq.between(lo, hi), *still_purgeable(plan.account_id, plan.older_than)]
    tombstones = select(
        _entries.c.account_id,
        _entries.c.seq,
        _entries.c.hash,
        _entries.c.prev_hash,
        literal(plan.older_than, _purged.c.older_than.type),
        literal(plan.retention_days),
        literal(purge_seq),
    ).where(*in_range)
    columns = ["account_id", "seq", "hash", "prev_hash", "older_than", "retention_days", "purge_seq"]
    inserted = session.execute(insert(_purged).from_select(columns, tombstones))
    n = int(getattr(inserted, "rowcount", 0) or 0)
    gone = and_(_purged.c.account_id == plan.account_id, _purged.c.seq.between(lo, hi))
    session.execute(
        delete(_affected).where(
            _affected.c.account_id == plan.account_id,
            _affected.c.seq.between(lo, hi),
            exists().where(gone, _purged.c.seq == _affected.c.seq),
        )
    )
    for table in search_index.TABLES:  # the text-search copies of the tombstoned entries
        with search_index.bounded_merges(session, table):
            session.execute(
                search_index.delete_purged(table), {"account": plan.account_id, "lo": lo, "hi": hi}
            )
    session.execute(
        delete(_entries).where(
            _entries.c.account_id == plan.account_id,
            _entries.c.seq.between(lo, hi),
            exists().where(gone, _purged.c.seq == _entries.c.seq),
        )
    )
    return int(n)


# ---- reading what was purged ----
@dataclass(frozen=True)
class PurgedRange:
    """Consecutive purged seqs that went in one run, under one policy."""

    first: int
    last: int
    older_than: datetime
    retention_days: int
    purge_seq: int

    def as_api(self) -> dict[str, Any]:
        return {
            "from": self.first,
            "to": self.last,
            "older_than": format_instant(self.older_than),
            "retention_days": self.retention_days,
            "purge_seq": self.purge_seq,
        }


def purged_ranges(session: Session, account_id: str, through: int | None = None) -> list[PurgedRange]:
    """The account's purged seqs up to ``through`` (default: all), as ranges each purged by one run."""
    rows = session.execute(
        _purged_ranges_statement(), {"account": account_id, "through": through if through else 2**62}
    )
    return [PurgedRange(r.first, r.last, r.older_than, r.retention_days, r.purge_seq) for r in rows]


def _purged_ranges_statement() -> Any:
    inner = (
        select(
            _purged.c.seq,
            _purged.c.older_than,
            _purged.c.retention_days,
            _purged.c.purge_seq,
            # consecutive seqs of one run share it; a run's seqs may interleave with another's
            (
                _purged.c.seq
                - func.row_number().over(partition_by=_purged.c.purge_seq, order_by=_purged.c.seq)
            ).label("island"),
        )
        .where(_purged.c.account_id == bindparam("account"), _purged.c.seq <= bindparam("through"))
        .subquery()
    )
    return (
        select(
            func.min(inner.c.seq).label("first"),
            func.max(inner.c.seq).label("last"),
            inner.c.older_than,
            inner.c.retention_days,
            inner.c.purge_seq,
        )
        .group_by(inner.c.purge_seq, inner.c.island, inner.c.older_than, inner.c.retention_days)
        .order_by(func.min(inner.c.seq))
    )


def merged(ranges: list[PurgedRange]) -> list[Range]:
    """``[[from, to], …]``: the purged seqs as maximal ranges, whichever runs purged them."""
    out: list[list[int]] = []
    for r in ranges:
        if out and out[-1][1] + 1 == r.first:
            out[-1][1] = r.last
        else:
            out.append([r.first, r.last])
    return [(a, b) for a, b in out]


def summary(ranges: list[PurgedRange]) -> dict[str, Any]:
    """What manifests, proof files and ``verify`` say about purged seqs: the ranges (the contract's
    ``purged``) and, per run, the policy they went under (``purges``)."""
    return {
        "purged": [list(r) for r in merged(ranges)],
        "purges": [r.as_api() for r in ranges],
    }


def tombstones(session: Session, account_id: str, from_seq: int, batch: int) -> Iterator[Any]:
    """The account's tombstones from ``from_seq`` on, in seq order (for ``verify``'s walk)."""
    statement = (
        select(_purged.c.seq, _purged.c.hash, _purged.c.prev_hash)
        .where(_purged.c.account_id == account_id, _purged.c.seq >= from_seq)
        .order_by(_purged.c.seq)
    )
    return iter(session.execute(statement.execution_options(yield_per=batch)))
