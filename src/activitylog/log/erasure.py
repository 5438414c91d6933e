"""Erasing one subscriber's personal values from an account's log, keeping every proof.

Only v2 entries hold personal values (``log.personal``), each committed in the hash as
``SHA-256(salt || value)``. Erasing one deletes the value and its salt and keeps the commitment, so the
entry's hash, the chain, the tree and every checkpoint stay exactly as they were, and what the entry still
shows (actor, action, time, resource type, a pseudonymous resource id) is still proven by them. What derives
from the values is re-derived: the summary, the canonical ``changes`` text, ``csv_escapes``, the
affected-addresses index and SQLite's text-search copy.

The change goes through the database's door (migrations 0014, 0020), ``ERASE_BATCH`` entries at a time: on
PostgreSQL one call of ``activity_erase()`` per batch, a ``SECURITY DEFINER`` function taking the batch as
one array per column, which checks it once (the account, the erasure's seq, every entry v2), records the
erasures and scrubs nothing but the personal values' columns; on SQLite the same statements in the caller's
transaction, each run once for the whole batch (``executemany``), which the triggers let through row by row
only for a v2 entry whose erasure is recorded, and only if every other column stays. Everything runs in the
caller's transaction with the account's chain head locked, so the erasure's ``contact.erase`` entry
(written by the caller) takes the seq the records name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Row, Table, and_, bindparam, or_, select, text, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session

from activitylog.db.models import ActivityEntry, AffectedResource, ErasedEntry, LegalHold
from activitylog.log import personal, search_index
from activitylog.log.actions import summarize
from activitylog.log.chain import CHAINED_FIELDS, canonical_json, format_instant
from activitylog.log.csv_sql import CSV_COLUMNS, csv_escapes

_entries = cast(Table, ActivityEntry.__table__)
_erased = cast(Table, ErasedEntry.__table__)
_affected = cast(Table, AffectedResource.__table__)
_holds = cast(Table, LegalHold.__table__)


@dataclass(frozen=True)
class Scrub:
    """One entry as it will be once erased."""

    seq: int
    occurred_at: datetime
    cells: dict[str, Any]  # resource_id, resource_name, summary, changes, salts, csv_escapes


def _like_anywhere(value: str) -> str:
    """A LIKE pattern matching ``value``'s JSON text anywhere in ``changes``, inside a string too (a typed
    value may hold spaces around it; ``\\`` escapes)."""
    literal = canonical_json(value)[1:-1].replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{literal}%"


def _candidates(session: Session, account_id: str, email: str, contact_ids: set[str]) -> list[Row[Any]]:
    """The account's v2 entries that may hold the address or belong to one of the contacts."""
    e = _entries.c
    anywhere = _like_anywhere(email)
    holds_it = [
        e.resource_id == email,
        e.resource_name == email,
        # A typed value (a segment's condition, a filter) may hold it in capitals; SQLite's LIKE ignores
        # ASCII case already, PostgreSQL's does not.
        e.changes.ilike(anywhere, escape="\\")
        if session.get_bind().dialect.name == "postgresql"
        else e.changes.like(anywhere, escape="\\"),
    ]
    if contact_ids:
        holds_it.append(and_(e.resource_type == "contact", e.resource_id.in_(sorted(contact_ids))))
    statement = (
        select(_entries)
        .where(e.account_id == account_id, e.salts.is_not(None), or_(*holds_it))
        .order_by(e.seq)
    )
    return list(session.execute(statement))


def _fields(row: Row[Any]) -> dict[str, Any]:
    m = row._mapping
    fields = {name: m[name] for name in CHAINED_FIELDS}
    fields["occurred_at"] = format_instant(m["occurred_at"])
    fields["changes"] = json.loads(m["changes"])
    return fields


def _whole(fields: dict[str, Any], email: str, contact_ids: set[str]) -> bool:
    """Whether the entry is about the person (every personal value of it goes), not only naming them."""
    rtype, rid = fields["resource_type"], fields["resource_id"]
    return (rtype == "contact" and rid in contact_ids) or (
        rtype in personal.ADDRESS_ID_TYPES and rid == email
    )


def plan(
    session: Session, account_id: str, email: str, contact_ids: set[str], pseudonym: str
) -> tuple[list[Scrub], set[str]]:
    """What erasing ``email`` (and the contacts that had it) changes in the log, and every contact id the
    log shows having had it (a deleted contact's too)."""
    ids = set(contact_ids)
    rows = _candidates(session, account_id, email, ids)
    found = {
        r.resource_id
        for r in rows
        if r.resource_type == "contact"
        and email in personal.live_values(_fields(r), json.loads(r.salts)).values()
    }
    if found - ids:
        ids |= found
        rows = _candidates(session, account_id, email, ids)
    scrubs = []
    for row in rows:
        fields, salts = _fields(row), json.loads(row.salts)
        live = personal.live_values(fields, salts)
        whole = _whole(fields, email, ids)
        paths = [p for p, v in live.items() if whole or personal.names(v, email)]
        if not paths:
            continue
        fields, salts = personal.erase(fields, salts, paths, pseudonym)
        scrubs.append(Scrub(row.seq, row.occurred_at, _cells(row, fields, salts)))
    return scrubs, ids


def _cells(row: Row[Any], fields: dict[str, Any], salts: dict[str, Any]) -> dict[str, Any]:
    cells = {
        **row._mapping,
        "occurred_at": fields["occurred_at"],
        "resource_id": fields["resource_id"],
        "resource_name": fields["resource_name"],
        "summary": summarize(fields["action"], fields["resource_name"]),
        "changes": canonical_json(fields["changes"]),
        "salts": canonical_json(salts),
    }
    escapes = csv_escapes([cells[name] for name in CSV_COLUMNS])
    kept = ("resource_id", "resource_name", "summary", "changes", "salts")
    return {**{name: cells[name] for name in kept}, "csv_escapes": escapes}


def covering_hold(session: Session, account_id: str, scrubs: list[Scrub]) -> str | None:
    """The id of an active legal hold that covers one of the entries, if any."""
    holds = session.execute(
        select(_holds.c.id, _holds.c.since, _holds.c.until)
        .where(_holds.c.account_id == account_id, _holds.c.released_at.is_(None))
        .order_by(_holds.c.id)
    ).all()
    for hold in holds:
        for scrub in scrubs:
            if (hold.since is None or scrub.occurred_at >= hold.since) and (
                hold.until is None or scrub.occurred_at <= hold.until
            ):
                return str(hold.id)
    return None


ERASE_BATCH = 1000  # entries per call of the PostgreSQL function, and per statement on SQLite
SCRUBBED = ("resource_id", "resource_name", "summary", "changes", "salts", "csv_escapes")  # Scrub.cells

_PG_ERASE = text(
    "SELECT activity_erase(:account, :erase_seq, CAST(:seqs AS bigint[]), CAST(:resource_id AS text[]), "
    "CAST(:resource_name AS text[]), CAST(:summary AS text[]), CAST(:changes AS text[]), "
    "CAST(:salts AS text[]), CAST(:csv_escapes AS bigint[]), CAST(:gone AS text[]))"
)
_SQLITE_RECORD = sqlite.insert(_erased).on_conflict_do_nothing()
_SQLITE_UPDATE = (
    update(_entries)
    .where(_entries.c.account_id == bindparam("account"), _entries.c.seq == bindparam("at_seq"))
    .values({name: bindparam(name) for name in SCRUBBED})
)
_SQLITE_UNINDEX = _affected.delete().where(
    _affected.c.account_id == bindparam("account"),
    _affected.c.seq.in_(bindparam("seqs", expanding=True)),
    _affected.c.resource_type == "address",
    _affected.c.resource_id == bindparam("email"),
)


def execute(session: Session, account_id: str, email: str, scrubs: list[Scrub], erase_seq: int) -> None:
    """Scrub each planned entry, ``ERASE_BATCH`` at a time. The caller holds the head's lock and records
    ``contact.erase`` at ``erase_seq`` in the same transaction."""
    postgres = session.get_bind().dialect.name == "postgresql"
    conn = session.connection()
    if not postgres:  # what the updates and deletes free is overwritten with zeros, not left in the file
        conn.exec_driver_sql("PRAGMA secure_delete = ON")
    for start in range(0, len(scrubs), ERASE_BATCH):
        batch = scrubs[start : start + ERASE_BATCH]
        if postgres:
            _erase_postgres(conn, account_id, email, batch, erase_seq)
        else:
            _erase_sqlite(conn, account_id, email, batch, erase_seq)
    if not postgres and scrubs:
        _reindex_sqlite(session, account_id, [s.seq for s in scrubs])


def _erase_postgres(
    conn: Connection, account_id: str, email: str, batch: list[Scrub], erase_seq: int
) -> None:
    """One call: the function checks the batch once, records every erasure, then scrubs them all."""
    params: dict[str, Any] = {"account": account_id, "erase_seq": erase_seq, "gone": [email]}
    params["seqs"] = [scrub.seq for scrub in batch]
    for name in SCRUBBED:
        params[name] = [scrub.cells[name] for scrub in batch]
    scrubbed = conn.execute(_PG_ERASE, params).scalar_one()
    if scrubbed != len(batch):
        raise RuntimeError(f"the erasure scrubbed {scrubbed} of {len(batch)} entries")


def _erase_sqlite(conn: Connection, account_id: str, email: str, batch: list[Scrub], erase_seq: int) -> None:
    """Three statements for the batch: the records first (the UPDATE trigger lets a row through only once
    its erasure is recorded, and checks every row), the scrubs, then the erased address's index rows."""
    seqs = [scrub.seq for scrub in batch]
    conn.execute(
        _SQLITE_RECORD, [{"account_id": account_id, "seq": seq, "erase_seq": erase_seq} for seq in seqs]
    )
    conn.execute(_SQLITE_UPDATE, [{"account": account_id, "at_seq": s.seq, **s.cells} for s in batch])
    conn.execute(_SQLITE_UNINDEX, {"account": account_id, "seqs": seqs, "email": email})


def _reindex_sqlite(session: Session, account_id: str, seqs: list[int]) -> None:
    """The personal entries' text-search index keeps its own copy of each one's text: replace the erased
    ones', then merge the index's segments, so the old ones (holding the erased text) are freed, and
    zeroed. The erased entries are all v2, so the shared index never held them (``log.search_index``)."""
    table = search_index.PERSONAL
    for start in range(0, len(seqs), 500):
        params = {"account": account_id, "seqs": seqs[start : start + 500]}
        session.execute(search_index.delete_seqs(table), params)
        session.execute(search_index.copy_entries(table), params)
    session.execute(search_index.optimize(table))
