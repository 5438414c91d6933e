"""Appending to an account's chain inside the caller's transaction.

Appends are serialised per account, never globally: PostgreSQL locks the account's row in
``activity_heads`` (created on the first append, so there is always a row to lock); SQLite write
transactions already hold the database's write lock from ``BEGIN IMMEDIATE``. The timestamp is taken under
that lock, so ``occurred_at`` never decreases along ``seq``.

An append writes its rows at once (on PostgreSQL in one statement: one round trip), or, inside
:func:`batched`, with the transaction's other appends in one statement per table and the head moved once:
what seeding a long history needs. Either way the rows are written before anything else the transaction
asks of the database, so nothing can read around them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import Connection, Table, Update, bindparam, event, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction, UOWTransaction, sessionmaker
from sqlalchemy.sql import visitors
from sqlalchemy.sql.expression import TableClause, TextClause

from activitylog.db.models import ActivityEntry, AffectedResource, Audited, ChainHead, TreeNodes
from activitylog.log import affected, guard, personal, tree
from activitylog.log.actions import ALL_ACTIONS, EVENT_ACTIONS, summarize
from activitylog.log.chain import GENESIS, canonical_json, entry_hash, format_instant
from activitylog.log.csv_sql import CSV_COLUMNS, csv_escapes
from activitylog.log.guard import REDACTED, RowChange, claim_changes

_entries = cast(Table, ActivityEntry.__table__)
_heads = cast(Table, ChainHead.__table__)
_tree = cast(Table, TreeNodes.__table__)
_affected = cast(Table, AffectedResource.__table__)


@dataclass(frozen=True)
class Actor:
    """Who did it: a signed-in user, an API key, a reputation rule, or the system."""

    type: str  # session | api_key | rule | system
    id: str
    name: str | None = None
    on_behalf_of: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.type}:{self.id}"


@dataclass(frozen=True)
class RequestContext:
    """Where it came from."""

    ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None


@dataclass(frozen=True)
class ResourceRef:
    """A log target that is not (or no longer) a row, e.g. the activity log itself."""

    type: str
    id: str
    name: str | None = None


Resource = Audited | ResourceRef


# An account's requests come from a few addresses, and parsing one costs more than the rest of its key.
@lru_cache(maxsize=4096)
def ip_key(ip: str | None) -> str | None:
    """The address as its family digit plus fixed-width hex, so a CIDR block is one index range scan on
    both engines, and an IPv6 block never matches an IPv4 address (``4c0000201`` vs ``62001…``)."""
    if ip is None:
        return None
    addr = ipaddress.ip_address(ip)
    return f"{addr.version}{addr.packed.hex()}"


def _resource_ref(resource: Resource) -> str:
    rtype, rid, _name = _resource_parts(resource)
    return f"{rtype} {rid}"


def _resource_parts(resource: Resource) -> tuple[str, str, str | None]:
    if isinstance(resource, ResourceRef):
        return resource.type, resource.id, resource.name
    return type(resource).__audit_type__, resource.audit_id, resource.audit_name


# Built once: the append path runs under the account's lock, so statement construction is kept off it.
_SELECT_HEAD = (
    select(_heads.c.seq, _heads.c.hash, _heads.c.occurred_at, _heads.c.tree)
    .where(_heads.c.account_id == bindparam("account"))
    .with_for_update()
)
_CREATE_HEAD = {
    name: dialect.insert(_heads)
    .values(account_id=bindparam("account"), seq=0, hash=GENESIS)
    .on_conflict_do_nothing(index_elements=["account_id"])
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}
_INSERT_ENTRY = insert(_entries)
# Many entries at once on SQLite: with RETURNING, SQLAlchemy sends them as multi-row INSERTs
# ("insertmanyvalues"), not one statement per row, and the search index's FTS5 tables write out their
# pending terms once per statement. On PostgreSQL plain executemany is quicker (psycopg pipelines the
# rows; a multi-row statement is too long for its query cache and is parsed again in Python each time).
_INSERT_ENTRIES = {
    "sqlite": insert(_entries).returning(_entries.c.seq),
    "postgresql": _INSERT_ENTRY,
}
_INSERT_NODES = insert(_tree)
_INSERT_AFFECTED = insert(_affected)
_ADVANCE_HEAD = (
    update(_heads)
    .where(_heads.c.account_id == bindparam("account"))
    .values(
        seq=bindparam("new_seq"),
        hash=bindparam("new_hash"),
        occurred_at=bindparam("new_at"),
        tree=bindparam("new_tree"),
    )
)


@dataclass(frozen=True)
class Head:
    """The account's last seq, hash and instant, and its Merkle tree's right edge."""

    seq: int
    hash: str
    occurred_at: datetime | None
    frontier: list[bytes]


def _lock_head(conn: Connection, account_id: str) -> Head:
    """Lock the account's head row; the first append of an account creates it (racing creators are
    harmless: ON CONFLICT DO NOTHING, then everyone locks the one row)."""
    params = {"account": account_id}
    row = conn.execute(_SELECT_HEAD, params).one_or_none()
    if row is None:
        conn.execute(_CREATE_HEAD[conn.dialect.name], params)
        row = conn.execute(_SELECT_HEAD, params).one()
    return Head(row.seq, row.hash, row.occurred_at, tree.split(row.tree))


_HEADS = "activitylog.heads"


def _head(session: Session, conn: Connection, account_id: str) -> Head:
    """The account's head: locked and read by a transaction's first append, then carried forward by the
    next ones in memory (the lock is held until the transaction ends, so nobody else can move it)."""
    heads: dict[str, Head] = session.info.setdefault(_HEADS, {})
    head = heads.get(account_id)
    if head is None:
        head = heads[account_id] = _lock_head(conn, account_id)
    return head


@dataclass
class _Batch:
    """Appends made inside :func:`batched` and not yet written: rows per table, the last head per account."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    nodes: list[dict[str, Any]] = field(default_factory=list)
    affected: list[dict[str, Any]] = field(default_factory=list)
    heads: dict[str, dict[str, Any]] = field(default_factory=dict)


_BATCH = "activitylog.batch"


_ONE_APPEND: dict[tuple[tuple[str, ...], bool], Update] = {}


def _one_append(columns: tuple[str, ...], with_nodes: bool) -> Update:
    """One append on PostgreSQL as one statement: the entry (and its tree nodes) inserted by data-modifying
    CTEs of the head's update, so a mutation's log costs one round trip, not two or three. Built once per
    shape: every entry has the same columns; every other one completes tree nodes."""
    key = (columns, with_nodes)
    statement = _ONE_APPEND.get(key)
    if statement is None:
        # bound as ``e_<column>``: a column's own name is reserved for the VALUES SQLAlchemy builds itself
        values = {name: bindparam(f"e_{name}", type_=_entries.c[name].type) for name in columns}
        statement = _ADVANCE_HEAD.add_cte(insert(_entries).values(values).cte("appended_entry"))
        if with_nodes:
            nodes: dict[str, Any] = {
                "account_id": bindparam("e_account_id"),
                "seq": bindparam("e_seq"),
                "hashes": bindparam("nodes"),
            }
            statement = statement.add_cte(insert(_tree).values(nodes).cte("appended_nodes"))
        _ONE_APPEND[key] = statement
    return statement


def _write_one(conn: Connection, batch: _Batch) -> None:
    """A single append's rows on PostgreSQL (see :func:`_one_append`)."""
    (row,) = batch.entries
    (head,) = batch.heads.values()
    params = {f"e_{name}": value for name, value in row.items()} | head
    if batch.nodes:
        params["nodes"] = batch.nodes[0]["hashes"]
    conn.execute(_one_append(tuple(row), bool(batch.nodes)), params)
    if batch.affected:
        conn.execute(_INSERT_AFFECTED, batch.affected)


def _write(conn: Connection, batch: _Batch) -> None:
    if len(batch.entries) == 1 and len(batch.heads) == 1 and conn.dialect.name == "postgresql":
        _write_one(conn, batch)
        return
    if len(batch.entries) > 1:
        conn.execute(_INSERT_ENTRIES[conn.dialect.name], batch.entries)
    elif batch.entries:
        conn.execute(_INSERT_ENTRY, batch.entries[0])
    if batch.nodes:
        conn.execute(_INSERT_NODES, batch.nodes)
    if batch.affected:
        conn.execute(_INSERT_AFFECTED, batch.affected)
    for params in batch.heads.values():
        conn.execute(_ADVANCE_HEAD, params)


def _write_batch(session: Session) -> None:
    """Write what the open batch holds (the head last, as an append does)."""
    batch: _Batch | None = session.info.get(_BATCH)
    if batch is not None and (batch.entries or batch.heads):
        _write(session.connection(), batch)
        session.info[_BATCH] = _Batch()


@contextmanager
def batched(session: Session) -> Iterator[None]:
    """Write the appends made in this block together: one statement per table, the head moved once.

    The rows are written when the block ends, and before that whenever the session is about to touch the
    log's tables (an ORM statement or a flush that reads or writes any of them) or commits, so the
    transaction never reads the log without them; statements about other tables (the services' own
    lookups and writes) leave the batch growing. A savepoint inside the block is refused: its rollback
    could not take back appends it never wrote."""
    if _BATCH in session.info:
        raise RuntimeError("batched() blocks do not nest")
    session.info[_BATCH] = _Batch()
    try:
        yield
        _write_batch(session)
    except BaseException:
        # The rows written so far must not commit without their entries: write them, or give up the lot.
        try:
            _write_batch(session)
        except Exception:
            session.rollback()
        raise
    finally:
        session.info.pop(_BATCH, None)


_LOG_TABLES = "activity_"  # every table of the log starts so: entries, heads, tree, search index, counts


def _touches_the_log(statement: object) -> bool:
    """Whether a statement may read or write one of the log's tables. SQL text counts: it cannot be read."""
    for element in visitors.iterate(cast(visitors.ExternallyTraversible, statement)):
        if isinstance(element, TextClause):
            return True
        if isinstance(element, TableClause) and element.name.startswith(_LOG_TABLES):
            return True
    return False


def _write_before_orm(state: ORMExecuteState) -> None:
    if _BATCH in state.session.info and _touches_the_log(state.statement):
        _write_batch(state.session)


def _write_before_flush(session: Session, _flush: UOWTransaction, _instances: object) -> None:
    if _BATCH not in session.info:  # every request's flush passes here: no batch, nothing to look at
        return
    pending = (*session.new, *session.dirty, *session.deleted)
    if any(cast(Table, type(obj).__table__).name.startswith(_LOG_TABLES) for obj in pending):
        _write_batch(session)


def _refuse_savepoint(session: Session, transaction: SessionTransaction) -> None:
    if transaction.nested and _BATCH in session.info:
        raise RuntimeError("no savepoints inside a batched() block")


def _forget_heads(session: Session, transaction: SessionTransaction) -> None:
    """What a transaction read goes with it; a savepoint's end counts too (a rolled-back savepoint takes its
    appends with it), and the next append simply reads the head again. A flush's own inner transaction
    does not count: it ends with every flush, and a failed flush fails the whole transaction anyway.
    A batch's unwritten appends go with their transaction too (a commit has written them)."""
    if transaction.nested or transaction.parent is None:
        session.info.pop(_HEADS, None)
        if _BATCH in session.info:
            session.info[_BATCH] = _Batch()


def install(factory: sessionmaker[Session]) -> None:
    """The log's hooks on a session factory: the guard (no audited change commits without its entry), the
    heads a transaction read forgotten when it ends, and a batch's rows written before anything else."""
    guard.install(factory)
    event.listen(factory, "after_transaction_end", _forget_heads)
    event.listen(factory, "after_transaction_create", _refuse_savepoint)
    event.listen(factory, "do_orm_execute", _write_before_orm)
    event.listen(factory, "before_flush", _write_before_flush)
    event.listen(factory, "before_commit", _write_batch)


def _changes_for(resource: Resource, claimed: list[RowChange]) -> dict[str, Any]:
    merged: dict[str, dict[str, Any]] = {}
    for change in claimed:
        if change.obj is resource:
            for key, diff in change.fields.items():
                if key in merged:
                    merged[key] = {"from": merged[key]["from"], "to": diff["to"]}
                else:
                    merged[key] = dict(diff)
    return {k: v for k, v in merged.items() if v["from"] != v["to"] or v["to"] == REDACTED}


def record(
    session: Session,
    *,
    account_id: str,
    actor: Actor,
    context: RequestContext,
    action: str,
    resource: Resource,
    changes: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    now: datetime | None = None,
    rows: Sequence[RowChange] = (),
) -> dict[str, Any] | None:
    """Write one entry for ``action`` on ``resource`` covering every row change since the last entry.

    ``changes`` defaults to the field diff of ``resource``'s row; ``extra`` adds to it (e.g. the figures a
    rule acted on, or the rows that went with a delete); ``rows`` are changes the caller made with Core
    statements, which the guard cannot see (``services.bulk``). Returns the entry as the API shows it,
    or None when nothing changed (an update to the same values is not a change, so it is not logged).
    """
    if action not in ALL_ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    claimed = [*claim_changes(session), *rows]
    for change in claimed:
        owner = getattr(change.obj, "account_id", None) or change.obj.audit_id
        if owner != account_id:
            raise PermissionError(f"change to another account's {change.obj.__audit_type__} in this entry")
    own = _changes_for(resource, claimed)
    if changes is None:
        changes = own
    elif dropped := sorted(set(own) - set(changes)):
        raise guard.UnloggedChangeError(
            f"{action}: the changes given leave out what changed on {_resource_ref(resource)}: {dropped}"
        )
    if extra:
        changes = {**changes, **extra}
    if not changes and not claimed and action not in EVENT_ACTIONS:
        return None

    resource_type, resource_id, resource_name = _resource_parts(resource)
    others = [(type(c.obj).__audit_type__, c.obj.audit_id, c.kind) for c in claimed if c.obj is not resource]
    changes = affected.cover(changes, others)
    conn = session.connection()  # Core statements: the log's rows are not ORM objects
    head = _head(session, conn, account_id)
    seq, prev_hash = head.seq + 1, head.hash
    now = now or datetime.now(UTC)
    occurred_at = max(now, head.occurred_at) if head.occurred_at else now
    fields: dict[str, Any] = {
        "account_id": account_id,
        "seq": seq,
        "occurred_at": format_instant(occurred_at),
        "actor_type": actor.type,
        "actor_id": actor.id,
        "actor_name": actor.name,
        "on_behalf_of": actor.on_behalf_of,
        "ip": context.ip,
        "user_agent": context.user_agent,
        "action": action,
        "resource_type": resource_type,
        "resource_id": resource_id,
        "resource_name": resource_name,
        "changes": changes,
        "request_id": context.request_id,
    }
    salts = personal.new_salts(fields)  # v2 when the entry holds a subscriber's personal data
    digest = entry_hash(prev_hash, fields, salts)
    summary = summarize(action, resource_name)
    cells = {
        **fields,
        "changes": canonical_json(changes),
        "summary": summary,
        "prev_hash": prev_hash,
        "hash": digest,
        "salts": canonical_json(salts) if salts else None,
    }
    row = {
        **cells,
        "occurred_at": occurred_at,
        "ip_key": ip_key(context.ip),
        "csv_escapes": csv_escapes([cells[name] for name in CSV_COLUMNS]),
    }
    frontier, completed = tree.append(head.frontier, head.seq, digest)
    batch: _Batch | None = session.info.get(_BATCH)
    writes = batch if batch is not None else _Batch()
    writes.entries.append(row)
    if completed:
        writes.nodes.append({"account_id": account_id, "seq": seq, "hashes": completed})
    for t, i in affected.affected(changes, (resource_type, resource_id)):
        writes.affected.append({"account_id": account_id, "resource_id": i, "seq": seq, "resource_type": t})
    writes.heads[account_id] = {
        "account": account_id,
        "new_seq": seq,
        "new_hash": digest,
        "new_at": occurred_at,
        "new_tree": b"".join(frontier),
    }
    if batch is None:
        _write(conn, writes)
    session.info[_HEADS][account_id] = Head(seq, digest, occurred_at, frontier)
    return {**fields, "summary": summary, "prev_hash": prev_hash, "hash": digest, "salts": salts}
