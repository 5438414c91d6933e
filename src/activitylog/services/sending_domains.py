"""Sending domains: the DNS identities broadcasts are sent from. The DKIM private key is a secret.

"Verify" asks the domain's DNS (``dns_check``): verified when its SPF, DKIM and return-path records all
hold, failed otherwise, with each record's result in the entry. The lookups run between two transactions,
so no lock (on SQLite, the whole database's write lock) is held while the resolver answers.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from activitylog.db.models import SendingDomain
from activitylog.errors import Conflict
from activitylog.services import crud, dkim
from activitylog.services.dns_check import Check, Lookup, as_changes, check_domain, resolver_lookup
from activitylog.services.sealing import SealingError, seal, unseal
from activitylog.services.uow import UnitOfWork

DKIM_KEY = "dkim_private_key"
DNS_FIELDS = ("domain", "dkim_selector", "dkim_private_key", "return_path")
"""What the DNS checks read: a change to one while they run makes their result stale."""


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
        changes_dns = any(getattr(row, k) != v for k, v in values.items() if k in DNS_FIELDS)
        if changes_dns and row.status != "pending":
            values = {**values, "status": "pending", "verified_at": None}
        crud.update(uow, row, values)
        uow.commit()
    return row


def _sealed_key(row: SendingDomain, values: dict[str, Any]) -> dict[str, Any]:
    """The DKIM private key is checked (a key DKIM can sign with, or a 422 naming the field), stored in one
    canonical form and sealed; the same key sent again is no change."""
    key = values.get(DKIM_KEY)
    if key is None:
        return values
    key = dkim.canonical_private_key(key)
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


def verify_domain(uow: UnitOfWork, domain_id: str, lookup: Lookup | None = None) -> SendingDomain:
    """Check the domain's records in DNS and log the outcome, record by record, as ``changes.dns``: the
    domain becomes ``verified`` when every check holds, ``failed`` otherwise. ``lookup`` defaults to the
    configured resolver (``ACTIVITYLOG_DNS_RESOLVER``)."""
    with uow:  # a short read (inside a caller's batch, the batch's own view); no lock is held below
        asked = _dns_facing(uow.get(SendingDomain, domain_id, what="sending domain"))
    domain, selector, sealed_key, return_path = asked
    results = check_domain(
        domain, selector, _opened_key(sealed_key), return_path, lookup or resolver_lookup()
    )
    ok = all(check.ok for check in results.values())
    with uow:
        row = uow.get(SendingDomain, domain_id, what="sending domain")
        if _dns_facing(row) != asked:
            raise Conflict(f"{row.domain} changed while its DNS was being checked; verify again")
        row.status = "verified" if ok else "failed"
        row.verified_at = uow.clock() if ok else None
        uow.record("sending_domain.verify", row, extra={"dns": {"from": None, "to": as_changes(results)}})
        uow.commit()
    return row


def _dns_facing(row: SendingDomain) -> tuple[Any, ...]:
    return tuple(getattr(row, name) for name in DNS_FIELDS)


def _opened_key(sealed: str | None) -> str | None:
    if sealed is None:
        return None
    try:
        return unseal(sealed, DKIM_KEY)
    except SealingError:
        return ""  # unreadable: the DKIM check says so


def last_checks(entry_changes: dict[str, Any]) -> dict[str, Check]:
    """The per-record results a ``sending_domain.verify`` entry holds (none for entries before them)."""
    recorded = (entry_changes.get("dns") or {}).get("to") or {}
    return {
        name: Check(ok=bool(c.get("ok")), name=str(c.get("name", "")), detail=str(c.get("detail", "")))
        for name, c in recorded.items()
        if isinstance(c, dict)
    }
