"""Many writers on one account at once — processes and threads, both engines — leave a gapless, verifiable
chain with no lost and no duplicated entry. Appends serialise per account, not globally."""

from __future__ import annotations

import multiprocessing
import threading
import uuid
from collections import Counter

from sqlalchemy import insert, select

from activitylog.db.base import Database, connect
from activitylog.db.models import Account, ActivityEntry
from activitylog.log.record import RequestContext
from activitylog.log.verify import verify_account
from activitylog.services import lists
from activitylog.services.uow import SYSTEM_CLI, UnitOfWork
from conftest import Tenant, make_tenant

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
    with db.engine.begin() as conn:  # an account from before the log existed: no head, no entries
        conn.execute(insert(Account.__table__).values(id=account_id, name="Legacy"))
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
