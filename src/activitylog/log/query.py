"""One query for the log, used by the JSON API, the dashboard, exports and the CLI.

Filters combine with AND; a comma inside one means OR. Keyset pagination on ``(account_id, seq)`` makes a
page cost the same at any depth; every filter has an index led by ``account_id`` and ended by ``seq``.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    Integer,
    Row,
    Select,
    and_,
    bindparam,
    column,
    func,
    literal_column,
    or_,
    select,
    table,
    union,
)
from sqlalchemy import text as text_clause
from sqlalchemy.orm import Session

from activitylog import cursors
from activitylog.db.base import Database
from activitylog.db.models import ActivityEntry, AffectedResource
from activitylog.errors import InvalidInput, NotFound
from activitylog.log import search_index
from activitylog.log.entry import entry_to_api
from activitylog.log.filters import ActivityFilter, parse_filter, parse_instant

# Declared in log/filters.py; read from here too.
__all__ = ["ActivityFilter", "parse_filter", "parse_instant"]

Reads = Session | Connection
"""Where a read runs: a session, or the sessionless read of ``Database.read_connection``."""

MAX_LIMIT = 1000
MAX_SEQ = 2**63 - 1  # BIGINT
DEFAULT_LIMIT = 50
_E = ActivityEntry
_A = cast(Any, AffectedResource.__table__).c


def _like_pattern(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


# The expression PostgreSQL's trigram index covers (migration 0003); fields joined by a separator that no
# search text contains, so the index never matches across two fields.
# Constants are written into the SQL, not bound, or the planner could not match the index's expression.
_SEPARATOR = func.chr(literal_column("31"))
_EMPTY: ColumnElement[str] = literal_column("''")
SEARCH_TEXT = func.lower(
    _E.summary
    + _SEPARATOR
    + func.coalesce(_E.resource_name, _EMPTY)
    + _SEPARATOR
    + func.coalesce(_E.actor_name, _EMPTY)
)
MIN_INDEXED_TEXT = 3  # trigrams: shorter text cannot use the index and is matched by a scan
IN_SEQ_ORDER = "in-seq-order"  # a pseudo-dialect: conditions for a scan along seq, no filter index


def _search_index_hint(account_id: str, text: str, pattern: str, dialect: str) -> list[ColumnElement[bool]]:
    """A condition the text index can answer, implied by the exact match that follows it."""
    if len(text) < MIN_INDEXED_TEXT or "\x1f" in text:
        return []
    if dialect == "postgresql":
        return [SEARCH_TEXT.like(pattern, escape="\\")]
    if dialect == "sqlite":
        matches = search_index.MATCHING_SEQS.bindparams(phrase=_fts_phrase(text), search_account=account_id)
        return [_E.seq.in_(matches.columns(literal_column("seq")))]
    return []


def _fts_phrase(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


# SQLite's text index (``log.search_index``), fed by triggers as entries are appended: within one account
# its rowids rise with seq, so reading its matches by rowid, newest first, walks the account's matches in
# seq order and a page stops after limit + 1 of them, however common the word.
def _sqlite_text_page(
    index: str, account_id: str, f: ActivityFilter, before_seq: int | None, limit: int
) -> Select[Any]:
    assert f.q is not None
    search = table(index, column("rowid"), column("account_id"), column("seq"))
    where = conditions(account_id, f, IN_SEQ_ORDER)
    if before_seq is not None:
        where.append(_E.seq < before_seq)
    match = text_clause(f"{index} MATCH :phrase").bindparams(phrase=_fts_phrase(f.q))
    return (
        select(_E.__table__)
        .join_from(search, _E, and_(_E.account_id == search.c.account_id, _E.seq == search.c.seq))
        .where(match, search.c.account_id == account_id, *where)
        .order_by(search.c.rowid.desc())
        .limit(limit + 1)
    )


def conditions(account_id: str, f: ActivityFilter, dialect: str = "") -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = [_E.account_id == account_id]
    if f.actor:
        where.append(_E.actor_id.in_(f.actor))
    if f.actor_type:
        where.append(_E.actor_type.in_(f.actor_type))
    if f.actions:
        where.append(_E.action.in_(f.actions))
    if f.on_behalf_of:
        where.append(_E.on_behalf_of.in_(f.on_behalf_of))
    if f.resource_id and f.with_affected:
        where.append(_E.seq.in_(_resource_seqs(account_id, f)))
    else:
        if f.resource_type:
            where.append(_E.resource_type.in_(f.resource_type))
        if f.resource_id:
            where.append(_E.resource_id.in_(f.resource_id))
    if f.ip_ranges:
        # In a scan along seq the range is a plain row check: an expression no index covers keeps the
        # planner on the seq index.
        key = func.lower(_E.ip_key) if dialect == IN_SEQ_ORDER else _E.ip_key
        where.append(or_(*(and_(key >= lo, key <= hi) for lo, hi in f.ip_ranges)))
    # occurred_at never decreases along seq, so a time window is a seq range: two index probes, and then
    # every other filter keeps its (account_id, <column>, seq) index instead of sorting a window's rows.
    if f.seq_window is not None:
        where.extend((_E.seq >= f.seq_window[0], _E.seq < f.seq_window[1]))
    else:
        if f.since:
            where.append(_E.seq >= _first_seq_at_or_after(account_id, f.since))
        if f.until:
            where.append(_E.seq < _first_seq_at_or_after(account_id, f.until))
    if f.q:
        pattern = _like_pattern(f.q)
        exact = or_(
            func.lower(_E.summary).like(pattern, escape="\\"),
            func.lower(_E.resource_name).like(pattern, escape="\\"),
            func.lower(_E.actor_name).like(pattern, escape="\\"),
        )
        hint = _search_index_hint(account_id, f.q, pattern, dialect)
        where.extend(hint)
        # PostgreSQL's indexed expression is already exact (no search text contains the separator), and
        # repeating it as three LIKEs made the planner multiply their selectivities: it expected ~50 rows
        # where 61,000 matched and scanned the whole table.
        if not (hint and dialect == "postgresql"):
            where.append(exact)
    return where


def _resource_seqs(account_id: str, f: ActivityFilter) -> Any:
    """The seqs of the entries on these resources and of those that list them among the other resources
    they changed (``log.affected``): two index lookups, for statements that read a whole slice."""
    entries = _E.__table__.alias("own")
    own = select(entries.c.seq).where(
        entries.c.account_id == account_id, entries.c.resource_id.in_(f.resource_id)
    )
    if f.resource_type:
        own = own.where(entries.c.resource_type.in_(f.resource_type))
    return union(own, _affected_seqs(account_id, f))


def _affected_seqs(account_id: str, f: ActivityFilter) -> Select[Any]:
    where = [_A.account_id == account_id, _A.resource_id.in_(f.resource_id)]
    if f.resource_type:
        where.append(_A.resource_type.in_(f.resource_type))
    return select(_A.seq).where(*where)


def _affected_page(account_id: str, f: ActivityFilter, before_seq: int | None, limit: int) -> Select[Any]:
    """The newest entries, ``limit + 1`` at most, that list one of ``f``'s resources among the other
    resources they changed and match its other filters: read along the (account, resource id, seq) index,
    each entry then fetched by its key and checked row by row."""
    others = replace(f, resource_type=(), resource_id=(), since=None, until=None, seq_window=None)
    where = conditions(account_id, others, IN_SEQ_ORDER)
    where.append(_A.resource_id.in_(f.resource_id))
    if f.resource_type:
        where.append(_A.resource_type.in_(f.resource_type))
    if f.seq_window is not None:
        where.extend((_A.seq >= f.seq_window[0], _A.seq < f.seq_window[1]))
    if before_seq is not None:
        where.append(_A.seq < before_seq)
    joined = and_(_E.account_id == _A.account_id, _E.seq == _A.seq)
    return (
        select(_E.__table__)
        .join_from(AffectedResource.__table__, _E, joined)
        .where(_A.account_id == account_id, *where)
        .order_by(_A.seq.desc())
        .limit(limit + 1)
    )


def _first_seq_at_or_after(
    account_id: str, instant: datetime, otherwise: Any = MAX_SEQ
) -> ColumnElement[Any]:
    """The seq of the account's first entry at or after ``instant``; ``otherwise`` when there is none."""
    first = (
        select(_E.seq)
        .where(_E.account_id == account_id, _E.occurred_at >= instant)
        .order_by(_E.occurred_at, _E.seq)
        .limit(1)
        .scalar_subquery()
    )
    return func.coalesce(first, otherwise)


first_seq_at_or_after = _first_seq_at_or_after  # public: the timeline turns its bucket edges into seqs


def with_seq_window(session: Reads, account_id: str, f: ActivityFilter) -> ActivityFilter:
    """The time window turned into seq numbers before the page query runs, so PostgreSQL plans with the
    real range: with the bounds as sub-query parameters it guessed a narrow range and sorted every match
    of the other filters (8.4 ms instead of 0.2 ms measured for actor + action + 90 days at 1M entries).
    Bounds come from one statement, so the window is the one that held at that moment."""
    if not (f.since or f.until):
        return f
    after_last = (
        func.coalesce(select(func.max(_E.seq)).where(_E.account_id == account_id).scalar_subquery(), 0) + 1
    )

    def bound(instant: datetime | None, default: Any) -> Any:
        return default if instant is None else _first_seq_at_or_after(account_id, instant, after_last)

    low, high = session.execute(select(bound(f.since, literal_column("0")), bound(f.until, after_last))).one()
    return replace(f, seq_window=(int(low), int(high)))


def encode_cursor(seq: int) -> str:
    return cursors.encode("seq", seq)


def decode_cursor(cursor: str | None) -> int | None:
    if not cursor:
        return None
    seq = cursors.decode("seq", cursor)
    if type(seq) is not int or not 1 <= seq <= MAX_SEQ:
        raise InvalidInput("cursor", cursors.REFUSED)
    return seq


def page_statement(
    account_id: str,
    f: ActivityFilter,
    *,
    dialect: str,
    before_seq: int | None,
    limit: int,
    from_seq: int | None = None,
) -> Select[Any]:
    """Newest first, one more row than asked so the caller knows whether there is a next page.
    ``from_seq`` bounds the scan from below (inclusive)."""
    where = conditions(account_id, f, dialect)
    if before_seq is not None:
        where.append(_E.seq < before_seq)
    if from_seq is not None:
        where.append(_E.seq >= from_seq)
    return select(_E.__table__).where(*where).order_by(_E.seq.desc()).limit(limit + 1)


# The filters whose values never change a page statement's shape, with their columns, in the order
# conditions() applies them.
_VALUE_FILTERS = {
    "actor": _E.actor_id,
    "actor_type": _E.actor_type,
    "on_behalf_of": _E.on_behalf_of,
    "actions": _E.action,
    "resource_type": _E.resource_type,
    "resource_id": _E.resource_id,
}


@functools.cache
def _page_template(filters: tuple[str, ...], window: bool, before: bool) -> Select[Any]:
    """:func:`page_statement` for one combination of value filters, with every value a parameter. Built
    once: building a statement and computing its cache key cost more than SQLite takes to run it."""
    where = [_E.account_id == bindparam("account_id")]
    where += [_VALUE_FILTERS[name].in_(bindparam(name, expanding=True)) for name in filters]
    if window:
        where += [_E.seq >= bindparam("window_low"), _E.seq < bindparam("window_high")]
    if before:
        where.append(_E.seq < bindparam("before_seq"))
    return select(_E.__table__).where(*where).order_by(_E.seq.desc()).limit(bindparam("limit", type_=Integer))


def _page_query(
    account_id: str, f: ActivityFilter, *, dialect: str, before_seq: int | None, limit: int
) -> tuple[Select[Any], dict[str, Any]]:
    """The page statement and its parameters: a prebuilt template for the common filters (the same SQL
    as :func:`page_statement`, by test), a statement built for this request for text and IP searches
    and time bounds not yet looked up as seqs, whose shape depends on their values."""
    if f.q or f.ip_ranges or f.with_affected or (f.seq_window is None and (f.since or f.until)):
        return page_statement(account_id, f, dialect=dialect, before_seq=before_seq, limit=limit), {}
    filters = tuple(name for name in _VALUE_FILTERS if getattr(f, name))
    values: dict[str, Any] = {"account_id": account_id, "limit": limit + 1}
    values.update((name, list(getattr(f, name))) for name in filters)
    if f.seq_window is not None:
        values["window_low"], values["window_high"] = f.seq_window
    if before_seq is not None:
        values["before_seq"] = before_seq
    template = _page_template(filters, f.seq_window is not None, before_seq is not None)
    return template, values


# A text (PostgreSQL) or IP-range (SQLite) search first reads this many of the newest entries in seq
# order, without their index: a common word or a busy network fills its page there (the index would hand
# back every match in the account, to be sorted); a rare one costs this short scan, then the index
# answers for older ones.
RECENT_SCAN_WINDOW = 2048


def page_rows(
    session: Reads, account_id: str, f: ActivityFilter, *, dialect: str, before_seq: int | None, limit: int
) -> list[Row[Any]]:
    """One page (``limit + 1`` rows at most, newest first): :func:`page_statement`, except that text and
    IP-range searches, whose index does not keep seq order, read a recent window in seq order first and
    their index for everything older; on SQLite a text search walks its index newest first instead.
    A time window is looked up as a seq range first. A resource id is looked up twice, as the entries'
    own resource and in the index of the other resources entries changed, and the two pages merged."""
    f = with_seq_window(session, account_id, f)
    if f.with_affected and f.resource_id:
        own = _own_page_rows(
            session, account_id, replace(f, with_affected=False), dialect, before_seq=before_seq, limit=limit
        )
        others = session.execute(_affected_page(account_id, f, before_seq, limit)).all()
        by_seq = {row.seq: row for row in [*own, *others]}
        return [by_seq[seq] for seq in sorted(by_seq, reverse=True)[: limit + 1]]
    return _own_page_rows(session, account_id, f, dialect, before_seq=before_seq, limit=limit)


def _own_page_rows(
    session: Reads, account_id: str, f: ActivityFilter, dialect: str, *, before_seq: int | None, limit: int
) -> list[Row[Any]]:
    indexed_text = bool(f.q) and len(f.q or "") >= MIN_INDEXED_TEXT and "\x1f" not in (f.q or "")
    if dialect == "sqlite" and indexed_text:  # a page of each index, newest first: the newest of both
        rows = [
            row
            for index in search_index.TABLES
            for row in session.execute(_sqlite_text_page(index, account_id, f, before_seq, limit))
        ]
        return sorted(rows, key=lambda row: row.seq, reverse=True)[: limit + 1]
    # PostgreSQL's planner, with statistics, already walks seq backwards for a busy network.
    split = indexed_text or (dialect == "sqlite" and bool(f.ip_ranges))
    if not split:
        statement, values = _page_query(account_id, f, dialect=dialect, before_seq=before_seq, limit=limit)
        return list(session.execute(statement, values).all())
    top = before_seq
    if top is None:
        newest = session.execute(select(func.max(_E.seq)).where(_E.account_id == account_id)).scalar()
        top = (newest or 0) + 1
    floor = top - RECENT_SCAN_WINDOW
    recent = list(
        session.execute(
            page_statement(
                account_id, f, dialect=IN_SEQ_ORDER, before_seq=top, limit=limit, from_seq=max(floor, 1)
            )
        ).all()
    )
    if len(recent) > limit or floor <= 1:
        return recent
    older = page_statement(account_id, f, dialect=dialect, before_seq=floor, limit=limit - len(recent))
    return recent + list(session.execute(older).all())


def entries_page(
    db: Database, account_id: str, f: ActivityFilter, *, cursor: str | None, limit: int
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of entries as the API shows them, newest first, and the cursor of the next page (if any):
    what the JSON API and the dashboard both answer. Core statements only, so no session is needed."""
    with db.read_connection() as connection:
        rows = page_rows(
            connection, account_id, f, dialect=db.dialect, before_seq=decode_cursor(cursor), limit=limit
        )
    data = [entry_to_api(r) for r in rows[:limit]]
    return data, encode_cursor(data[-1]["seq"]) if len(rows) > limit else None


def one_entry(db: Database, account_id: str, seq: int) -> dict[str, Any]:
    """One entry of the account, as the API shows it; NotFound for any other seq."""
    row = None
    if 1 <= seq <= MAX_SEQ:
        with db.reader() as session:
            row = session.execute(
                select(_E.__table__).where(_E.account_id == account_id, _E.seq == seq)
            ).one_or_none()
    if row is None:
        raise NotFound(f"seq {seq}: no such activity entry")
    return entry_to_api(row)


def export_statement(
    account_id: str, f: ActivityFilter, *, dialect: str, after_seq: int = 0, through_seq: int | None = None
) -> Select[Any]:
    """Oldest first, for exports that stream the whole slice (as of ``through_seq``, when given)."""
    where = conditions(account_id, f, dialect)
    if after_seq:
        where.append(_E.seq > after_seq)
    if through_seq is not None:
        where.append(_E.seq <= through_seq)
    return select(_E.__table__).where(*where).order_by(_E.seq.asc())
