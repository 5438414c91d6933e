"""Sending domains: the DNS identities broadcasts are sent from. The DKIM private key is a secret."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from activitylog.db.models import SendingDomain
from activitylog.errors import Conflict
from activitylog.services import crud
from activitylog.services.sealing import SealingError, seal, unseal
from activitylog.services.uow import UnitOfWork

DKIM_KEY = "dkim_private_key"


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
        values = _sealed_key(row, values)
        changes_dns = any(getattr(row, k) != v for k, v in values.items())
        if changes_dns and row.status == "verified":
            values = {**values, "status": "pending", "verified_at": None}
        crud.update(uow, row, values)
        uow.commit()
    return row


def _sealed_key(row: SendingDomain, values: dict[str, Any]) -> dict[str, Any]:
    """The DKIM private key is stored sealed; the same key sent again is no change."""
    key = values.get(DKIM_KEY)
    if key is None:
        return values
    if row.dkim_private_key is not None and _opens_to(row.dkim_private_key, key):
        return {k: v for k, v in values.items() if k != DKIM_KEY}
    return {**values, DKIM_KEY: seal(key, DKIM_KEY)}


def _opens_to(sealed: str, key: str) -> bool:
    try:
        return unseal(sealed, DKIM_KEY) == key
    except SealingError:  # sealed under a data key since replaced: the new value replaces it
        return False


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
