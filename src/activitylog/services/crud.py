"""Create, update and delete of one audited row, each one logged entry: the shape most resources share."""

from __future__ import annotations

from typing import Any, TypeVar, cast

from activitylog.db.models import Audited
from activitylog.ids import new_id
from activitylog.services.uow import UnitOfWork, assign

M = TypeVar("M", bound=Audited)


def create(uow: UnitOfWork, model: type[M], prefix: str, values: dict[str, Any]) -> M:
    obj: M = cast(Any, model)(id=new_id(prefix), account_id=uow.account_id, created_at=uow.clock(), **values)
    uow.add(obj)
    uow.record(f"{model.__audit_type__}.create", obj)
    return obj


def update(uow: UnitOfWork, obj: M, values: dict[str, Any]) -> M:
    assign(obj, values)
    uow.record(f"{type(obj).__audit_type__}.update", obj)
    return obj


def delete(uow: UnitOfWork, obj: Audited, extra: dict[str, Any] | None = None) -> None:
    """Delete ``obj``; ``extra`` adds to the diff (e.g. how many dependent rows went with it)."""
    uow.delete(obj)
    uow.record(f"{type(obj).__audit_type__}.delete", obj, extra=extra)
