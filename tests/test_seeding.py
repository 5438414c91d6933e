"""The demo's bulk moves (``services.seeding`` through ``services.bulk``) against the services they stand in
for, and the recorder's batched appends: the same rows, the same entries, a chain that verifies."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.exc import IntegrityError

from activitylog.db.base import Database
from activitylog.db.models import ActivityEntry, Contact, Suppression
from activitylog.errors import NotFound
from activitylog.log.record import batched
from activitylog.log.verify import verify_account
from activitylog.services import lists, seeding, suppressions
from activitylog.services.uow import UnitOfWork
from factories import cli_uow, new_account

PEOPLE: list[dict[str, Any]] = [
    {"email": " Ada.Lovelace@Example.com", "first_name": "Ada", "last_name": "Lovelace"},
    {"email": "grace@example.org", "first_name": "Grace", "last_name": None},
]
CONTACT_ID = re.compile(r"con_[0-9A-Z]{26}")
SHOWN = ("action", "actor_type", "actor_id", "resource_type", "resource_name", "summary", "salts")


def _clock() -> Callable[[], datetime]:
    instants = iter(datetime(2026, 11, 2, 9, tzinfo=UTC) + timedelta(seconds=i) for i in range(10_000))
    return lambda: next(instants)


def _story(db: Database, account_id: str, moves: Any) -> tuple[list[dict[str, Any]], list[tuple[Any, ...]]]:
    """Run the moves in one transaction; return the account's entries (ids made positional) and rows."""
    uow = cli_uow(db, account_id, clock=_clock())
    with uow:
        lst = lists.create_list(uow, "Customers")
        moves(uow, lst.id)
        uow.commit()
    with db.for_account(account_id).reader() as session:
        entries = session.scalars(
            select(ActivityEntry).where(ActivityEntry.account_id == account_id).order_by(ActivityEntry.seq)
        ).all()
        contacts = session.execute(
            select(Contact.id, Contact.email, Contact.first_name, Contact.last_name, Contact.status)
            .where(Contact.account_id == account_id)
            .order_by(Contact.email)
        ).all()
        suppressed = session.execute(
            select(Suppression.email, Suppression.reason).where(Suppression.account_id == account_id)
        ).all()
        ids = {account_id: "ACCOUNT", lst.id: "LIST"}
        for entry in entries:
            for found in CONTACT_ID.findall(entry.resource_id + entry.changes):
                ids.setdefault(found, f"CONTACT{len(ids)}")
        text = {entry.seq: _replace(entry.changes, ids) for entry in entries}

        shown = [
            {
                **{name: _strip_salts(getattr(entry, name)) for name in SHOWN},
                "resource_id": ids.get(entry.resource_id, entry.resource_id),
                "changes": text[entry.seq],
            }
            for entry in entries
            if entry.action not in ("account.create", "user.create")
        ]
        rows = [(ids.get(c.id), c.email, c.first_name, c.last_name, c.status) for c in contacts]
        return shown, [*rows, *(tuple(s) for s in suppressed)]


def _replace(text: str, ids: dict[str, str]) -> str:
    for real, token in ids.items():
        text = text.replace(real, token)
    return text


def _strip_salts(value: Any) -> Any:
    """Salts are random: only which values have one is compared."""
    return sorted(json.loads(value)) if isinstance(value, str) and value.startswith('{"/') else value


def test_the_bulk_moves_make_the_rows_and_entries_the_services_make(db: Database) -> None:
    def by_services(uow: UnitOfWork, list_id: str) -> None:
        for person in PEOPLE:
            lists.create_contact(uow, list_id, person)
        first = uow.session.scalar(select(Contact.id).where(Contact.email == "ada.lovelace@example.com"))
        assert first is not None
        lists.update_contact(uow, first, {"status": "unsubscribed", "last_name": "Lovelace"})
        lists.update_contact(uow, first, {"status": "unsubscribed"})  # no change: no entry
        second = uow.session.scalar(select(Contact.id).where(Contact.email == "grace@example.org"))
        assert second is not None
        lists.delete_contact(uow, second)
        lists.import_contacts(
            uow, list_id, [*PEOPLE[1:], {"email": "ken@example.net"}, {"email": "KEN@example.net"}]
        )
        suppressions.suppress(uow, "Bounced@Example.com", "hard bounce")
        suppressions.suppress(uow, "kept@example.com", None)
        suppressions.unsuppress(uow, "bounced@example.com")

    def by_seeding(uow: UnitOfWork, list_id: str) -> None:
        contacts = [seeding.create_contact(uow, list_id, person) for person in PEOPLE]
        seeding.update_contact(uow, contacts[0].id, {"status": "unsubscribed", "last_name": "Lovelace"})
        seeding.update_contact(uow, contacts[0].id, {"status": "unsubscribed"})
        seeding.delete_contact(uow, contacts[1].id)
        seeding.import_contacts(
            uow, list_id, [*PEOPLE[1:], {"email": "ken@example.net"}, {"email": "KEN@example.net"}]
        )
        seeding.suppress(uow, "Bounced@Example.com", "hard bounce")
        seeding.suppress(uow, "kept@example.com", None)
        seeding.unsuppress(uow, "bounced@example.com")

    expected = _story(db, new_account(db).account.id, by_services)
    seeded = _story(db, new_account(db).account.id, by_seeding)
    assert [e["action"] for e in expected[0]] == [
        "list.create", "contact.create", "contact.create", "contact.update", "contact.delete",
        "list.import", "address.suppress", "address.suppress", "address.unsuppress",
    ]  # fmt: skip
    assert seeded == expected


def _entries(db: Database, account_id: str) -> int:
    with db.for_account(account_id).reader() as session:
        return int(session.scalar(select(func.count()).where(ActivityEntry.account_id == account_id)) or 0)


def _verified(db: Database, account_id: str) -> None:
    with db.for_account(account_id).reader() as session:
        verdict = verify_account(session, account_id)
    assert verdict.ok, verdict


def test_batched_appends_are_written_before_the_session_reads_and_at_commit(db: Database) -> None:
    account_id = new_account(db).account.id
    before = _entries(db, account_id)
    uow = cli_uow(db, account_id, clock=_clock())
    with uow, batched(uow.session):
        lst = lists.create_list(uow, "Leads")
        for person in PEOPLE:
            seeding.create_contact(uow, lst.id, person)
        seen = uow.session.scalar(select(func.count()).where(ActivityEntry.account_id == account_id))
        assert seen == before + 3  # the statement through the session wrote them first
        for i in range(40):  # enough to complete subtrees of several levels in one write
            seeding.suppress(uow, f"s{i}@example.com", None)
        uow.commit()
    assert _entries(db, account_id) == before + 43
    _verified(db, account_id)


def test_a_batch_grows_through_statements_that_leave_the_log_alone(db: Database) -> None:
    """Lookups and writes of other tables (ORM statements, flushes) do not write the batch; SQL text might
    read the log, so it does."""
    account_id = new_account(db).account.id
    before = _entries(db, account_id)
    writes: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        # on PostgreSQL a lone append is one statement, its entry's INSERT a CTE of the head's UPDATE
        if "INSERT INTO activity_entries" in statement:
            writes.append(statement)

    event.listen(db.engine, "before_cursor_execute", seen)
    try:
        uow = cli_uow(db, account_id, clock=_clock())
        with uow, batched(uow.session):
            lst = lists.create_list(uow, "Leads")  # an ORM insert and flush
            for person in PEOPLE:
                seeding.create_contact(uow, lst.id, person)
                uow.session.scalars(select(Contact).where(Contact.list_id == lst.id)).all()
            lists.update_list(uow, lst.id, {"name": "Warm leads"})
            assert writes == []
            assert uow.session.execute(text("SELECT 1")).scalar() == 1
            assert len(writes) == 1
            seeding.suppress(uow, "late@example.com", None)
            uow.commit()
        assert len(writes) == 2
    finally:
        event.remove(db.engine, "before_cursor_execute", seen)
    assert _entries(db, account_id) == before + 5  # the list, two contacts, its rename, the address
    _verified(db, account_id)


def test_a_batch_refuses_savepoints(db: Database) -> None:
    uow = cli_uow(db, new_account(db).account.id)
    with uow, batched(uow.session), pytest.raises(RuntimeError, match="savepoint"):
        uow.session.begin_nested()


def test_a_failed_batch_commits_neither_rows_nor_entries(db: Database) -> None:
    account_id = new_account(db).account.id
    before = _entries(db, account_id)
    uow = cli_uow(db, account_id)
    with pytest.raises(IntegrityError), uow, batched(uow.session):
        seeding.suppress(uow, "twice@example.com", None)
        seeding.suppress(uow, "twice@example.com", None)
    assert _entries(db, account_id) == before
    with db.for_account(account_id).reader() as session:
        assert not session.scalar(select(func.count()).where(Suppression.account_id == account_id))
    suppressions.suppress(cli_uow(db, account_id), "twice@example.com", None)  # the head is where it was
    assert _entries(db, account_id) == before + 1
    _verified(db, account_id)


def test_a_rollback_inside_a_batch_takes_its_unwritten_appends_along(db: Database) -> None:
    account_id = new_account(db).account.id
    before = _entries(db, account_id)
    uow = cli_uow(db, account_id)
    with uow, batched(uow.session):
        seeding.suppress(uow, "gone@example.com", None)
        uow.session.rollback()
        seeding.suppress(uow, "kept@example.com", None)
        uow.commit()
    assert _entries(db, account_id) == before + 1
    _verified(db, account_id)


def test_bulk_updates_and_deletes_of_a_missing_row_are_404s(db: Database) -> None:
    uow = cli_uow(db, new_account(db).account.id)
    with uow:
        with pytest.raises(NotFound):
            seeding.update_contact(uow, "con_missing", {"status": "unsubscribed"})
        with pytest.raises(NotFound):
            seeding.unsuppress(uow, "nobody@example.com")
