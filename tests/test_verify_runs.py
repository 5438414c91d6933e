"""Verify as a reader runs it: one run per account at a time, a full and an incremental mode, and a page in
the dashboard that shows progress and a verdict a person reads."""

from __future__ import annotations

import re
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from activitylog.config import Settings
from activitylog.db.base import Database
from activitylog.log.checkpoints import CheckpointSigner
from activitylog.log.signing import load_signer
from activitylog.log.verify import verify_account
from activitylog.services import lists, verification
from activitylog.services.verification import VerifyRun, VerifyRuns
from conftest import Tenant, behind_the_apps_back
from factories import cli_uow
from test_dashboard import signed_in


def _grow(db: Database, tenant: Tenant, n: int) -> None:
    uow = cli_uow(db, tenant.account_id)
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
    assert walks == [tenant.account_id] and len(answers) == 8 and all(a == answers[0] for a in answers)
    run = answers[0]
    assert isinstance(run, VerifyRun)
    assert (
        run.verdict is not None and run.verdict["ok"] and run.verdict["checked"] == 43 and run.percent == 100
    )


def _runs(db: Database, tmp_path: Path) -> VerifyRuns:
    settings = Settings(signing_key_file=str(tmp_path / "k.key"))
    return VerifyRuns(db, CheckpointSigner(settings, load_signer(settings)))


def test_a_run_is_joined_and_watched_from_another_process(
    db: Database, tenant: Tenant, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``serve --processes N``: the request that starts a verify and the ones that watch or join it may be
    answered by different processes. Each VerifyRuns below is what one process holds; only the database
    is shared."""
    _grow(db, tenant, 30)
    first, second = _runs(db, tmp_path), _runs(db, tmp_path)
    release, walks = threading.Event(), []

    def held_walk(*args, **kwargs):  # type: ignore[no-untyped-def]
        walks.append(args[1])
        kwargs["progress"](17)
        release.wait(10)
        return verify_account(*args, **kwargs)

    monkeypatch.setattr(verification, "verify_account", held_walk)
    monkeypatch.setattr(verification, "HEARTBEAT_SECONDS", 0.05)
    started = first.start(tenant.account_id)
    deadline = time.monotonic() + 10
    while (seen := second.latest(tenant.account_id)) is None or seen.checked != 17:
        assert time.monotonic() < deadline, seen
        time.sleep(0.05)
    assert (
        seen.verdict is None and seen.total == 33 and seen.started == started.started
    )  # progress, seen there
    joined = second.start(tenant.account_id)  # a second process asking joins the run: no second walk
    assert joined.started == started.started and walks == [tenant.account_id]
    answers: list[object] = []
    waiter = threading.Thread(target=lambda: answers.append(second.verify(tenant.account_id)))
    waiter.start()
    time.sleep(0.3)
    assert not answers  # it waits for the other process's verdict
    release.set()
    waiter.join(10)
    (answer,) = answers
    assert answer.verdict is not None and answer.verdict["ok"] and answer.verdict["checked"] == 33  # type: ignore[attr-defined]
    assert walks == [tenant.account_id]


def test_a_run_whose_process_died_is_walked_again(
    db: Database, tenant: Tenant, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _grow(db, tenant, 5)
    dead, alive = _runs(db, tmp_path), _runs(db, tmp_path)
    dead._claim(tenant.account_id, "full")  # claimed, then the process died before it walked a step
    assert alive.start(tenant.account_id).verdict is None  # still fresh: joined, not taken over
    monkeypatch.setattr(verification, "STALE_AFTER", timedelta(0))
    run = alive.verify(tenant.account_id)
    assert run.verdict is not None and run.verdict["ok"] and run.verdict["checked"] == 8


def test_incremental_sees_new_entries_but_not_an_old_body_under_its_kept_hash(
    db: Database, tenant: Tenant, tmp_path: Path
) -> None:
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
    assert incremental is not None and not incremental["ok"] and incremental["first_bad_seq"] == 15
    assert full is not None and not full["ok"] and full["first_bad_seq"] == 5


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
