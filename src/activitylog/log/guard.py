"""The choke point's enforcement: no audited row changes without an activity entry in the same transaction.

Every flush collects the field-level changes of :class:`~activitylog.db.models.Audited` rows into the
session; ``record()`` claims them for an entry; a commit with unclaimed changes is refused. Statements that
write audited tables outside a flush bypass per-row change tracking, so they are refused outright: ORM bulk
statements, and Core ``INSERT``/``UPDATE``/``DELETE`` on an audited table through a session or its
connection, unless marked :data:`LOGGED_BY_CALLER` (``services.bulk``, whose every write hands its rows to
``record()`` in the same call). So a new code path that forgets to log cannot commit, whoever wrote it.
(SQL text is not read: the product writes no audited table with it.)

The listeners go on each :class:`~activitylog.db.base.Database`'s own session factories and engine,
installed by ``db.base.connect`` (through ``log.record.install``): every session the product opens is
guarded whatever the process imported, and sessions that are not the product's are left alone.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Connection, Engine, event, inspect
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction, sessionmaker
from sqlalchemy.sql.dml import UpdateBase

from activitylog.db.base import Base
from activitylog.db.models import Audited
from activitylog.log.chain import format_instant

REDACTED = "[redacted]"
_UNLOGGED = "activitylog.unlogged"


class UnloggedChangeError(RuntimeError):
    """A transaction tried to commit a change to an audited table without an activity entry."""


@dataclass
class RowChange:
    obj: Audited
    kind: str  # "create" | "update" | "delete"
    fields: dict[str, dict[str, Any]]


def json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_instant(value)
    return value


_COLUMNS: dict[tuple[type[Audited], bool], tuple[str, ...]] = {}


def _audited_columns(model: type[Audited], *, identity: bool = False) -> tuple[str, ...]:
    """The columns a change of a ``model`` row must be logged for: every one but its bookkeeping, and but
    its identity for a create or delete, where the entry's resource, account and time already show it."""
    found = _COLUMNS.get((model, identity))
    if found is None:
        skip = model.__audit_bookkeeping__ | (frozenset() if identity else model.__audit_identity__)
        found = _COLUMNS[(model, identity)] = tuple(
            attr.key for attr in inspect(model).column_attrs if attr.key not in skip
        )
    return found


def _shown(obj: Audited, key: str, value: Any) -> Any:
    if value is not None and key in type(obj).__audit_secret__:
        return REDACTED
    return json_value(value)


def created(obj: Audited) -> RowChange:
    """The change a new row makes: each of its logged fields that has a value, from nothing."""
    fields = {k: {"from": None, "to": _shown(obj, k, getattr(obj, k))} for k in _audited_columns(type(obj))}
    return RowChange(obj, "create", {k: v for k, v in fields.items() if v["to"] is not None})


def deleted(obj: Audited, values: Mapping[str, Any]) -> RowChange:
    """The change deleting the row ``obj`` whose last values were ``values``."""
    fields = {k: {"from": _shown(obj, k, values.get(k)), "to": None} for k in _audited_columns(type(obj))}
    return RowChange(obj, "delete", {k: v for k, v in fields.items() if v["from"] is not None})


def updated(obj: Audited, old: Mapping[str, Any], new: Mapping[str, Any]) -> RowChange | None:
    """The change from ``old`` to ``new`` values of the row ``obj`` (a key missing from ``new`` kept its
    value), or None if nothing logged changed."""
    fields = {}
    for key in _audited_columns(type(obj), identity=True):
        if key not in new or old.get(key) == new[key]:
            continue
        fields[key] = {"from": _shown(obj, key, old.get(key)), "to": _shown(obj, key, new[key])}
    return RowChange(obj, "update", fields) if fields else None


def _row_change(obj: Audited, added: Collection[object], gone: Collection[object]) -> RowChange | None:
    if obj in added:
        return created(obj)
    state = inspect(obj)
    if obj in gone:
        return deleted(obj, state.dict)
    old: dict[str, Any] = {}
    new: dict[str, Any] = {}
    for key in _audited_columns(type(obj), identity=True):
        history = state.attrs[key].history
        if history.has_changes():
            old[key] = history.deleted[0] if history.deleted else None
            new[key] = history.added[0] if history.added else None
    return updated(obj, old, new)


def _collect(session: Session, _ctx: UOWTransaction) -> None:
    pending = session.info.setdefault(_UNLOGGED, [])
    # Each of these builds a new set: taken once per flush, not once per row (a list deleted with its
    # thousands of contacts would cost their square).
    new, dirty, gone = session.new, session.dirty, session.deleted
    for obj in [*new, *dirty, *gone]:
        if isinstance(obj, Audited):
            change = _row_change(obj, new, gone)
            if change is not None:
                pending.append(change)


def _refuse_unlogged(session: Session) -> None:
    session.flush()
    pending: list[RowChange] = session.info.get(_UNLOGGED) or []
    if pending:
        kinds = ", ".join(f"{c.kind} {type(c.obj).__audit_type__} {c.obj.audit_id}" for c in pending[:5])
        raise UnloggedChangeError(f"refusing to commit changes with no activity entry: {kinds}")


def _forget(session: Session, _previous: Any) -> None:
    session.info.pop(_UNLOGGED, None)


def _refuse_bulk(state: ORMExecuteState) -> None:
    if not (state.is_insert or state.is_update or state.is_delete):
        return
    mapper = state.bind_mapper
    if mapper is not None and issubclass(mapper.class_, Audited):
        raise UnloggedChangeError(
            f"bulk {type(state.statement).__name__} on audited {mapper.class_.__name__} bypasses the log"
        )


LOGGED_BY_CALLER = "activitylog_logged_by_caller"
"""The execution option of a Core write to an audited table whose rows its caller hands to ``record()``."""

_FLUSHING = ContextVar("activitylog.flushing", default=False)


class GuardedSession(Session):
    """A session whose flushes the statement guard knows: the writes a flush emits are the rows the guard
    collects, so they are the only unmarked writes to audited tables it lets through."""

    def flush(self, objects: Sequence[Any] | None = None) -> None:
        token = _FLUSHING.set(True)
        try:
            super().flush(objects)
        finally:
            _FLUSHING.reset(token)


@cache
def audited_tables() -> frozenset[str]:
    """The tables of the audited models (read once, at the first write: every model is imported by then)."""
    return frozenset(t.name for m in Base.registry.mappers if issubclass(m.class_, Audited) for t in m.tables)


def _refuse_core_writes(
    _conn: Connection, statement: Any, _multi: Any, _params: Any, options: Mapping[str, Any]
) -> None:
    if not isinstance(statement, UpdateBase) or _FLUSHING.get() or options.get(LOGGED_BY_CALLER):
        return
    target = getattr(statement, "table", None)
    target = getattr(target, "original", target)  # an alias writes its table's rows
    table = getattr(target, "name", None)
    if table in audited_tables():
        raise UnloggedChangeError(
            f"{type(statement).__name__} on audited table {table} outside a flush bypasses the log"
        )


def install(factory: sessionmaker[Session]) -> None:
    """Guard every session ``factory`` makes."""
    event.listen(factory, "after_flush", _collect)
    event.listen(factory, "before_commit", _refuse_unlogged)
    event.listen(factory, "after_soft_rollback", _forget)
    event.listen(factory, "do_orm_execute", _refuse_bulk)


def guard_engine(engine: Engine) -> None:
    """Refuse the Core writes to audited tables that no flush emits and no caller logs, on ``engine``."""
    event.listen(engine, "before_execute", _refuse_core_writes)


def claim_changes(session: Session) -> list[RowChange]:
    """Flush, then take every not-yet-logged row change of this transaction (the caller logs them)."""
    session.flush()
    claimed: list[RowChange] = session.info.pop(_UNLOGGED, [])
    return claimed
