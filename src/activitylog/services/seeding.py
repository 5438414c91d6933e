"""The demo's high-volume moves without the ORM: the rows and entries of ``lists`` and ``suppressions``.

Each function makes the same rows and logs the same entry as its namesake in those services (the tests
hold them to it), through ``services.bulk``: one Core statement per row, the entry from the row. They trust
the caller (``activitylog demo``) to know that the list exists and the address is new, so they skip the
services' lookups; anything else is still refused by the database's constraints.
"""

from __future__ import annotations

from typing import Any

from activitylog.db.models import Contact, MailingList, Suppression
from activitylog.ids import new_id
from activitylog.services import bulk
from activitylog.services.uow import UnitOfWork


def _contact(uow: UnitOfWork, list_id: str, values: dict[str, Any], **more: Any) -> Contact:
    email = values["email"].strip().lower()
    return bulk.new(
        Contact,
        id=new_id("con"),
        account_id=uow.account_id,
        list_id=list_id,
        **{**values, "email": email},
        **more,
    )


def create_contact(uow: UnitOfWork, list_id: str, values: dict[str, Any]) -> Contact:
    contact = _contact(uow, list_id, values, status="subscribed", created_at=uow.clock())
    bulk.create(uow, [contact])
    return contact


def update_contact(uow: UnitOfWork, contact_id: str, values: dict[str, Any]) -> None:
    if "email" in values:
        values = {**values, "email": values["email"].strip().lower()}
    bulk.update(uow, Contact, {"id": contact_id}, values)


def delete_contact(uow: UnitOfWork, contact_id: str) -> None:
    bulk.delete(uow, Contact, {"id": contact_id})


def import_contacts(uow: UnitOfWork, list_id: str, rows: list[dict[str, Any]]) -> list[str]:
    """Rows whose address repeats an earlier row are skipped, as the service skips them; the caller knows
    no row is on the list already. Returns the new contacts' ids."""
    lst, _ = bulk.get(uow, MailingList, {"id": list_id})
    seen: set[str] = set()
    contacts = []
    for row in rows:
        email = row["email"].strip().lower()
        if email in seen:
            continue
        seen.add(email)
        fields = {"email": email, "first_name": row.get("first_name"), "last_name": row.get("last_name")}
        contacts.append(_contact(uow, lst.id, fields, status="subscribed"))
    created = [c.id for c in contacts]
    changes = {
        "imported": {"from": None, "to": len(created)},
        "skipped": {"from": None, "to": len(rows) - len(created)},
        "contact_ids": {"from": None, "to": created},
    }
    bulk.create(uow, contacts, "list.import", lst, changes)
    return created


def suppress(uow: UnitOfWork, email: str, reason: str | None) -> Suppression:
    row = bulk.new(Suppression, account_id=uow.account_id, email=email.strip().lower(), reason=reason)
    bulk.create(uow, [row], "address.suppress")
    return row


def unsuppress(uow: UnitOfWork, email: str) -> None:
    bulk.delete(uow, Suppression, {"email": email.strip().lower()}, "address.unsuppress")
