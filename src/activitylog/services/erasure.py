"""Erasure of a subscriber (GDPR art. 17): their address, names and other fields leave the account's tables
and every entry of the log that holds them, while every proof still holds (``log.erasure``).

One erasure is one transaction and one entry, ``contact.erase``, whose body holds no personal data: the
pseudonym the erased entries now show as the address's id, how many entries were scrubbed, and the ids of the
contacts that went (``con_…``, never the address). Deliveries and delivery events keep their counts under the
pseudonym. An active legal hold covering any of the entries refuses the whole erasure (409, naming the hold).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import select, update

from activitylog.db.base import sqlite_checkpoint
from activitylog.db.models import Contact, Delivery, DeliveryEvent, SavedView, Segment, Stream, Suppression
from activitylog.errors import Conflict, InvalidInput, NotFound
from activitylog.ids import new_id
from activitylog.log import erasure, personal, purge
from activitylog.log.guard import claim_changes
from activitylog.log.record import ResourceRef
from activitylog.services.uow import UnitOfWork

PSEUDONYM_PREFIX = "era"
MAX_ADDRESS = 320


@dataclass(frozen=True)
class Erasure:
    id: str  # the pseudonym
    entries: int
    contacts: int
    suppressed: bool
    entry_seq: int

    def as_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "entries_erased": self.entries,
            "contacts_deleted": self.contacts,
            "suppression_deleted": self.suppressed,
            "entry_seq": self.entry_seq,
        }


def normalized(email: str) -> str:
    """The address as the tables hold it (lists and suppressions keep it stripped and lower-cased)."""
    address = email.strip().lower()
    if not address or len(address) > MAX_ADDRESS or "@" not in address or any(c.isspace() for c in address):
        raise InvalidInput("email", "must be an email address")
    return address


def erase_subscriber(uow: UnitOfWork, email: str) -> Erasure:
    address = normalized(email)
    pseudonym = new_id(PSEUDONYM_PREFIX)
    with uow:
        session, account_id = uow.session, uow.account_id
        erase_seq = purge.lock_head(session, account_id)  # the erasure's entry takes the next seq
        contacts = list(
            session.scalars(
                select(Contact)
                .where(Contact.account_id == account_id, Contact.email == address)
                .order_by(Contact.id)
                .with_for_update()
            )
        )
        suppression = session.get(Suppression, (account_id, address), with_for_update=True)
        scrubs, contact_ids = erasure.plan(session, account_id, address, {c.id for c in contacts}, pseudonym)
        deliveries = _count(uow, Delivery, address) + _count(uow, DeliveryEvent, address)
        typed = _naming(uow, address)
        if not (contacts or suppression or scrubs or deliveries or typed):
            raise NotFound("no contact, suppression, delivery or entry of this account holds that address")
        hold = erasure.covering_hold(session, account_id, scrubs)
        if hold is not None:
            raise Conflict(f"legal hold {hold} covers entries holding this address: release it first")
        erasure.execute(session, account_id, address, scrubs, erase_seq)
        for contact in contacts:
            uow.delete(contact)
        if suppression is not None:
            uow.delete(suppression)
        for row in typed:
            _renamed(row, address, pseudonym)
        for model in (Delivery, DeliveryEvent):  # bookkeeping rows: counts stay, under the pseudonym
            session.execute(
                update(model.__table__)  # type: ignore[arg-type]
                .where(model.account_id == account_id, model.email == address)
                .values(email=pseudonym)
            )
        # The deleted rows' diffs hold the very data being erased: this entry covers them by id alone.
        for change in claim_changes(session):
            if getattr(change.obj, "account_id", None) != account_id:
                raise PermissionError("an erasure changed another account's row")
        changes: dict[str, Any] = {
            "entries_erased": {"from": None, "to": len(scrubs)},
            "suppression_deleted": {"from": None, "to": suppression is not None},
        }
        if contact_ids:
            changes["contact_ids"] = {"from": sorted(contact_ids), "to": None}
        for rtype in sorted({row.__audit_type__ for row in typed}):  # each still there, the address gone
            ids = sorted(row.id for row in typed if row.__audit_type__ == rtype)
            changes[f"{rtype}_ids"] = {"from": ids, "to": ids}
        entry = uow.record("contact.erase", ResourceRef("contact", pseudonym), changes)
        assert entry is not None and entry["seq"] == erase_seq, "the erasure's entry must take the locked seq"
        uow.commit()
    if uow.db.dialect == "sqlite":  # the pages as they were before are still in the write-ahead log
        sqlite_checkpoint(uow.db.engine, "TRUNCATE")
    return Erasure(pseudonym, len(scrubs), len(contacts), suppression is not None, erase_seq)


def _naming(uow: UnitOfWork, address: str) -> list[Segment | SavedView | Stream]:
    """The account's segments whose conditions, and saved views and streams whose filters, hold the address
    where ``log.personal`` counts a typed value as personal (a condition on a contact's address or names; a
    filter's ``q`` or ``resource_id``). Few rows an account: read whole and looked at here, locked."""
    rows: list[Segment | SavedView | Stream] = [*_locked(uow, Segment), *_locked(uow, SavedView)]
    rows += _locked(uow, Stream)
    return [row for row in rows if _typed_values(row, address)]


Typed = TypeVar("Typed", Segment, SavedView, Stream)


def _locked(uow: UnitOfWork, model: type[Typed]) -> list[Typed]:
    statement = select(model).where(model.account_id == uow.account_id).order_by(model.id)
    return list(uow.session.scalars(statement.with_for_update()))


def _typed_values(row: Segment | SavedView | Stream, address: str) -> list[str]:
    """Where in the row a typed value names the address: condition indexes, or filter keys."""
    if isinstance(row, Segment):
        return [
            str(i)
            for i, condition in enumerate(row.conditions or [])
            if condition.get("field") in personal.CONDITION_FIELDS
            and personal.names(condition.get("value"), address)
        ]
    return [key for key in personal.FILTER_KEYS if personal.names((row.filter or {}).get(key), address)]


def _renamed(row: Segment | SavedView | Stream, address: str, pseudonym: str) -> None:
    """The row with each typed value naming the address replaced by the pseudonym: the segment then matches
    no one, the view and the stream find nothing (widening them to everyone would be worse)."""
    places = set(_typed_values(row, address))
    if isinstance(row, Segment):
        row.conditions = [
            {**c, "value": pseudonym} if str(i) in places else c for i, c in enumerate(row.conditions)
        ]
    else:
        row.filter = {k: pseudonym if k in places else v for k, v in row.filter.items()}


def _count(uow: UnitOfWork, model: Any, address: str) -> int:
    found = uow.session.execute(
        select(model.email).where(model.account_id == uow.account_id, model.email == address).limit(1)
    ).first()
    return 1 if found else 0
