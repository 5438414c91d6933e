"""Many writers on one account at once — processes and threads, both engines — leave a gapless, verifiable
chain with no lost and no duplicated entry. Appends serialise per account, not globally."""

from __future__ import annotations

import multiprocessing
import threading
import time
import uuid
from collections import Counter
from typing import cast

import httpx
from sqlalchemy import Table, insert, select, text

from activitylog.db.base import Database, connect
from activitylog.db.models import Account, ActivityEntry, ChainHead, User
from activitylog.log.record import RequestContext
from activitylog.log.verify import verify_account
from activitylog.services import lists
from activitylog.services.uow import SYSTEM_CLI, UnitOfWork
from conftest import PASSWORD, Tenant, make_tenant, unguarded

WRITERS = 8
PER_WRITER = 25
POOL_TIMEOUT = 300  # seconds: a stuck child fails the test instead of stalling the run


def _write_lists(url: str, account_id: str, writer: int, count: int) -> list[str]:
    """Runs in a child process: its own engine, its own connections."""
    db = connect(url)
    made = []
    for i in range(count):
        uow = UnitOfWork(
            db, account_id=account_id, actor=SYSTEM_CLI, context=RequestContext(request_id=f"w{writer}-{i}")
        )
        made.append(lists.create_list(uow, f"writer {writer} list {i}").id)
    db.dispose()
    return made


def _entries(db: Database, account_id: str) -> list[tuple[int, str | None, str]]:
    with db.reader() as s:
        return [
            (r.seq, r.request_id, r.resource_id)
            for r in s.execute(
                select(ActivityEntry.seq, ActivityEntry.request_id, ActivityEntry.resource_id)
                .where(ActivityEntry.account_id == account_id)
                .order_by(ActivityEntry.seq)
            )
        ]


def _assert_gapless(db: Database, account_id: str, expected_new: int, baseline: int) -> None:
    entries = _entries(db, account_id)
    assert [seq for seq, _, _ in entries] == list(range(1, len(entries) + 1))
    assert len(entries) == baseline + expected_new
    request_ids = Counter(rid for _, rid, _ in entries[baseline:])
    assert all(n == 1 for n in request_ids.values()), "an entry was duplicated"
    with db.reader() as s:
        verdict = verify_account(s, account_id)
    assert verdict.ok, verdict


def test_processes_append_to_one_account(db: Database, tenant: Tenant) -> None:
    baseline = len(_entries(db, tenant.account_id))
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(WRITERS) as pool:
        results = pool.starmap_async(
            _write_lists, [(db.url, tenant.account_id, w, PER_WRITER) for w in range(WRITERS)]
        ).get(timeout=POOL_TIMEOUT)
    _assert_gapless(db, tenant.account_id, WRITERS * PER_WRITER, baseline)
    logged = {rid for _, _, rid in _entries(db, tenant.account_id)}
    assert all(list_id in logged for made in results for list_id in made), "a committed change has no entry"


def test_first_appends_of_a_new_account_race_safely(db: Database) -> None:
    """An account whose chain has no head row yet: concurrent first appends must not both take seq 1."""
    account_id = f"acc_{uuid.uuid4().hex[:20]}"
    with unguarded(db) as conn:  # an account from before the log existed: no head, no entries
        conn.execute(insert(cast(Table, Account.__table__)).values(id=account_id, name="Legacy"))
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(WRITERS) as pool:
        pool.starmap_async(_write_lists, [(db.url, account_id, w, 5) for w in range(WRITERS)]).get(
            timeout=POOL_TIMEOUT
        )
    _assert_gapless(db, account_id, WRITERS * 5, 0)


def test_threads_through_http_on_two_accounts(db: Database, tenant: Tenant) -> None:
    other = make_tenant(tenant.server, "Other")
    baselines = {t.account_id: len(_entries(db, t.account_id)) for t in (tenant, other)}
    errors: list[str] = []

    def hammer(t: Tenant, n: int) -> None:
        with t.key_client() as client:
            for i in range(n):
                r = client.post("/api/v1/lists", json={"name": f"thread list {i}"})
                if r.status_code != 201:
                    errors.append(r.text)

    threads = [
        threading.Thread(target=hammer, args=(t, 15)) for t in (tenant, other) for _ in range(WRITERS // 2)
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    for t in (tenant, other):
        _assert_gapless(db, t.account_id, (WRITERS // 2) * 15, baselines[t.account_id])


def _wait_until_blocked(db: Database, waiting: int) -> None:
    """Until ``waiting`` other transactions wait on a row lock (PostgreSQL); SQLite writers queue on its one
    write lock with nothing to observe, so give them a moment."""
    if db.dialect != "postgresql":
        time.sleep(0.5)
        return
    deadline = time.monotonic() + 20
    probe = text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    with db.engine.connect() as conn:
        while conn.execute(probe).scalar_one() < waiting:
            assert time.monotonic() < deadline, "the requests never reached the lock"
            time.sleep(0.02)
            conn.rollback()


def test_two_owners_demoting_each_other_at_once_leave_one_owner(db: Database, tenant: Tenant) -> None:
    """Each PATCH counts the owners before it demotes one. The test holds the account's chain head, so both
    requests get as far as they can before either commits: counted without a lock, both saw two owners
    and the account was left with none."""
    first = tenant.session_client()
    email = f"second-owner-{uuid.uuid4().hex[:8]}@example.com"
    created = first.post("/api/v1/users", json={"email": email, "password": PASSWORD, "role": "owner"})
    second_id = created.json()["id"]
    second = tenant.session_client(email)
    statuses: list[int] = []

    def demote(client: httpx.Client, user_id: str) -> None:
        statuses.append(client.patch(f"/api/v1/users/{user_id}", json={"role": "admin"}).status_code)

    holder = db.for_account(tenant.account_id).writer()
    try:
        holder.execute(
            select(ChainHead.seq).where(ChainHead.account_id == tenant.account_id).with_for_update()
        ).one()
        threads = [
            threading.Thread(target=demote, args=(first, second_id)),
            threading.Thread(target=demote, args=(second, tenant.owner_id)),
        ]
        for th in threads:
            th.start()
        _wait_until_blocked(db, 2)
    finally:
        holder.rollback()
        holder.close()
    for th in threads:
        th.join(timeout=60)
    assert sorted(statuses) == [200, 409]
    with db.for_account(tenant.account_id).reader() as s:
        roles = s.scalars(select(User.role).where(User.account_id == tenant.account_id)).all()
    assert sorted(roles) == ["admin", "owner"]


def test_an_append_during_a_verify_is_no_alarm(db: Database, tenant: Tenant) -> None:
    """The walk reads one snapshot: an entry committed while it runs is not "missing after the last one"."""
    scoped = db.for_account(tenant.account_id)

    def uow() -> UnitOfWork:
        return UnitOfWork(db, account_id=tenant.account_id, actor=SYSTEM_CLI, context=RequestContext())

    for i in range(6):
        lists.create_list(uow(), f"before {i}")
    appended: list[str] = []

    def append_once(_seq: int) -> None:
        if not appended:
            appended.append(lists.create_list(uow(), "during the walk").id)

    with scoped.reader() as session:
        verdict = verify_account(session, tenant.account_id, progress=append_once, batch=2)
    assert appended and verdict.ok, verdict
    with scoped.reader() as session:
        after = verify_account(session, tenant.account_id)
    assert after.ok and after.checked == verdict.checked + 1
