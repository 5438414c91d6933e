"""Mailing lists and their contacts, including bulk import (one entry for the whole import)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from activitylog.db.models import Broadcast, Contact, MailingList, Segment
from activitylog.errors import Conflict
from activitylog.ids import new_id
from activitylog.services import broadcasts, crud
from activitylog.services.uow import UnitOfWork


def create_list(uow: UnitOfWork, name: str) -> MailingList:
    with uow:
        lst = crud.create(uow, MailingList, "lst", {"name": name})
        uow.commit()
    return lst


def update_list(uow: UnitOfWork, list_id: str, values: dict[str, Any]) -> MailingList:
    with uow:
        lst = crud.update(uow, uow.get(MailingList, list_id, what="list"), values)
        uow.commit()
    return lst


def delete_list(uow: UnitOfWork, list_id: str) -> None:
    """Refused while segments or broadcasts use the list (not archived ones: they released it); its contacts
    go with it, counted in the entry."""
    with uow:
        lst = uow.get(MailingList, list_id, what="list")
        used = uow.session.execute(
            select(func.count()).where(Segment.account_id == uow.account_id, Segment.list_id == lst.id)
        ).scalar_one()
        if used:
            raise Conflict(f"list {lst.id} is used by {used} segments: delete them first")
        held = broadcasts.holding(uow, Broadcast.list_id, lst.id, "list")
        if held is not None:
            raise held
        contacts = uow.session.scalars(
            select(Contact).where(Contact.account_id == uow.account_id, Contact.list_id == lst.id)
        ).all()
        for contact in contacts:
            uow.delete(contact)
        crud.delete(uow, lst, {"contacts_deleted": {"from": len(contacts), "to": None}})
        uow.commit()


def _contact_exists(uow: UnitOfWork, list_id: str, email: str) -> bool:
    return (
        uow.session.execute(
            select(Contact.id).where(
                Contact.account_id == uow.account_id, Contact.list_id == list_id, Contact.email == email
            )
        ).first()
        is not None
    )


def create_contact(uow: UnitOfWork, list_id: str, values: dict[str, Any]) -> Contact:
    with uow:
        uow.get(MailingList, list_id, what="list")
        values = {**values, "email": values["email"].strip().lower()}
        if _contact_exists(uow, list_id, values["email"]):
            raise Conflict(f"{values['email']} is already on list {list_id}")
        contact = crud.create(uow, Contact, "con", {**values, "list_id": list_id, "status": "subscribed"})
        uow.commit()
    return contact


def update_contact(uow: UnitOfWork, contact_id: str, values: dict[str, Any]) -> Contact:
    with uow:
        contact = uow.get(Contact, contact_id, what="contact")
        if "email" in values:
            values = {**values, "email": values["email"].strip().lower()}
            if values["email"] != contact.email and _contact_exists(uow, contact.list_id, values["email"]):
                raise Conflict(f"{values['email']} is already on list {contact.list_id}")
        crud.update(uow, contact, values)
        uow.commit()
    return contact


def delete_contact(uow: UnitOfWork, contact_id: str) -> None:
    with uow:
        crud.delete(uow, uow.get(Contact, contact_id, what="contact"))
        uow.commit()


def import_contacts(uow: UnitOfWork, list_id: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Add every new address; addresses already on the list are skipped. One entry for the whole import."""
    with uow:
        lst = uow.get(MailingList, list_id, what="list")
        existing = set(
            uow.session.scalars(
                select(Contact.email).where(Contact.account_id == uow.account_id, Contact.list_id == list_id)
            )
        )
        created: list[str] = []
        skipped = 0
        for row in rows:
            email = row["email"].strip().lower()
            if email in existing:
                skipped += 1
                continue
            existing.add(email)
            contact = Contact(
                id=new_id("con"),
                account_id=uow.account_id,
                list_id=list_id,
                email=email,
                first_name=row.get("first_name"),
                last_name=row.get("last_name"),
                status="subscribed",
            )
            uow.add(contact)
            created.append(contact.id)
        result = {"imported": len(created), "skipped": skipped, "contact_ids": created}
        if created:
            uow.record(
                "list.import",
                lst,
                {
                    "imported": {"from": None, "to": len(created)},
                    "skipped": {"from": None, "to": skipped},
                    "contact_ids": {"from": None, "to": created},
                },
            )
        uow.commit()
    return result
