"""Sending domains: the DNS identities broadcasts are sent from. The DKIM private key is a secret."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from activitylog.db.models import SendingDomain
from activitylog.errors import Conflict
from activitylog.services import crud
from activitylog.services.uow import UnitOfWork


def _taken(uow: UnitOfWork, domain: str) -> bool:
    return (
        uow.session.execute(
            select(SendingDomain.id).where(
                SendingDomain.account_id == uow.account_id, SendingDomain.domain == domain
            )
        ).first()
        is not None
    )


def create_domain(uow: UnitOfWork, domain: str) -> SendingDomain:
    with uow:
        if _taken(uow, domain):
            raise Conflict(f"{domain} is already a sending domain of this account")
        row = crud.create(uow, SendingDomain, "dom", {"domain": domain, "status": "pending"})
        uow.commit()
    return row


def update_domain(uow: UnitOfWork, domain_id: str, values: dict[str, Any]) -> SendingDomain:
    """Changing DNS-facing settings sends the domain back to ``pending`` until verified again."""
    with uow:
        row = uow.get(SendingDomain, domain_id, what="sending domain")
        changes_dns = any(getattr(row, k) != v for k, v in values.items())
        if changes_dns and row.status == "verified":
            values = {**values, "status": "pending", "verified_at": None}
        crud.update(uow, row, values)
        uow.commit()
    return row


def delete_domain(uow: UnitOfWork, domain_id: str) -> None:
    with uow:
        crud.delete(uow, uow.get(SendingDomain, domain_id, what="sending domain"))
        uow.commit()


def verify_domain(uow: UnitOfWork, domain_id: str) -> SendingDomain:
    with uow:
        row = uow.get(SendingDomain, domain_id, what="sending domain")
        if row.status == "verified":
            raise Conflict(f"{row.domain} is already verified")
        row.status = "verified"
        row.verified_at = uow.clock()
        uow.record("sending_domain.verify", row)
        uow.commit()
    return row
