"""Derived counts of the log: entries per UTC hour and per UTC day by actor, action and resource type.

A follower of the log (``log/follow.py``'s rule: one cursor per account, moved only with what it
counted) keeps ``activity_counts`` in the worker process, after entries commit, never on a mutation's
commit path. A purge removes entries the counts hold: each piece of it takes the entries it removes that
the follower had counted out of the counts, in the piece's own transaction and under the cursor's lock
(:func:`leaving`), so the counts stay exact through a purge, with no recount and no reader sent to the
log. A lost cursor is a rebuild (counted again from seq 1); ``verify`` checks the counts against the entries
(:func:`mismatch`).

Four grains, because a row per (actor, action) and hour is nearly a row per entry: "type" (actor type),
"actor" (actor type and id), "action" (actor type, action and its resource type) and "both" (all four).
The timeline and each facet read the smallest grain that has the columns of the filter and of what is
counted, so the default view sums a few thousand rows for 90 days, and a filter on an actor or an action
reads "both" through its covering index.

Readers (``log/timeline.py``) take from here only whole hours of the window, only what the follower
counted (``through_seq``), and only for the filters the counts keep a column for.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import groupby
from threading import Event
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    Table,
    and_,
    delete,
    func,
    literal,
    literal_column,
    select,
    true,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from activitylog import pacing
from activitylog.db.base import Database
from activitylog.db.models import ActivityCount, ActivityCountsCursor, ActivityEntry, ChainHead
from activitylog.db.planning import not_an_index
from activitylog.log.buckets import as_utc, ceil, floor, truncated
from activitylog.log.follow import committed_head
from activitylog.log.query import first_seq_at_or_after

if TYPE_CHECKING:
    from activitylog.log.query import ActivityFilter
    from activitylog.log.timeline import Tally

KEY = ("actor_type", "actor_id", "action", "resource_type")
GRAINS: dict[str, tuple[str, ...]] = {
    "type": ("actor_type",),
    "actor": ("actor_type", "actor_id"),
    "action": ("actor_type", "action", "resource_type"),
    "both": KEY,
}

_counts = cast(Table, ActivityCount.__table__)
_cursors = cast(Table, ActivityCountsCursor.__table__)
_entries = cast(Table, ActivityEntry.__table__)
_heads = cast(Table, ChainHead.__table__)


# ---- the follower ----


def accounts_behind(db: Database) -> list[str]:
    """Accounts whose log has entries the counts have not reached (a cross-account read)."""
    with db.system().reader() as session:
        rows = session.execute(
            select(_heads.c.account_id)
            .outerjoin(_cursors, _cursors.c.account_id == _heads.c.account_id)
            .where(_heads.c.seq > func.coalesce(_cursors.c.through_seq, 0))
        ).all()
    return [r.account_id for r in rows]


def _hours_counted(session: Session, account_id: str, low: int, high: int) -> Select[Any]:
    """The entries of seqs ``(low, high]`` counted per UTC hour (``hour``) and key."""
    e = _entries.c
    hour = truncated(e.occurred_at, "hour", session.get_bind().dialect.name).label("hour")
    dims = [e[k] for k in KEY]
    return (
        select(hour, *dims, func.count())
        .where(e.account_id == account_id, e.seq > low, e.seq <= high)
        .group_by(hour, *dims)
    )


def _grouped_hours(session: Session, account_id: str, low: int, high: int) -> list[Any]:
    return list(session.execute(_hours_counted(session, account_id, low, high)).all())


def derived_rows(hours: list[Any]) -> list[dict[str, Any]]:
    """The rows of every grain and unit that counted hours (``_grouped_hours``) add up to."""
    added: Counter[tuple[str, str, datetime, tuple[str, ...]]] = Counter()
    for start, *dims, n in hours:
        hour = as_utc(start)
        values = dict(zip(KEY, dims, strict=True))
        for grain, columns in GRAINS.items():
            key = tuple(values[k] if k in columns else "" for k in KEY)
            added[(grain, "hour", hour, key)] += n
            added[(grain, "day", hour.replace(hour=0), key)] += n
    return [
        {"grain": grain, "unit": unit, "start": start, **dict(zip(KEY, key, strict=True)), "entries": n}
        for (grain, unit, start, key), n in added.items()
    ]


def _upsert(session: Session, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    insert = sqlite.insert(_counts) if dialect == "sqlite" else postgresql.insert(_counts)
    statement = insert.on_conflict_do_update(
        index_elements=[c.name for c in _counts.primary_key.columns],
        set_={"entries": _counts.c.entries + insert.excluded.entries},
    )
    session.execute(statement, rows)


def _locked_cursor(session: Session, account_id: str) -> int | None:
    """How far the counts reached (None: never counted, or lost), locked until the transaction ends: the
    follower and a purge's pieces take turns."""
    through = session.execute(
        select(_cursors.c.through_seq).where(_cursors.c.account_id == account_id).with_for_update()
    ).scalar_one_or_none()
    return None if through is None else int(through)


def catch_up_once(db: Database, account_id: str, batch: int = pacing.LARGE_BATCH) -> int:
    """Count up to ``batch`` more entries of the account in one transaction; returns how many seqs the
    cursor moved (0 when caught up)."""
    scoped = db.for_account(account_id)
    with scoped.writer() as session, session.begin():
        through = _locked_cursor(session, account_id)
        if through is None:  # never counted, or the cursor was lost: count from the start
            session.execute(delete(_counts).where(_counts.c.account_id == account_id))
            session.execute(_cursors.insert().values(account_id=account_id, through_seq=0))
            through = 0
        high = min(committed_head(session, account_id), through + batch)
        if high <= through:
            return 0
        rows = [
            {"account_id": account_id, **row}
            for row in derived_rows(_grouped_hours(session, account_id, through, high))
        ]
        _upsert(session, rows)
        moved = session.execute(
            update(_cursors)
            .where(_cursors.c.account_id == account_id, _cursors.c.through_seq == through)
            .values(through_seq=high)
        )
        if cast(Any, moved).rowcount != 1:  # cannot happen under the lock; never count twice
            raise RuntimeError(f"account {account_id}: the counts cursor moved under this follower")
        return high - through


@dataclass(frozen=True)
class Leaving:
    """How many entries a purge piece is about to remove, its counts already taken out (:func:`leaving`)."""

    account_id: str
    total: int

    def gone(self, session: Session, removed: int) -> None:
        """After the piece removed ``removed`` entries, in its transaction. Had the database kept some back
        (a legal hold placed in between, on PostgreSQL), the counts cannot know which: the cursor is
        dropped, so the follower counts the log again."""
        if removed != self.total:
            session.execute(delete(_cursors).where(_cursors.c.account_id == self.account_id))


def leaving(
    session: Session, account_id: str, low: int, high: int, going: list[ColumnElement[bool]]
) -> Leaving:
    """In a purge piece's transaction, before it removes the entries ``low``..``high`` matching ``going``:
    take those the follower counted out of the counts, in SQL. Every hour (day) strictly between the first
    and the last one counted loses all its entries when no hold keeps one back (``occurred_at`` never
    decreases along seq): its rows go by range; the first and last hour and day are subtracted row by row.
    Locks the counts' cursor, so the follower waits for the piece."""
    through = _locked_cursor(session, account_id)
    e = _entries.c
    total = session.execute(
        select(func.count()).where(e.account_id == account_id, e.seq.between(low, high), *going)
    ).scalar_one()
    if through is None or through < low:
        return Leaving(account_id, int(total))
    counted = [e.account_id == account_id, e.seq.between(low, min(high, through))]
    first, last, present, goes = session.execute(
        select(
            func.min(e.occurred_at),
            func.max(e.occurred_at),
            func.count(),
            func.count().filter(and_(true(), *going)),
        ).where(*counted)
    ).one()
    if not goes:
        return Leaving(account_id, int(total))
    whole = present == goes
    dialect = session.get_bind().dialect.name
    top = min(high, through)
    units = {
        unit: (floor(as_utc(first), unit), floor(as_utc(last), unit), step)
        for unit, step in (("hour", timedelta(hours=1)), ("day", timedelta(days=1)))
    }
    edges = _edge_ranges(session, account_id, low, top, units) if whole else {}
    for unit, (first_start, last_start, step) in units.items():
        ranges = edges.get(unit, [(low, top)])
        source = union_all(
            *(
                select(e.occurred_at, *(e[k] for k in KEY)).where(
                    e.account_id == account_id, e.seq.between(lo, hi), *going
                )
                for lo, hi in ranges
            )
        ).subquery()
        span = [_counts.c.account_id == account_id, _counts.c.unit == unit]
        start = _stored_start(source.c.occurred_at, unit, dialect)
        for grain, columns in GRAINS.items():
            rows = [*span, _counts.c.grain == grain]
            if whole and last_start - first_start > step:
                inner = [_counts.c.start > first_start, _counts.c.start < last_start]
                session.execute(delete(_counts).where(*rows, *inner))
            taken = (
                select(
                    start.label("start"),
                    *(source.c[k] if k in columns else literal("").label(k) for k in KEY),
                    func.count().label("n"),
                )
                .group_by(start, *(source.c[k] for k in columns))
                .subquery()
            )
            session.execute(
                update(_counts)
                .where(*rows, _counts.c.start == taken.c.start, *(_counts.c[k] == taken.c[k] for k in KEY))
                .values(entries=_counts.c.entries - taken.c.n)
            )
            at_edges = [_counts.c.start >= first_start, _counts.c.start <= last_start]
            session.execute(delete(_counts).where(*rows, *at_edges, _counts.c.entries <= 0))
    return Leaving(account_id, int(total))


def _edge_ranges(
    session: Session,
    account_id: str,
    low: int,
    high: int,
    units: dict[str, tuple[datetime, datetime, timedelta]],
) -> dict[str, list[tuple[int, int]]]:
    """Per unit, the seqs of a wholly purged piece ``low``..``high`` in its first and its last hour (day):
    the only ones subtracted row by row, the hours between going whole. ``occurred_at`` never decreases
    along seq, so each is a seq range, bounded by the first seq of the second and of the last unit (two
    index probes); reading them alone, a piece visits ~1/4 of the rows it read when it filtered every
    entry of the piece by time, once per grain and unit."""
    bounds = [
        first_seq_at_or_after(account_id, at, high + 1)
        for first_start, last_start, step in units.values()
        for at in (first_start + step, last_start)
    ]
    found = session.execute(select(*bounds)).one()
    ranges = {}
    for i, unit in enumerate(units):
        second, last = int(found[2 * i]), int(found[2 * i + 1])
        ranges[unit] = [(low, high)] if second >= last else [(low, second - 1), (max(last, low), high)]
    return ranges


def _stored_start(column: Any, unit: str, dialect: str) -> ColumnElement[Any]:
    """The start of an instant's hour or day exactly as ``activity_counts.start`` stores it, so the two
    compare in SQL (on SQLite: SQLAlchemy's text form, microseconds included)."""
    if dialect == "sqlite":
        return truncated(column, unit, dialect).concat(literal_column("'.000000'"))
    return func.date_trunc(literal_column(f"'{unit}'"), column, literal_column("'UTC'"))


def catch_up(db: Database, account_id: str, batch: int | None = None, stop: Event | None = None) -> int:
    """Count the account's log up to its head, or until ``stop`` is set (a worker shutting down): a batch per
    transaction, sized as ``pacing.for_engine`` sizes them: on PostgreSQL a large batch upserts each
    hour's rows once where small batches would upsert them again and again (0.1 s batches rebuilt 2M
    entries in 358 s, 20,000-entry ones in 154 s). ``batch``: a fixed size."""
    pacer = pacing.for_database(db, batch)
    total = 0
    while stop is None or not stop.is_set():
        began = time.perf_counter()
        moved = catch_up_once(db, account_id, pacer.size)
        if not moved:
            break
        pacer.took(moved, time.perf_counter() - began)
        total += moved
    return total


def rebuild(db: Database, account_id: str) -> int:
    """Drop the account's counts and count its whole log again."""
    with db.for_account(account_id).writer() as session, session.begin():
        session.execute(delete(_counts).where(_counts.c.account_id == account_id))
        session.execute(delete(_cursors).where(_cursors.c.account_id == account_id))
    return catch_up(db, account_id)


# ---- reading ----


@dataclass(frozen=True)
class Plan:
    covered: tuple[datetime, datetime] | None
    """The whole hours of the window the counts answer; None: count the log for the whole window."""
    through_seq: int = 0
    """The counts hold the entries up to this seq; the log is counted past it."""

    @property
    def log_edges(self) -> list[datetime]:
        return list(self.covered) if self.covered else []


def answerable(f: ActivityFilter) -> bool:
    """Whether every filter of ``f`` is a column of the counts (or the time window)."""
    return not (f.on_behalf_of or f.resource_id or f.ip_ranges or f.q)


def plan(reads: Connection, account_id: str, f: ActivityFilter, since: datetime, until: datetime) -> Plan:
    low, high = ceil(since, "hour"), floor(until, "hour")
    if low >= high or not answerable(f):
        return Plan(None)
    through = reads.execute(
        select(_cursors.c.through_seq).where(_cursors.c.account_id == account_id)
    ).scalar_one_or_none()
    if through is None:
        return Plan(None)
    return Plan((low, high), int(through))


def add_counted(
    reads: Connection, account_id: str, f: ActivityFilter, plan: Plan, unit: str, tally: Tally
) -> None:
    """Adds the counts of the plan's whole hours that match ``f``: day rows for whole days when the buckets
    are days or weeks, hour rows for the rest; each of the three counts from the smallest grain that has
    the filter's columns and its own."""
    assert plan.covered is not None
    low, high = plan.covered
    c = _counts.c
    days = (ceil(low, "day"), floor(high, "day")) if unit != "hour" else (high, high)
    if days[0] >= days[1]:
        days = (high, high)
    # each span its own range of the primary key (an OR of them had SQLite read every row of the grain)
    spans = [("hour", low, days[0]), ("day", days[0], days[1]), ("hour", days[1], high)]
    spans = [(u, a, b) for u, a, b in spans if a < b]
    by_actor, by_action = bool(f.actor), bool(f.actions or f.resource_type)
    filters = (
        ("actor_id", f.actor),
        ("actor_type", f.actor_type),
        ("action", f.actions),
        ("resource_type", f.resource_type),
    )

    def rows(grain: str, *columns: Any) -> Iterator[Any]:
        # SQLite would read a GROUP BY column's index in order, every row of the grain (1M "both" hour rows
        # at 2M entries: 260 ms), rather than the range the filter and the window allow (3 ms)
        grouping = [not_an_index(col) for col in columns]
        for span_unit, span_low, span_high in spans:
            where = [c.account_id == account_id, c.grain == grain, c.unit == span_unit]
            where += [c.start >= span_low, c.start < span_high]
            where += [c[name].in_(values) for name, values in filters if values]
            yield from reads.execute(select(*columns, func.sum(c.entries)).where(*where).group_by(*grouping))

    timeline = (
        "both" if by_actor and by_action else "actor" if by_actor else "action" if by_action else "type"
    )
    for start, actor_type, n in rows(timeline, c.start, c.actor_type):  # bucketed here: no SQL per row
        tally.buckets[(floor(as_utc(start), unit), actor_type)] += int(n)
    for actor_id, n in rows("both" if by_action else "actor", c.actor_id):
        tally.facets["actor_id"][actor_id] += int(n)
    for action, resource_type, n in rows("both" if by_actor else "action", c.action, c.resource_type):
        tally.facets["action"][action] += int(n)
        tally.facets["resource_type"][resource_type] += int(n)


# ---- verify ----


def mismatch(session: Session, account_id: str) -> tuple[int, str] | None:
    """Where the counts disagree with the entries they say they counted: the first seq of the first hour
    that differs, and why; None when they agree (or are not built, and so are not read).

    Compared a UTC day at a time, both sides read in time order: holding every hour of a long history at
    once took a web process's verify of 50,000 entries 60 MB higher than the walk itself needs."""
    through = session.execute(
        select(_cursors.c.through_seq).where(_cursors.c.account_id == account_id)
    ).scalar_one_or_none()
    if through is None:
        return None
    expected, stored = _expected_days(session, account_id, int(through)), _stored_days(session, account_id)
    want, have = next(expected, None), next(stored, None)
    while want is not None or have is not None:
        day = min(side[0] for side in (want, have) if side is not None)
        wanted: Counter[tuple[Any, ...]] = Counter()
        kept: Counter[tuple[Any, ...]] = Counter()
        if want is not None and want[0] == day:
            wanted, want = want[1], next(expected, None)
        if have is not None and have[0] == day:
            kept, have = have[1], next(stored, None)
        differing = [k for k in wanted.keys() | kept.keys() if wanted[k] != kept[k]]
        if differing:
            return _first_miscounted(session, account_id, min(differing, key=lambda k: k[2]))
    return None


_DayCounts = tuple[datetime, Counter[tuple[Any, ...]]]


def _expected_days(session: Session, account_id: str, through: int) -> Iterator[_DayCounts]:
    """What the counts of each UTC day (its hours and the day itself) must hold, day by day."""
    hours = session.execute(
        _hours_counted(session, account_id, 0, through).order_by("hour"),
        execution_options={"yield_per": 2000},
    )
    for day, rows in groupby(hours, key=lambda row: as_utc(row[0]).replace(hour=0)):
        counted: Counter[tuple[Any, ...]] = Counter()
        for want in derived_rows(list(rows)):
            counted[(want["grain"], want["unit"], want["start"], *(want[k] for k in KEY))] += want["entries"]
        yield day, counted


def _stored_days(session: Session, account_id: str) -> Iterator[_DayCounts]:
    """What the counts hold, day by day."""
    c = _counts.c
    rows = session.execute(
        select(c.grain, c.unit, c.start, *(c[k] for k in KEY), c.entries)
        .where(c.account_id == account_id)
        .order_by(c.start),
        execution_options={"yield_per": 2000},
    )
    for day, same_day in groupby(rows, key=lambda row: as_utc(row.start).replace(hour=0)):
        held: Counter[tuple[Any, ...]] = Counter()
        for row in same_day:
            held[(row.grain, row.unit, as_utc(row.start), *row[3:7])] += int(row.entries)
        yield day, held


def _first_miscounted(session: Session, account_id: str, key: tuple[Any, ...]) -> tuple[int, str]:
    seq = session.execute(select(first_seq_at_or_after(account_id, key[2], 1))).scalar_one()
    unit, start = key[1], key[2].isoformat().replace("+00:00", "Z")
    return int(seq), (
        f"the derived activity counts ({unit} from {start}) do not match the entries: "
        "rebuild them with `activitylog counts --rebuild`"
    )


def lag(reads: Connection, account_id: str) -> int:
    """How many entries the counts have not reached yet (for the page's and the bench's reports)."""
    cursor = reads.execute(
        select(_cursors.c.through_seq).where(_cursors.c.account_id == account_id)
    ).scalar_one_or_none()
    return max(0, committed_head(reads, account_id) - int(cursor or 0))
