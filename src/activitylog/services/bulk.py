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
from typing import Any, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy import Table

from activitylog.db.models import Audited
from activitylog.errors import NotFound
from activitylog.log import guard
from activitylog.log.record import Resource
from activitylog.services.uow import UnitOfWork

M = TypeVar("M", bound=Audited)


def _table(model: type[Audited]) -> Table:
    return cast(Table, cast(Any, model).__table__)


def _with_defaults(obj: Audited) -> dict[str, Any]:
    """Every column's value, with the column's Python default where ``obj`` has none: what an ORM flush
    would insert (and what the guard would see after it)."""
    values = {}
    for column in _table(type(obj)).columns:
        value = getattr(obj, column.key)
        default = column.default
        if value is None and default is not None and getattr(default, "is_scalar", False):
            value = cast(Any, default).arg
        elif value is None and default is not None and getattr(default, "is_callable", False):
            value = cast(Any, default).arg(None)
        if value is not None:
            setattr(obj, column.key, value)
        values[column.key] = value
    return values


def create(
    uow: UnitOfWork,
    objs: Sequence[Audited],
    action: str | None = None,
    resource: Resource | None = None,
    changes: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """Insert ``objs`` (new rows of one table) and log them in one entry: ``action`` on ``resource``
    (by default ``<type>.create`` on the one row)."""
    model = type(objs[0])
    rows = [_with_defaults(obj) for obj in objs]
    uow.session.connection().execute(sa.insert(_table(model)), rows)
    target = resource if resource is not None else objs[0]
    return uow.record(
        action or f"{model.__audit_type__}.create",
        target,
        changes,
        rows=[guard.created(obj) for obj in objs],
    )


def _where(uow: UnitOfWork, model: type[Audited], key: dict[str, Any]) -> Any:
    table = _table(model)
    return sa.and_(table.c.account_id == uow.account_id, *(table.c[k] == v for k, v in key.items()))


def get(uow: UnitOfWork, model: type[M], key: dict[str, Any]) -> tuple[M, dict[str, Any]]:
    """The row of this account with ``key`` (its primary key but the account), read with Core: a detached
    object and its values; 404 if there is none."""
    statement = sa.select(_table(model)).where(_where(uow, model, key))
    row = uow.session.connection().execute(statement).mappings().one_or_none()
    if row is None:
        raise NotFound(f"{model.__audit_type__} {', '.join(map(str, key.values()))} not found")
    values = dict(row)
    return cast(Any, model)(**values), values


def update(
    uow: UnitOfWork, model: type[M], key: dict[str, Any], values: dict[str, Any], action: str | None = None
) -> dict[str, Any] | None:
    """Set ``values`` on the row with ``key`` and log the fields that really changed (no entry if none
    did)."""
    obj, old = get(uow, model, key)
    uow.session.connection().execute(sa.update(_table(model)).where(_where(uow, model, key)).values(values))
    change = guard.updated(obj, old, values)
    for name, value in values.items():
        setattr(obj, name, value)
    if change is None:
        return None
    return uow.record(action or f"{model.__audit_type__}.update", obj, rows=[change])


def delete(
    uow: UnitOfWork, model: type[M], key: dict[str, Any], action: str | None = None
) -> dict[str, Any] | None:
    """Delete the row with ``key`` and log it with its last values."""
    obj, old = get(uow, model, key)
    uow.session.connection().execute(sa.delete(_table(model)).where(_where(uow, model, key)))
    return uow.record(action or f"{model.__audit_type__}.delete", obj, rows=[guard.deleted(obj, old)])
