"""Verify as a reader runs it: one run per account at a time, a full and an incremental mode, and a page in
the dashboard that shows progress and a verdict a person reads."""

from __future__ import annotations

import re
import threading
import time

from sqlalchemy import text

from activitylog.config import Settings
from activitylog.db.base import Database
from activitylog.log.checkpoints import CheckpointSigner
from activitylog.log.record import RequestContext
from activitylog.log.signing import load_signer
from activitylog.log.verify import verify_account
from activitylog.services import lists, verification
from activitylog.services.uow import SYSTEM_CLI, UnitOfWork
from activitylog.services.verification import VerifyRuns
from conftest import Tenant, behind_the_apps_back
from test_dashboard import signed_in


def _grow(db: Database, tenant: Tenant, n: int) -> None:
    uow = UnitOfWork(db, account_id=tenant.account_id, actor=SYSTEM_CLI, context=RequestContext())
    for i in range(n):
        lists.create_list(uow, f"List {i}")


def test_the_api_answers_both_modes(tenant: Tenant) -> None:
    with tenant.key_client() as client:
        for i in range(3):
            client.post("/api/v1/lists", json={"name": f"V{i}"})
        assert client.get("/api/v1/activity/tree/checkpoint").status_code == 200  # the signer's anchor
        client.post("/api/v1/lists", json={"name": "after"})
        full = client.get("/api/v1/activity/verify").json()
        incremental = client.get("/api/v1/activity/verify", params={"mode": "incremental"}).json()
        bad = client.get("/api/v1/activity/verify", params={"mode": "quick"})
    assert full["ok"] and full["mode"] == "full" and full["checked"] == 7 and full["signed_size"] == 6
    assert incremental["ok"] and incremental["mode"] == "incremental" and incremental["checked"] == 7
    assert bad.status_code == 422 and "mode" in bad.json()["error"]["message"]


def test_one_run_per_account_at_a_time(db: Database, tenant: Tenant, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Readers asking while a verify runs join it: the log is walked once, every asker gets the verdict."""
    _grow(db, tenant, 40)
    settings = Settings(signing_key_file=str(tmp_path / "k.key"))
    runs = VerifyRuns(db, CheckpointSigner(settings, load_signer(settings)))
    release, walks = threading.Event(), []

    def held_walk(*args, **kwargs):  # type: ignore[no-untyped-def]
        walks.append(args[1])
        release.wait(10)
        return verify_account(*args, **kwargs)

    monkeypatch.setattr(verification, "verify_account", held_walk)
    answers: list[object] = []
    askers = [
        threading.Thread(target=lambda: answers.append(runs.verify(tenant.account_id))) for _ in range(8)
    ]
    for t in askers:
        t.start()
    time.sleep(0.3)
    release.set()
    for t in askers:
        t.join()
    assert walks == [tenant.account_id] and len(answers) == 8 and all(a is answers[0] for a in answers)
    run = answers[0]
    assert run.verdict is not None and run.verdict.ok and run.verdict.checked == 43 and run.percent == 100  # type: ignore[attr-defined]


def test_incremental_sees_new_entries_but_not_an_old_body_under_its_kept_hash(
    db: Database, tenant: Tenant, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    _grow(db, tenant, 10)
    settings = Settings(signing_key_file=str(tmp_path / "k.key"))
    signer = CheckpointSigner(settings, load_signer(settings))
    signer.sign(db, tenant.account_id)
    _grow(db, tenant, 3)
    runs = VerifyRuns(db, signer)
    with behind_the_apps_back(db) as conn:  # an old entry's body edited, its hash kept
        conn.execute(
            text("UPDATE activity_entries SET ip = '192.0.2.1' WHERE account_id = :a AND seq = 5"),
            {"a": tenant.account_id},
        )
        conn.execute(  # and a new entry's too
            text("UPDATE activity_entries SET ip = '192.0.2.1' WHERE account_id = :a AND seq = 15"),
            {"a": tenant.account_id},
        )
    incremental = runs.verify(tenant.account_id, incremental=True).verdict
    full = runs.verify(tenant.account_id).verdict
    assert incremental is not None and not incremental.ok and incremental.first_bad_seq == 15
    assert full is not None and not full.ok and full.first_bad_seq == 5


def test_the_dashboard_verify_page_shows_the_verdict(tenant: Tenant) -> None:
    client, token = signed_in(tenant)
    before = client.get("/activity/verify")
    assert before.status_code == 200 and "Verify everything" in before.text
    started = client.post("/activity/verify", data={"csrf_token": token, "mode": "full"})
    assert started.status_code == 303
    deadline = time.monotonic() + 30
    page = client.get("/activity/verify").text
    while "Intact" not in page and time.monotonic() < deadline:
        assert 'http-equiv="refresh"' in page and "<progress" in page
        time.sleep(0.2)
        page = client.get("/activity/verify").text
    assert "Intact." in page and re.search(r"\d+ entries verified", page), page
    refused = client.post("/activity/verify", data={"mode": "full"})  # no CSRF token
    assert refused.status_code == 403
    entry = client.get("/activity/1").text
    assert 'href="/activity/verify"' in entry


def test_a_search_index_that_hides_an_entry_is_caught(db: Database, tenant: Tenant) -> None:
    """SQLite's search index is its own table: deleting or rewriting its rows would hide entries from q."""
    if db.dialect != "sqlite":
        return  # PostgreSQL's trigram index is over the entries' own columns: nothing apart to alter
    _grow(db, tenant, 6)
    with behind_the_apps_back(db) as conn:
        conn.execute(
            text("DELETE FROM activity_search WHERE account_id = :a AND seq = 5"), {"a": tenant.account_id}
        )
    with db.reader() as session:
        verdict = verify_account(session, tenant.account_id)
    assert not verdict.ok and verdict.first_bad_seq == 5 and "search index" in (verdict.reason or "")
