"""Audited rows written with Core statements, each with its entry: for histories seeded in bulk.

The ORM's unit of work costs more than the row it writes, and a seeded history of a million entries cannot
pay that a million times. These functions write rows with one Core statement each and log them in the same
call, handing the recorder the change exactly as the guard would have seen it (``guard.created``,
``updated``, ``deleted``: from the values written, and for updates and deletes from the row as read back
first), so the entry still comes from the row and never from what the caller believes. Inside
``log.record.batched`` the entries are written together.

They do no checks beyond the database's own constraints: the caller knows the list exists and the address
is new. Requests go through the services, which check.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy import Table
from sqlalchemy.sql.dml import ReturningDelete

from activitylog.db.models import Audited
from activitylog.errors import NotFound
from activitylog.log import guard
from activitylog.log.record import Resource
from activitylog.services.uow import UnitOfWork

M = TypeVar("M", bound=Audited)
_LOGGED = {guard.LOGGED_BY_CALLER: True}  # each write below hands its rows to record() in the same call


def _table(model: type[Audited]) -> Table:
    return cast(Table, cast(Any, model).__table__)


@cache
def _keys(table: Table) -> tuple[str, ...]:
    return tuple(column.key for column in table.columns)


@cache
def _defaults(table: Table) -> tuple[tuple[str, Any, bool], ...]:
    """Each column with a Python default: its key, the default, and whether the default is to be called."""
    found = []
    for column in table.columns:
        default = cast(Any, column.default)
        if default is not None and (default.is_scalar or default.is_callable):
            found.append((column.key, default.arg, default.is_callable))
    return tuple(found)


def new(model: type[M], **values: Any) -> M:
    """A ``model`` row holding ``values`` and the columns' Python defaults, as an ORM flush would insert it,
    but a plain instance (no ORM state: it is read, never added to a session, and building it costs a dict,
    not the unit of work's bookkeeping)."""
    table = _table(model)
    row = dict.fromkeys(_keys(table))
    row.update(values)
    for key, default, call in _defaults(table):
        if row[key] is None:
            row[key] = default(None) if call else default
    obj = model.__new__(model)
    obj.__dict__.update(row)
    return obj


def _values(obj: Audited) -> dict[str, Any]:
    return {key: obj.__dict__[key] for key in _keys(_table(type(obj)))}


@cache
def _insert(table: Table) -> sa.Insert:
    return sa.insert(table).execution_options(**_LOGGED)


def create(
    uow: UnitOfWork,
    objs: Sequence[Audited],
    action: str | None = None,
    resource: Resource | None = None,
    changes: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """Insert ``objs`` (new rows of one table, made by :func:`new`) and log them in one entry: ``action`` on
    ``resource`` (by default ``<type>.create`` on the one row)."""
    model = type(objs[0])
    uow.session.connection().execute(_insert(_table(model)), [_values(obj) for obj in objs])
    target = resource if resource is not None else objs[0]
    return uow.record(
        action or f"{model.__audit_type__}.create",
        target,
        changes,
        rows=[guard.created(obj) for obj in objs],
    )


# The key's columns are bound as ``key_<name>``, apart from the values an update sets.
def _where(table: Table, key: tuple[str, ...]) -> Any:
    return sa.and_(
        table.c.account_id == sa.bindparam("key_account_id"),
        *(table.c[k] == sa.bindparam(f"key_{k}") for k in key),
    )


def _params(uow: UnitOfWork, key: dict[str, Any]) -> dict[str, Any]:
    return {"key_account_id": uow.account_id, **{f"key_{k}": v for k, v in key.items()}}


@cache
def _select(table: Table, key: tuple[str, ...]) -> sa.Select[Any]:
    return sa.select(table).where(_where(table, key))


@cache
def _update(table: Table, key: tuple[str, ...]) -> sa.Update:
    return sa.update(table).where(_where(table, key)).execution_options(**_LOGGED)


@cache
def _delete(table: Table, key: tuple[str, ...]) -> ReturningDelete[Any]:
    return sa.delete(table).where(_where(table, key)).returning(*table.columns).execution_options(**_LOGGED)


def _found(model: type[M], key: dict[str, Any], result: sa.CursorResult[Any]) -> tuple[M, dict[str, Any]]:
    row = result.mappings().one_or_none()
    if row is None:
        raise NotFound(f"{model.__audit_type__} {', '.join(map(str, key.values()))} not found")
    values = dict(row)
    return new(model, **values), values


def get(uow: UnitOfWork, model: type[M], key: dict[str, Any]) -> tuple[M, dict[str, Any]]:
    """The row of this account with ``key`` (its primary key but the account), read with Core: a plain
    instance (see :func:`new`) and its values; 404 if there is none."""
    statement = _select(_table(model), tuple(key))
    return _found(model, key, uow.session.connection().execute(statement, _params(uow, key)))


def update(
    uow: UnitOfWork, model: type[M], key: dict[str, Any], values: dict[str, Any], action: str | None = None
) -> dict[str, Any] | None:
    """Set ``values`` on the row with ``key`` and log the fields that really changed (no entry if none
    did)."""
    obj, old = get(uow, model, key)
    uow.session.connection().execute(_update(_table(model), tuple(key)), {**_params(uow, key), **values})
    change = guard.updated(obj, old, values)
    obj.__dict__.update(values)
    if change is None:
        return None
    return uow.record(action or f"{model.__audit_type__}.update", obj, rows=[change])


def delete(
    uow: UnitOfWork, model: type[M], key: dict[str, Any], action: str | None = None
) -> dict[str, Any] | None:
    """Delete the row with ``key`` and log it with its last values (the statement returns them)."""
    result = uow.session.connection().execute(_delete(_table(model), tuple(key)), _params(uow, key))
    obj, old = _found(model, key, result)
    return uow.record(action or f"{model.__audit_type__}.delete", obj, rows=[guard.deleted(obj, old)])
