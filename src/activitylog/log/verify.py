"""Re-compute an account's chain and Merkle tree from the stored entries, check them against the signer's
memory (which lives outside the database), and name the first entry that does not hold.

What it re-derives and compares: each entry's hash and its link to the one before; the text a reader sees
that the hash does not cover (``summary``, the canonical ``changes`` text, ``ip_key``, ``csv_escapes``, the
resources each entry changed besides its own); every stored subtree hash and the head's tree edge. The
anchor is the last checkpoint the signer signed: the tree's root at that size must be the signed one, so a
log rebuilt from scratch by someone holding only the database fails here, even with every hash recomputed.

Purged entries (``log.purge``) are walked through their tombstones: a tombstone's prev_hash must link to the
entry (or tombstone) before it and its hash is the leaf the stored tree and the signed checkpoints hold, so
the chain and the tree are checked across every gap; the verdict names the purged ranges and their policy.

Entries in canonical form v2 (``salts`` set) are hashed with their personal values committed; an erased
value is checked through the commitment its salts keep (``verify_export.committed``).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, date, datetime
from itertools import count
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from activitylog.db.models import ActivityEntry, AffectedResource, ChainHead, PurgedEntry, TreeNodes
from activitylog.log import counts, purge, search_index, tree
from activitylog.log.actions import summarize
from activitylog.log.affected import affected
from activitylog.log.chain import CHAINED_FIELDS, GENESIS, canonical_json, entry_hash, format_instant
from activitylog.log.csv_sql import CSV_COLUMNS, GUARD, QUOTE, csv_escapes
from activitylog.log.record import ip_key
from activitylog.log.tree_store import TreeDamaged, TreeReader
from activitylog.log.verify_export import TRIGGERS, Checkpoint, inclusion_root, leaf_hash


@dataclass(frozen=True)
class Verdict:
    ok: bool
    checked: int
    head_seq: int | None = None
    head_hash: str | None = None
    first_bad_seq: int | None = None
    reason: str | None = None
    purged: tuple[purge.PurgedRange, ...] = ()
    """The purged seqs the walk crossed through their tombstones, per run and policy."""

    def as_api(self) -> dict[str, Any]:
        if self.ok:
            head = {"seq": self.head_seq, "hash": self.head_hash} if self.head_seq else None
            return {"ok": True, "checked": self.checked, "head": head, **purge.summary(list(self.purged))}
        return {"ok": False, "first_bad_seq": self.first_bad_seq, "reason": self.reason}


def _broken(at: int, reason: str) -> Verdict:
    """Entries before ``at`` hold; ``at`` does not."""
    return Verdict(False, at - 1, first_bad_seq=at, reason=reason)


def _csv_escapes_of(entry: Any, fields: dict[str, Any]) -> int:
    cells = {**entry, "occurred_at": fields["occurred_at"]}
    return csv_escapes([cells[name] for name in CSV_COLUMNS])


# ---- the rows of a walk: plain driver tuples, read by position ----
# Cells that never need escaping once an entry's other checks held: seq is the expected int, occurred_at
# the contract's timestamp text, hash a sha256 hex digest, and prev_hash the previous entry's hash (so
# only the first entry of a walk has its prev_hash cell checked, by ``_csv_escapes_of``). The other cells of
# the CSV row: most repeat from entry to entry in three groups (who acted, from where, on what), each
# memoised as one key; the rest (the changes, the request id, the salts) are checked cell by cell.
_WHO = ("account_id", "actor_type", "actor_id", "actor_name", "on_behalf_of")
_WHERE = ("ip", "user_agent", "ip_key")
_WHAT = ("action", "resource_type", "resource_id", "resource_name", "summary")
_COLUMNS = (
    *("seq", "prev_hash", "hash", "changes", "occurred_at", "salts", "csv_escapes", "request_id"),
    *_WHO,
    *_WHERE,
    *_WHAT,
)
_AT = {name: i for i, name in enumerate(_COLUMNS)}
_SEQ, _PREV, _HASH, _CHANGES, _OCCURRED, _SALTS, _ESCAPES, _REQUEST = range(8)
_WHO_AT = slice(_AT[_WHO[0]], _AT[_WHO[-1]] + 1)
_WHERE_AT = slice(_AT[_WHERE[0]], _AT[_WHERE[-1]] + 1)
_WHAT_AT = slice(_AT[_WHAT[0]], _AT[_WHAT[-1]] + 1)
_SHIFT = {name: 2 * i for i, name in enumerate(CSV_COLUMNS)}
_MEMO_SIZE = 4_096
"""Groups of cells each memo keeps before it starts afresh: the keys hold the rows' own strings, so at 50,000
a web process verifying 50k entries peaked ~24 MB higher, and walked no faster."""


def _bits(value: Any, name: str) -> int:
    """``csv_escapes`` of one cell, in its place in the row."""
    return csv_escapes([value]) << _SHIFT[name]


def _group_bits(names: tuple[str, ...], values: tuple[Any, ...]) -> int:
    return sum(_bits(v, n) for n, v in zip(names, values, strict=True) if n in _SHIFT)


class _Derived:
    """``csv_escapes``, ``summary`` and ``ip_key`` recomputed with the product's own functions, once per
    distinct group of cells in a walk: an account's actors, addresses and resources repeat, and what each
    needs depends on its cells alone. Bounded memos, so a walk stays in constant memory."""

    def __init__(self) -> None:
        self.who: dict[tuple[Any, ...], int] = {}
        self.where: dict[tuple[Any, ...], tuple[int, bool]] = {}
        self.what: dict[tuple[Any, ...], tuple[int, bool]] = {}

    def summary_holds(self, row: tuple[Any, ...]) -> bool:
        key = row[_WHAT_AT]
        found = self.what.get(key)
        if found is None:
            action, _type, _id, name, summary = key
            found = _group_bits(_WHAT, key), summary == summarize(action, name)
            self.what[_room(self.what, key)] = found
        return found[1]

    def ip_key_holds(self, row: tuple[Any, ...]) -> bool:
        key = row[_WHERE_AT]
        found = self.where.get(key)
        if found is None:
            ip, _agent, kept = key
            found = _group_bits(_WHERE, key), kept == ip_key(ip)
            self.where[_room(self.where, key)] = found
        return found[1]

    def csv_escapes(self, row: tuple[Any, ...]) -> int:
        """After ``summary_holds`` and ``ip_key_holds`` of the same row (whose memos it reads)."""
        key = row[_WHO_AT]
        who = self.who.get(key)
        if who is None:
            who = self.who[_room(self.who, key)] = _group_bits(_WHO, key)
        changes, request_id, salts = row[_CHANGES], row[_REQUEST], row[_SALTS]
        return (
            who
            | self.where[row[_WHERE_AT]][0]
            | self.what[row[_WHAT_AT]][0]
            | (_CHANGES_BITS(changes) if changes.__class__ is str else _bits(changes, "changes"))
            | (_REQUEST_BITS(request_id) if request_id.__class__ is str else _bits(request_id, "request_id"))
            | (0 if salts is None else _bits(salts, "salts"))
        )


def _room(memo: dict[Any, Any], key: Any) -> Any:
    if len(memo) >= _MEMO_SIZE:
        memo.clear()
    return key


def _text_bits(name: str) -> Callable[[str], int]:
    """``_bits(text, name)`` for a text, without the general function's set-up: for the cells that differ
    from entry to entry (the changes, the request id), which a memo would only fill."""
    guard, quoted = GUARD << _SHIFT[name], QUOTE << _SHIFT[name]

    def bits(text: str) -> int:
        return (guard if text.startswith(TRIGGERS) else 0) | (
            quoted if '"' in text or "," in text or "\r" in text or "\n" in text else 0
        )

    return bits


_CHANGES_BITS, _REQUEST_BITS = _text_bits("changes"), _text_bits("request_id")

_encode_string = json.encoder.encode_basestring  # what canonical_json encodes a string with
_c_encoder = json.encoder.c_make_encoder  # type: ignore[attr-defined]
# canonical_json's own C encoder (``JSONEncoder.iterencode`` builds this one on every call), built once,
# without the check for circular references: a value json.loads made has none.
_LOADED = (
    _c_encoder(None, json.JSONEncoder().default, _encode_string, None, ":", ",", True, False, True)
    if _c_encoder is not None
    else None
)


def _canonical_loaded(value: Any) -> str:
    """``canonical_json`` of a value ``json.loads`` made."""
    return "".join(_LOADED(value, 0)) if _LOADED is not None else canonical_json(value)


def _value(value: Any) -> str:
    """``canonical_json(value)``, without the encoder's set-up for the common cases."""
    kind = value.__class__
    if kind is str:
        return _encode_string(value)
    if value is None:
        return "null"
    return int.__repr__(value) if kind is int else canonical_json(value)


def _canonical_v1(row: tuple[Any, ...], occurred_at: str, changes_text: str) -> str:
    """``canonical_json`` of a v1 entry's chained fields, from its row (``_COLUMNS``), its ``occurred_at``
    as the contract's text and ``changes_text``, the canonical JSON of its changes: the keys written in
    their sorted order, each value encoded as json encodes it (``_check_canonical_v1`` holds it to that).
    Text, the common case, is encoded inline; NULL and anything else (SQLite's columns take any type) go
    through ``_value``."""
    (seq, _, _, _, _, _, _, request, account, actor_type, actor_id, actor_name, behalf, ip, agent, _,
     action, resource_type, resource_id, resource_name, _) = row  # fmt: skip
    e, v = _encode_string, _value
    return (
        f'{{"account_id":{e(account) if account.__class__ is str else v(account)},'
        f'"action":{e(action) if action.__class__ is str else v(action)},'
        f'"actor_id":{e(actor_id) if actor_id.__class__ is str else v(actor_id)},'
        f'"actor_name":{e(actor_name) if actor_name.__class__ is str else v(actor_name)},'
        f'"actor_type":{e(actor_type) if actor_type.__class__ is str else v(actor_type)},'
        f'"changes":{changes_text},'
        f'"ip":{e(ip) if ip.__class__ is str else v(ip)},'
        f'"occurred_at":{e(occurred_at)},'
        f'"on_behalf_of":{e(behalf) if behalf.__class__ is str else v(behalf)},'
        f'"request_id":{e(request) if request.__class__ is str else v(request)},'
        f'"resource_id":{e(resource_id) if resource_id.__class__ is str else v(resource_id)},'
        f'"resource_name":{e(resource_name) if resource_name.__class__ is str else v(resource_name)},'
        f'"resource_type":{e(resource_type) if resource_type.__class__ is str else v(resource_type)},'
        f'"seq":{int.__repr__(seq) if seq.__class__ is int else v(seq)},'
        f'"user_agent":{e(agent) if agent.__class__ is str else v(agent)}}}'
    )


def _check_canonical_v1() -> None:
    """``_canonical_v1`` reads each field from its own column: checked once, on a row of distinct values."""
    row = tuple(f'{name}\u00e9"' for name in _COLUMNS)
    fields: dict[str, Any] = {name: row[_AT[name]] for name in CHAINED_FIELDS}
    fields.update(occurred_at="at", changes={"k": [1, None]})
    if _canonical_v1(row, "at", '{"k":[1,null]}') != canonical_json(fields):
        raise RuntimeError("_canonical_v1 does not write the chained fields as canonical_json does")


_check_canonical_v1()


def _v2_hash(prev_hash: str, fields: dict[str, Any], salts_text: str) -> str | None:
    """A v2 entry's hash (its personal values committed, ``verify_export.committed``), or None when its
    salts are not canonical JSON or do not fit it."""
    try:
        salts = json.loads(salts_text)
        if canonical_json(salts) != salts_text:
            return None
        return entry_hash(prev_hash, fields, salts)
    except (ValueError, TypeError, AttributeError):
        return None


# SQLite keeps occurred_at as SQLAlchemy's text of the naive UTC instant, 'YYYY-MM-DD HH:MM:SS.ffffff':
# the contract's text but for the "T" and the "Z".
_SQLITE_INSTANT = re.compile(r"(\d{4}-\d\d-\d\d) (?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d\.\d{6}", re.ASCII)


class _Instants:
    """``format_instant`` of each stored ``occurred_at`` as the column's type reads it. Where SQLite's
    text is already the contract's form, it is rewritten in place, with no datetime round trip (which
    would give the same text: the pattern admits only valid times, and the memo of days only valid
    dates from year 1000 on, where strftime's ``%Y`` has four digits); PostgreSQL's aware instants are
    written with ``isoformat`` (the same text from year 1000 on); anything else is read as the column's
    type reads it."""

    def __init__(self, dialect: Any) -> None:
        column_type = ActivityEntry.__table__.c.occurred_at.type.dialect_impl(dialect)
        self.read: Callable[[Any], Any] = column_type.result_processor(dialect, None) or (lambda v: v)
        self.days: dict[str, bool] = {}

    def text(self, value: Any) -> str:
        if value.__class__ is str and (stored := _SQLITE_INSTANT.fullmatch(value)) is not None:
            day = stored[1]
            valid = self.days.get(day)
            if valid is None:
                try:
                    valid = date.fromisoformat(day).year >= 1000
                except ValueError:
                    valid = False
                self.days[_room(self.days, day)] = valid
            if valid:
                return f"{day}T{value[11:]}Z"
        elif value.__class__ is datetime and value.tzinfo is not None:  # PostgreSQL's timestamptz
            instant = value.astimezone(UTC)
            if instant.year >= 1000:  # isoformat is strftime's text then, and four times as fast
                return f"{instant.isoformat(timespec='microseconds')[:26]}Z"
        return format_instant(self.read(value))


_cursor_names = count()


def _driver_rows(
    session: Session, statement: Any, batch: int, cursors: ExitStack
) -> Iterator[tuple[Any, ...]]:
    """The statement's rows as the driver returns them (plain tuples, no SQLAlchemy rows or processing),
    on the session's connection and in its transaction (so under its row-level security); on PostgreSQL
    through a server-side cursor, ``batch`` rows at a time. The cursor closes with ``cursors``."""
    connection = session.connection()
    dialect = connection.dialect
    compiled = statement.compile(dialect=dialect)
    params = compiled.params
    if compiled.positional:
        params = tuple(params[name] for name in compiled.positiontup)
    driver: Any = connection.connection.driver_connection
    if dialect.name == "postgresql":
        cursor = driver.cursor(name=f"verify_{next(_cursor_names)}")
        cursor.itersize = batch
    else:
        cursor = driver.cursor()
        cursor.arraysize = batch
    cursors.callback(cursor.close)
    cursor.execute(compiled.string, params)
    return iter(cursor)


def _search_rows(
    session: Session, account_id: str, after: int, batch: int, cursors: ExitStack
) -> Iterator[tuple[Any, ...]] | None:
    """SQLite's text-search index keeps its own copy of each entry's searchable text, in the table for its
    canonical form (``log.search_index``), which each row names last; PostgreSQL indexes the entries' own
    columns, so there is nothing apart from them to check."""
    if session.get_bind().dialect.name != "sqlite":
        return None
    statement = search_index.COPIES_AFTER.bindparams(a=account_id, after=after)
    return _driver_rows(session, statement, batch, cursors)


@dataclass(frozen=True)
class _Start:
    """Where a walk begins: seq 1 from nothing, or right after a signed checkpoint."""

    seq: int = 1
    prev_hash: str = GENESIS
    frontier: tuple[bytes, ...] = ()


def _start_after(session: Session, account_id: str, anchor: Checkpoint) -> _Start | Verdict:
    """The tree's edge at the signed size, read from the stored tree and checked against the signed root,
    and the last signed entry's hash, checked by its inclusion in that root."""
    reader = TreeReader(session.connection(), account_id)
    size = anchor.size
    try:
        edge = tree.parts(0, size)
        known = reader.subtrees(edge)
        frontier = [known[node] for node in edge]
        path = reader.inclusion(size, size)
    except TreeDamaged as exc:
        return _broken(1, f"the stored tree is damaged: {exc}")
    if tree.fold(frontier) != anchor.root:
        return _broken(1, f"the stored tree of {size} entries is not the one the signer signed")
    last = None
    for table in (ActivityEntry, PurgedEntry):  # a purged entry's hash is its tombstone's
        found = select(table.hash).where(table.account_id == account_id, table.seq == size)
        last = last or session.execute(found).scalar_one_or_none()
    if last is None or inclusion_root(size - 1, size, leaf_hash(last), path) != anchor.root:
        return _broken(size, "the last signed entry is not the one the signer signed")
    return _Start(size + 1, last, tuple(frontier))


WALK_BATCH = 1_000
"""Rows a walk's cursors fetch at a time on PostgreSQL, and how often it reports progress: a fetch of 5,000
entries held ~26 MB more of a web process's memory (the rows and libpq's copy of them) for a walk ~8%
quicker (50k entries, 5.3 against 4.9 s); SQLite's cursors step row by row whatever it is."""


def verify_account(
    session: Session,
    account_id: str,
    anchor: Checkpoint | None = None,
    *,
    incremental: bool = False,
    progress: Callable[[int], None] | None = None,
    batch: int = WALK_BATCH,
) -> Verdict:
    """Walk the chain and the tree from seq 1 (or, ``incremental``, from the anchor on); check the tree
    against ``anchor`` (the signer's last checkpoint, read from outside the database); name the first bad
    seq. An incremental walk trusts the stored tree below the anchor, which is checked against the signed
    root, so it cannot see an old entry's body edited under its kept hash: only a full walk re-hashes it.

    On PostgreSQL a walk that begins the session's transaction reads one snapshot (REPEATABLE READ): under
    READ COMMITTED each statement sees the entries committed by then, so an append during the walk made the
    head read at its end disagree with the entries walked ("entries missing after the last one")."""
    if session.get_bind().dialect.name == "postgresql" and not session.in_transaction():
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    start = _Start()
    if incremental and anchor is not None:
        begun = _start_after(session, account_id, anchor)
        if isinstance(begun, Verdict):
            return begun
        start, anchor = begun, None
    cursors = ExitStack()
    try:
        return _walk(session, account_id, anchor, start, incremental, progress, batch, cursors)
    finally:
        cursors.close()


def _walk(
    session: Session,
    account_id: str,
    anchor: Checkpoint | None,
    start: _Start,
    incremental: bool,
    progress: Callable[[int], None] | None,
    batch: int,
    cursors: ExitStack,
) -> Verdict:
    table = ActivityEntry.__table__
    nodes = TreeNodes.__table__
    expected_seq, prev_hash, frontier = start.seq, start.prev_hash, list(start.frontier)
    stored = _driver_rows(
        session,
        select(nodes.c.seq, nodes.c.hashes)
        .where(nodes.c.account_id == account_id, nodes.c.seq >= start.seq)
        .order_by(nodes.c.seq),
        batch,
        cursors,
    )
    next_stored = next(stored, None)
    tombstones = purge.tombstones(session, account_id, start.seq, batch)
    next_tombstone = next(tombstones, None)

    def cross_purged(before: int) -> Verdict | None:
        """Walk the tombstones of the purged seqs from ``expected_seq`` up to ``before``: each links to the
        one before it, and its hash is the leaf the stored tree (and any signed root) holds."""
        nonlocal expected_seq, prev_hash, next_stored, next_tombstone
        while next_tombstone is not None and next_tombstone.seq < before:
            seq = next_tombstone.seq
            if seq != expected_seq:
                return _broken(expected_seq, "entry missing (a gap in seq, and no tombstone of a purge)")
            if next_tombstone.prev_hash != prev_hash:
                return _broken(seq, "the tombstone of this purged entry does not link to the entry before")
            completed = tree.extend(frontier, seq - 1, next_tombstone.hash)
            if completed or (next_stored is not None and next_stored[0] == seq):
                if next_stored is None or next_stored[0] != seq or bytes(next_stored[1]) != completed:
                    return _broken(seq, "the Merkle tree's stored hashes do not match this purged entry's")
                next_stored = next(stored, None)
            if anchor is not None and seq == anchor.size and tree.fold(frontier) != anchor.root:
                return _broken(1, f"the tree of the first {seq} entries is not the one the signer signed")
            prev_hash = next_tombstone.hash
            expected_seq += 1
            next_tombstone = next(tombstones, None)
        return None

    search = _search_rows(session, account_id, start.seq - 1, batch, cursors)
    next_search = next(search, None) if search is not None else None
    touched = AffectedResource.__table__
    indexed = _driver_rows(
        session,
        select(touched.c.seq, touched.c.resource_type, touched.c.resource_id)
        .where(touched.c.account_id == account_id, touched.c.seq >= start.seq)
        .order_by(touched.c.seq, touched.c.resource_type, touched.c.resource_id),
        batch,
        cursors,
    )
    next_indexed = next(indexed, None)
    rows = _driver_rows(
        session,
        select(*(table.c[name] for name in _COLUMNS))
        .where(table.c.account_id == account_id, table.c.seq >= start.seq)
        .order_by(table.c.seq),
        batch,
        cursors,
    )
    derived = _Derived()
    instant = _Instants(session.get_bind().dialect).text
    loads, sha256 = json.loads, hashlib.sha256
    for row in rows:
        seq = row[_SEQ]

        if next_tombstone is not None and next_tombstone.seq <= seq:
            crossed = cross_purged(seq)
            if crossed is not None:
                return crossed
            if next_tombstone is not None and next_tombstone.seq == seq:
                return _broken(seq, "purged (it has a tombstone), yet still present")
        if seq != expected_seq:
            return _broken(expected_seq, "entry missing (a gap in seq)")
        stored_changes, entry_prev, entry_hash_hex = row[_CHANGES], row[_PREV], row[_HASH]
        occurred_at = instant(row[_OCCURRED])
        try:
            changes = loads(stored_changes)
        except ValueError:
            return _broken(seq, "changes is not valid JSON")
        changes_text = _canonical_loaded(changes)
        fields: dict[str, Any] | None = None
        if row[_SALTS] is None:  # canonical form v1
            canonical = _canonical_v1(row, occurred_at, changes_text)
            self_consistent = sha256(f"{entry_prev}\n{canonical}".encode()).hexdigest() == entry_hash_hex
        else:
            fields = {name: row[_AT[name]] for name in CHAINED_FIELDS}
            fields.update(occurred_at=occurred_at, changes=changes)
            v2 = _v2_hash(entry_prev, fields, row[_SALTS])
            if v2 is None:
                return _broken(
                    seq, "salts are not the canonical JSON of salts and commitments that fit the entry"
                )
            self_consistent = v2 == entry_hash_hex
        if entry_prev != prev_hash:
            if self_consistent and seq > start.seq:  # this entry is intact, so the one before it is not
                return _broken(seq - 1, f"replaced: seq {seq} does not link to it")
            return _broken(seq, "prev_hash does not link to the entry before")
        if not self_consistent:
            return _broken(seq, "hash does not match the entry's content")
        if changes_text != stored_changes:
            return _broken(seq, "changes is not the canonical JSON text of what the hash covers")
        if not derived.summary_holds(row):
            return _broken(seq, "summary does not match the action and resource")
        if not derived.ip_key_holds(row):
            return _broken(seq, "ip_key does not match ip (the IP filter would miss this entry)")
        escapes = row[_ESCAPES]
        if escapes is not None and escapes != (
            derived.csv_escapes(row)
            if seq > start.seq
            else _csv_escapes_of(dict(zip(_COLUMNS, row, strict=True)), {"occurred_at": occurred_at})
        ):
            return _broken(seq, "csv_escapes does not match the entry (its CSV export would be unsafe)")
        completed = tree.extend(frontier, seq - 1, entry_hash_hex)
        if completed or (next_stored is not None and next_stored[0] == seq):
            if next_stored is None or next_stored[0] != seq or bytes(next_stored[1]) != completed:
                return _broken(seq, "the Merkle tree's stored hashes for this entry do not match it")
            next_stored = next(stored, None)
        if search is not None:
            if (
                next_search is None
                or next_search[0] != seq
                or next_search[1] != row[_AT["summary"]]
                or next_search[2] != row[_AT["resource_name"]]
                or next_search[3] != row[_AT["actor_name"]]
                or next_search[4] != search_index.holding(row[_SALTS])
            ):
                return _broken(
                    seq, "the text-search index does not hold this entry as it is (q would miss it)"
                )
            next_search = next(search, None)
        if (next_indexed is not None and next_indexed[0] <= seq) or '_ids"' in stored_changes:
            held: list[tuple[str, str]] = []
            while next_indexed is not None and next_indexed[0] == seq:
                held.append((next_indexed[1], next_indexed[2]))
                next_indexed = next(indexed, None)
            own = (row[_AT["resource_type"]], row[_AT["resource_id"]])
            if held != (affected(changes, own) if '_ids"' in stored_changes else []) or (
                next_indexed is not None and next_indexed[0] < seq
            ):
                return _broken(
                    seq,
                    "the index of the resources this entry changed does not match its changes (resource_id)",
                )
        if anchor is not None and seq == anchor.size and tree.fold(frontier) != anchor.root:
            return _broken(
                1, f"the tree of the first {seq} entries is not the one the signer signed (history rewritten)"
            )
        prev_hash = entry_hash_hex
        expected_seq += 1
        if progress is not None and seq % batch == 0:
            progress(seq)
    crossed = cross_purged(2**63)
    if crossed is not None:
        return crossed
    checked = expected_seq - 1
    if anchor is not None and anchor.size > checked:
        return Verdict(
            False,
            checked,
            first_bad_seq=checked + 1,
            reason=f"entries missing: the signer signed a tree of {anchor.size} entries",
        )
    if next_stored is not None:
        return Verdict(
            False, checked, first_bad_seq=checked + 1, reason="tree hashes for entries that are missing"
        )
    if next_search is not None:
        return Verdict(
            False,
            checked,
            first_bad_seq=checked + 1,
            reason="the text-search index holds entries that are missing",
        )
    if next_indexed is not None:
        return Verdict(
            False,
            checked,
            first_bad_seq=checked + 1,
            reason="the index of changed resources holds entries that are missing",
        )
    head = session.get(ChainHead, account_id)
    if head is not None and checked > head.seq:
        return Verdict(
            False, head.seq, first_bad_seq=head.seq + 1, reason="entry beyond the chain head (forged)"
        )
    if head is not None and (head.seq != checked or head.hash != prev_hash):
        return Verdict(False, checked, first_bad_seq=checked + 1, reason="entries missing after the last one")
    if head is not None and checked and tree.split(head.tree) != frontier:
        return Verdict(
            False, checked, first_bad_seq=checked, reason="the head's tree edge does not match the entries"
        )
    if not incremental and (miscounted := counts.mismatch(session, account_id)) is not None:
        return _broken(*miscounted)  # the timeline's derived counts (log/counts.py)
    if progress is not None:
        progress(checked)
    return Verdict(
        True,
        checked,
        head_seq=checked or None,
        head_hash=prev_hash if checked else None,
        purged=tuple(purge.purged_ranges(session, account_id)),
    )
