"""The suppression list: addresses that must never be sent to (logged as ``address.suppress``)."""

from __future__ import annotations

from sqlalchemy import select

from activitylog.db.models import Suppression
from activitylog.errors import Conflict, NotFound
from activitylog.services.uow import UnitOfWork


def _find(uow: UnitOfWork, email: str) -> Suppression | None:
    return uow.session.execute(
        select(Suppression)
        .where(Suppression.account_id == uow.account_id, Suppression.email == email)
        .with_for_update()
    ).scalar_one_or_none()


def suppress(uow: UnitOfWork, email: str, reason: str | None) -> Suppression:
    email = email.strip().lower()
    with uow:
        if _find(uow, email) is not None:
            raise Conflict(f"{email} is already suppressed")
        row = Suppression(account_id=uow.account_id, email=email, reason=reason)
        uow.add(row)
        uow.record("address.suppress", row)
        uow.commit()
    return row


def unsuppress(uow: UnitOfWork, email: str) -> None:
    email = email.strip().lower()
    with uow:
        row = _find(uow, email)
        if row is None:
            raise NotFound(f"{email} is not suppressed")
        uow.delete(row)
        uow.record("address.unsuppress", row)
        uow.commit()
