"""The entry and the change commit together or not at all, and no change commits without an entry."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from sqlalchemy import Table, alias, delete, event, func, insert, select, text, update

from activitylog.db.base import Base, Database
from activitylog.db.models import ActivityEntry, Audited, Broadcast, ChainHead, MailingList
from activitylog.errors import Conflict
from activitylog.log.guard import UnloggedChangeError
from activitylog.log.record import Actor, RequestContext
from activitylog.log.verify import verify_account
from activitylog.services import lists
from activitylog.services.uow import SYSTEM_CLI, UnitOfWork
from conftest import Tenant


def _uow(db: Database, tenant: Tenant) -> UnitOfWork:
    return UnitOfWork(db, account_id=tenant.account_id, actor=SYSTEM_CLI, context=RequestContext())


def _state(db: Database, tenant: Tenant) -> tuple[int, int, int]:
    with db.reader() as s:
        entries = s.scalar(select(func.count()).where(ActivityEntry.account_id == tenant.account_id))
        rows = s.scalar(select(func.count()).where(MailingList.account_id == tenant.account_id))
        head = s.get(ChainHead, tenant.account_id)
        return int(entries or 0), int(rows or 0), head.seq if head else 0


def test_failure_after_the_entry_rolls_back_both(db: Database, tenant: Tenant) -> None:
    before = _state(db, tenant)
    with pytest.raises(RuntimeError, match="boom"), _uow(db, tenant) as uow:
        lst = MailingList(id="lst_doomed", account_id=tenant.account_id, name="Doomed")
        uow.add(lst)
        assert uow.record("list.create", lst) is not None
        raise RuntimeError("boom")
    assert _state(db, tenant) == before
    with db.reader() as s:
        assert s.get(MailingList, "lst_doomed") is None
        assert verify_account(s, tenant.account_id).ok


def test_a_rolled_back_savepoint_takes_its_entries_and_the_chain_goes_on(
    db: Database, tenant: Tenant
) -> None:
    """Appends in one transaction carry the head forward in memory; a savepoint rolled back in between must
    not leave the next entry linked to one that no longer exists."""
    entries, rows, seq = _state(db, tenant)
    with _uow(db, tenant) as uow:
        kept = lists.create_list(uow, "Kept")
        savepoint = uow.session.begin_nested()
        lists.create_list(uow, "Undone")
        savepoint.rollback()
        after = lists.create_list(uow, "After")
        uow.commit()
    assert _state(db, tenant) == (entries + 2, rows + 2, seq + 2)
    with db.reader() as s:
        assert verify_account(s, tenant.account_id).ok
        names = s.scalars(
            select(ActivityEntry.resource_id)
            .where(ActivityEntry.account_id == tenant.account_id, ActivityEntry.seq > seq)
            .order_by(ActivityEntry.seq)
        ).all()
    assert names == [kept.id, after.id]


def test_a_failing_commit_leaves_no_entry(db: Database, tenant: Tenant) -> None:
    """A constraint that fails at commit time (duplicate primary key) takes the entry down with it."""
    existing = lists.create_list(_uow(db, tenant), "Taken")
    before = _state(db, tenant)
    with pytest.raises(Exception), _uow(db, tenant) as uow:
        twin = MailingList(id=existing.id, account_id=tenant.account_id, name="Twin")
        uow.add(twin)
        uow.record("list.create", twin)
        uow.commit()
    assert _state(db, tenant) == before


def test_commit_without_an_entry_is_refused(db: Database, tenant: Tenant) -> None:
    existing = lists.create_list(_uow(db, tenant), "Original")
    before = _state(db, tenant)
    with pytest.raises(UnloggedChangeError), _uow(db, tenant) as uow:
        row = uow.get(MailingList, existing.id)
        row.name = "Sneaky rename"
        uow.commit()
    assert _state(db, tenant) == before
    with db.reader() as s:
        assert s.get(MailingList, existing.id).name == "Original"  # type: ignore[union-attr]


def test_a_plain_session_cannot_commit_audited_changes_either(db: Database, tenant: Tenant) -> None:
    existing = lists.create_list(_uow(db, tenant), "Original")
    with db.writer() as session, pytest.raises(UnloggedChangeError):
        session.get(MailingList, existing.id).name = "Around the unit of work"  # type: ignore[union-attr]
        session.commit()
    with db.reader() as s:
        assert s.get(MailingList, existing.id).name == "Original"  # type: ignore[union-attr]


def test_a_process_that_never_imports_the_log_is_guarded_too(db: Database, tenant: Tenant) -> None:
    """The guard comes with the database's sessions, not with an import of ``log/guard.py`` somewhere: a
    script that opens the database and touches a row, and nothing else, cannot commit it unlogged."""
    script = (
        "import sys\n"
        "from datetime import UTC, datetime\n"
        "from activitylog.db.base import connect\n"
        "from activitylog.db.models import MailingList\n"
        "session = connect(sys.argv[1]).for_account(sys.argv[2]).writer()\n"
        "session.add(MailingList(id='lst_unlogged', account_id=sys.argv[2], name='Unlogged',"
        " created_at=datetime.now(UTC)))\n"
        "session.commit()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, db.url, tenant.account_id],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 1 and "UnloggedChangeError" in done.stderr, done.stderr
    with db.reader() as s:
        assert s.get(MailingList, "lst_unlogged") is None


def test_a_change_after_the_last_entry_is_refused(db: Database, tenant: Tenant) -> None:
    before = _state(db, tenant)
    with pytest.raises(UnloggedChangeError), _uow(db, tenant) as uow:
        first = MailingList(id="lst_logged", account_id=tenant.account_id, name="Logged")
        uow.add(first)
        uow.record("list.create", first)
        uow.add(MailingList(id="lst_unlogged", account_id=tenant.account_id, name="Unlogged"))
        uow.commit()
    assert _state(db, tenant) == before


def test_orm_bulk_statements_on_audited_tables_are_refused(db: Database, tenant: Tenant) -> None:
    with pytest.raises(UnloggedChangeError), _uow(db, tenant) as uow:
        uow.session.execute(
            update(MailingList).where(MailingList.account_id == tenant.account_id).values(name="x")
        )


@pytest.mark.parametrize("through", ["session", "connection"])
def test_core_writes_to_audited_tables_are_refused(db: Database, tenant: Tenant, through: str) -> None:
    """A Core statement writes rows no flush sees, through the session or straight through its connection:
    refused before it runs, unless ``services.bulk`` (which logs its rows in the same call) marks it."""
    lst = lists.create_list(_uow(db, tenant), "Core")
    before = _state(db, tenant)
    table = cast(Table, MailingList.__table__)
    other: Any = alias(table, "other_name")  # the same table by another name
    for statement in (
        update(table).where(table.c.account_id == tenant.account_id).values(name="renamed unlogged"),
        delete(table).where(table.c.id == lst.id),
        insert(table).values(id="lst_core", account_id=tenant.account_id, name="Inserted unlogged"),
        update(other).where(other.c.id == lst.id).values(name="aliased"),
    ):
        with pytest.raises(UnloggedChangeError, match="outside a flush"), _uow(db, tenant) as uow:
            run = uow.session.execute if through == "session" else uow.session.connection().execute
            run(statement)
            uow.commit()
    assert _state(db, tenant) == before
    with db.reader() as s:
        kept = s.get(MailingList, lst.id)
        assert kept is not None and kept.name == "Core"


def test_an_entry_for_another_account_cannot_cover_a_change(db: Database, tenant: Tenant) -> None:
    other = lists.create_list(_uow(db, tenant), "Theirs")
    with (
        pytest.raises(PermissionError),
        UnitOfWork(db, account_id="acc_someone_else", actor=SYSTEM_CLI, context=RequestContext()) as uow,
    ):
        row = uow.session.get(MailingList, other.id)
        assert row is not None
        row.name = "Cross-tenant"
        uow.record("list.update", row)


def test_a_change_that_changes_nothing_is_not_logged(db: Database, tenant: Tenant) -> None:
    existing = lists.create_list(_uow(db, tenant), "Same")
    before = _state(db, tenant)
    lists.update_list(_uow(db, tenant), existing.id, {"name": "Same"})
    assert _state(db, tenant) == before


def test_the_log_is_append_only_in_the_database(db: Database, tenant: Tenant) -> None:
    lists.create_list(_uow(db, tenant), "Anything")
    for statement in (
        "UPDATE activity_entries SET action = 'list.delete' WHERE account_id = :a",
        "DELETE FROM activity_entries WHERE account_id = :a",
    ):
        with db.engine.connect() as conn, pytest.raises(Exception, match="append-only"):
            conn.execute(text(statement), {"a": tenant.account_id})
    with db.reader() as s:
        assert verify_account(s, tenant.account_id).ok


def test_http_conflict_leaves_no_entry_and_no_change(tenant: Tenant) -> None:
    with tenant.key_client() as client:
        assert client.post("/api/v1/sending-domains", json={"domain": "mail.example.com"}).status_code == 201
        head = client.get("/api/v1/activity", params={"limit": 1}).json()["data"][0]["seq"]
        again = client.post("/api/v1/sending-domains", json={"domain": "mail.example.com"})
        assert again.status_code == 409
        assert again.json()["error"]["code"] == "conflict"
        bid = client.post(
            "/api/v1/broadcasts",
            json={
                "name": "B",
                "subject": "S",
                "from_email": "a@example.com",
                "list_id": client.post("/api/v1/lists", json={"name": "L"}).json()["id"],
            },
        ).json()["id"]
        head = client.get("/api/v1/activity", params={"limit": 1}).json()["data"][0]["seq"]
        paused = client.post(f"/api/v1/broadcasts/{bid}/pause")  # a draft cannot be paused
        assert paused.status_code == 409
        assert client.get("/api/v1/activity", params={"limit": 1}).json()["data"][0]["seq"] == head
        assert client.get(f"/api/v1/broadcasts/{bid}").json()["status"] == "draft"
        assert len(client.get("/api/v1/sending-domains").json()["data"]) == 1


def test_service_conflicts_raise_before_any_change(db: Database, tenant: Tenant) -> None:
    lst = lists.create_list(_uow(db, tenant), "L")
    lists.create_contact(_uow(db, tenant), lst.id, {"email": "x@example.com"})
    before = _state(db, tenant)
    with pytest.raises(Conflict):
        lists.create_contact(_uow(db, tenant), lst.id, {"email": "X@example.com"})
    assert _state(db, tenant) == before


def test_only_bookkeeping_may_change_without_an_entry(db: Database, tenant: Tenant) -> None:
    """The fields the guard lets change unlogged are declared, few, and decide nothing: each is a record of
    use. Any other field, the row's identity included, cannot change without an entry."""
    bookkeeping = {
        model.__name__: model.__audit_bookkeeping__
        for model in Base.registry._class_registry.values()
        if isinstance(model, type) and issubclass(model, Audited) and model.__audit_bookkeeping__
    }
    assert bookkeeping == {"User": {"last_login_at"}, "ApiKey": {"last_used_at", "last_used_ip"}}
    lst = lists.create_list(_uow(db, tenant), "Born once")
    with pytest.raises(UnloggedChangeError), _uow(db, tenant) as uow:
        uow.get(MailingList, lst.id).created_at = datetime(2000, 1, 1, tzinfo=UTC)
        uow.commit()
    with pytest.raises(UnloggedChangeError), _uow(db, tenant) as uow:
        broadcast = Broadcast(
            id=f"brd_{lst.id[4:]}",
            account_id=tenant.account_id,
            name="B",
            subject="S",
            from_email="a@example.com",
            list_id=lst.id,
        )
        uow.add(broadcast)
        uow.record("broadcast.create", broadcast)
        broadcast.scheduled_by = "api_key:key_someone"
        uow.commit()


def test_a_batch_by_several_actors_is_one_transaction_with_each_actor_on_its_entries(
    db: Database, tenant: Tenant
) -> None:
    alice = Actor("session", "usr_alice", "alice@example.com")
    key = Actor("api_key", "key_batch", "Batch key")
    outer = _uow(db, tenant)
    before = _state(db, tenant)
    with outer:
        lists.create_list(outer.acting_as(alice, RequestContext(ip="192.0.2.7")), "By Alice")
        inner = outer.acting_as(key, RequestContext(ip="198.51.100.9"))
        lists.create_list(inner, "By the key")
        inner.commit()  # an inner unit of work commits nothing: the outer one decides
        assert _state(db, tenant) == before
        outer.commit()
    entries, rows, head = _state(db, tenant)
    assert (entries, rows, head) == (before[0] + 2, before[1] + 2, before[2] + 2)
    with db.reader() as s:
        last = s.scalars(
            select(ActivityEntry)
            .where(ActivityEntry.account_id == tenant.account_id)
            .order_by(ActivityEntry.seq.desc())
            .limit(2)
        ).all()
    assert [(e.actor_id, e.ip) for e in reversed(last)] == [
        ("usr_alice", "192.0.2.7"),
        ("key_batch", "198.51.100.9"),
    ]
    assert [e["actor_id"] for e in outer.entries] == ["usr_alice", "key_batch"]
    with pytest.raises(AttributeError):
        outer.actor = alice  # type: ignore[misc]


def test_a_failure_in_an_inner_unit_of_work_rolls_the_whole_batch_back(db: Database, tenant: Tenant) -> None:
    before = _state(db, tenant)
    outer = _uow(db, tenant)
    with pytest.raises(RuntimeError, match="boom"), outer:
        lists.create_list(outer.acting_as(SYSTEM_CLI, RequestContext()), "Kept only if all is")
        with outer.acting_as(Actor("session", "usr_x", "x@example.com"), RequestContext()):
            raise RuntimeError("boom")
    assert _state(db, tenant) == before


def test_an_append_on_postgresql_writes_the_log_in_one_statement(db: Database, tenant: Tenant) -> None:
    """A mutation's entry, its tree nodes and the head's move go to PostgreSQL as one statement (one round
    trip, not three), and the rows are those a separate insert and update would have written: the chain and
    tree verify across appends that complete tree nodes and appends that do not."""
    if db.dialect != "postgresql":
        pytest.skip("SQLite has no data-modifying CTEs; its statements cost no round trip")
    sent: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "activity_" in statement:
            sent.append(statement)

    event.listen(db.engine, "before_cursor_execute", note)
    try:
        for i in range(4):  # every other append completes tree nodes
            lists.create_list(_uow(db, tenant), f"one statement {i}")
    finally:
        event.remove(db.engine, "before_cursor_execute", note)
    writes = [s for s in sent if not s.lstrip().startswith("SELECT")]
    assert len(writes) == 4, writes  # one per append: no separate entry insert, tree insert or head update
    assert all("INSERT INTO activity_entries" in s and "UPDATE activity_heads" in s for s in writes)
    assert sum("INSERT INTO activity_tree" in s for s in writes) == 2
    with db.reader() as session:
        assert verify_account(session, tenant.account_id).ok
