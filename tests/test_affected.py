"""``resource_id`` finds every entry that changed a resource, bulk ones included (issue 14, item 4).

A list's delete takes its contacts with it and an import creates many: one entry each, whose ``changes``
list the affected ids (the contract: "counts plus affected ids"). ``?resource_id=con_…`` must find both, in
seq order, page by page, in lists, exports and the CLI's count, on both engines; the index that answers it is
derived data that ``verify`` re-derives and the migration builds for entries written before it.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import text

from activitylog.db.base import Database
from activitylog.db.migrate import alembic_config, upgrade
from activitylog.log.query import entries_page, export_statement, parse_filter
from activitylog.log.record import RequestContext
from activitylog.log.verify import verify_account
from activitylog.services import lists
from activitylog.services.uow import SYSTEM_CLI, UnitOfWork
from conftest import Tenant, behind_the_apps_back
from factories import cli_uow, new_account


def _uow(db: Database, tenant: Tenant) -> UnitOfWork:
    return UnitOfWork(db, account_id=tenant.account_id, actor=SYSTEM_CLI, context=RequestContext())


def _history(db: Database, tenant: Tenant, **params: str) -> list[dict[str, Any]]:
    entries, _ = entries_page(db, tenant.account_id, parse_filter(**params), cursor=None, limit=1000)
    return entries


def _list_with_contacts(db: Database, tenant: Tenant) -> tuple[str, list[str], str]:
    """A list with two imported contacts and one added alone, then deleted with them."""
    uow = _uow(db, tenant)
    lst = lists.create_list(uow, "Going away")
    imported = lists.import_contacts(
        uow, lst.id, [{"email": "ada@example.com"}, {"email": "bob@example.com"}]
    )
    alone = lists.create_contact(uow, lst.id, {"email": "cy@example.com"})
    lists.delete_list(uow, lst.id)
    return lst.id, imported["contact_ids"], alone.id


def test_a_contact_deleted_with_its_list_is_found_by_its_id(db: Database, tenant: Tenant) -> None:
    list_id, imported, alone = _list_with_contacts(db, tenant)
    (deleted,) = _history(db, tenant, resource_id=list_id, action="list.delete")
    assert sorted(deleted["changes"]["contact_ids"]["from"]) == sorted([*imported, alone])
    assert deleted["changes"]["contact_ids"]["to"] is None
    assert deleted["changes"]["contacts_deleted"] == {"from": 3, "to": None}
    for contact_id in imported:
        found = _history(db, tenant, resource_id=contact_id)
        assert [e["action"] for e in found] == ["list.delete", "list.import"], contact_id
        # the dashboard's History link names the type too: the bulk entries are the contact's history
        typed = _history(db, tenant, resource_type="contact", resource_id=contact_id)
        assert [e["seq"] for e in typed] == [e["seq"] for e in found]
        assert _history(db, tenant, resource_type="list", resource_id=contact_id) == []
    assert [e["action"] for e in _history(db, tenant, resource_id=alone)] == ["list.delete", "contact.create"]
    # with other filters: AND, as always
    assert [e["action"] for e in _history(db, tenant, resource_id=alone, action="delete")] == ["list.delete"]
    assert _history(db, tenant, resource_id=alone, actor="usr_nobody") == []
    assert [e["action"] for e in _history(db, tenant, resource_id=f"{alone},{list_id}")] == [
        "list.delete",
        "contact.create",
        "list.import",
        "list.create",
    ]


def test_pages_of_a_resource_id_are_keyset_pages_of_both_kinds(db: Database, tenant: Tenant) -> None:
    """Bulk entries and the contact's own, interleaved: pages of two walk them all, newest first, once."""
    uow = _uow(db, tenant)
    lst = lists.create_list(uow, "Paged")
    (contact_id,) = lists.import_contacts(uow, lst.id, [{"email": "paged@example.com"}])["contact_ids"]
    for i in range(3):
        lists.update_contact(uow, contact_id, {"first_name": f"Name {i}"})
        lists.create_list(uow, f"Unrelated {i}")
    lists.delete_list(uow, lst.id)
    everything = _history(db, tenant, resource_id=contact_id)
    assert [e["action"] for e in everything] == ["list.delete", *["contact.update"] * 3, "list.import"]
    f = parse_filter(resource_id=contact_id)
    seen: list[int] = []
    cursor = None
    while True:
        page, cursor = entries_page(db, tenant.account_id, f, cursor=cursor, limit=2)
        assert len(page) == 2 or cursor is None
        seen += [e["seq"] for e in page]
        if cursor is None:
            break
    assert seen == [e["seq"] for e in everything]


def test_exports_and_counts_hold_the_bulk_entries(db: Database, tenant: Tenant) -> None:
    _, imported, _ = _list_with_contacts(db, tenant)
    statement = export_statement(tenant.account_id, parse_filter(resource_id=imported[0]), dialect=db.dialect)
    with db.reader() as session:
        rows = session.execute(statement).all()
    assert [r.action for r in rows] == ["list.import", "list.delete"]
    with tenant.key_client() as api:
        response = api.get("/api/v1/activity/export", params={"resource_id": imported[1]})
        assert response.status_code == 200, response.text
        exported = list(csv.DictReader(io.StringIO(response.text)))
        assert [r["action"] for r in exported] == ["list.import", "list.delete"]
        listed = api.get("/api/v1/activity", params={"resource_id": imported[1], "limit": "1"}).json()
        assert [e["action"] for e in listed["data"]] == ["list.delete"] and listed["next_cursor"]


def test_verify_re_derives_the_index_of_changed_resources(db: Database, tenant: Tenant) -> None:
    _, imported, _ = _list_with_contacts(db, tenant)
    with db.reader() as session:
        assert verify_account(session, tenant.account_id).ok
        (seq,) = session.execute(
            text("SELECT seq FROM activity_entries WHERE account_id = :a AND action = 'list.import'"),
            {"a": tenant.account_id},
        ).scalars()
    with behind_the_apps_back(db) as conn:  # the import no longer shows in the first contact's history
        conn.execute(
            text("DELETE FROM activity_affected WHERE account_id = :a AND resource_id = :r AND seq = :s"),
            {"a": tenant.account_id, "r": imported[0], "s": seq},
        )
    with db.reader() as session:
        verdict = verify_account(session, tenant.account_id)
    assert not verdict.ok and verdict.first_bad_seq == seq and "resource_id" in (verdict.reason or "")
    with behind_the_apps_back(db) as conn:  # put back, and one invented instead
        conn.execute(
            text(
                "INSERT INTO activity_affected (account_id, resource_id, seq, resource_type) "
                "VALUES (:a, :r, :s, 'contact'), (:a, 'con_invented', :s, 'contact')"
            ),
            {"a": tenant.account_id, "r": imported[0], "s": seq},
        )
    with db.reader() as session:
        verdict = verify_account(session, tenant.account_id)
    assert not verdict.ok and verdict.first_bad_seq == seq, verdict


def test_the_index_cannot_be_changed_by_the_app(db: Database, tenant: Tenant) -> None:
    _list_with_contacts(db, tenant)
    for statement in ("UPDATE activity_affected SET resource_type = 'x'", "DELETE FROM activity_affected"):
        with db.engine.connect() as conn, pytest.raises(Exception, match="append-only"):
            conn.execute(text(statement))


def test_sqlite_answers_a_resource_id_from_its_indexes(db: Database, tenant: Tenant) -> None:
    """The plan of each statement: index searches, never a scan of the log (PostgreSQL's plans at 10M
    entries are in the commit that added the index; its planner picks by statistics)."""
    if db.dialect != "sqlite":
        pytest.skip("EXPLAIN QUERY PLAN is SQLite's")
    from activitylog.log import query

    f = query.with_seq_window(db.engine.connect(), tenant.account_id, parse_filter(resource_id="con_x"))
    statements = [
        query._affected_page(tenant.account_id, f, None, 50),
        query.page_statement(
            tenant.account_id,
            replace(f, with_affected=False),
            dialect="sqlite",
            before_seq=None,
            limit=50,
        ),
        query.export_statement(tenant.account_id, f, dialect="sqlite"),
    ]
    with db.engine.connect() as conn:
        for statement in statements:
            compiled = statement.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
            plan = [r[3] for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}").all()]
            text_plan = "\n".join(plan)
            assert "SCAN activity_entries" not in text_plan and "SCAN activity_affected" not in text_plan, (
                plan
            )
            assert any("USING" in line for line in plan), plan


def test_the_migration_indexes_the_ids_existing_entries_list(empty_database: Database) -> None:
    """Entries written before 0010 whose changes list ids (imports) are indexed by it; the index then
    verifies like one the recorder wrote."""
    from alembic import command

    db = empty_database
    upgrade(db)
    account_id = new_account(db, "Old", email="old@example.com").account.id
    uow = cli_uow(db, account_id)
    lst = lists.create_list(uow, "Imported long ago")
    ids = lists.import_contacts(uow, lst.id, [{"email": f"p{i}@example.com"} for i in range(3)])[
        "contact_ids"
    ]
    config = alembic_config(db)
    with db.engine.connect() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0009")
        conn.commit()
    upgrade(db)
    with db.engine.connect() as conn:
        held = conn.execute(text("SELECT resource_id FROM activity_affected ORDER BY resource_id")).scalars()
        assert list(held) == sorted(ids)
    for contact_id in ids:
        entries, _ = entries_page(db, account_id, parse_filter(resource_id=contact_id), cursor=None, limit=10)
        assert [e["action"] for e in entries] == ["list.import"]
    with db.for_account(account_id).reader() as session:
        assert verify_account(session, account_id).ok
    assert json.loads(json.dumps(ids))  # ids are plain strings
