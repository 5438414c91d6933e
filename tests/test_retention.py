"""Retention and legal holds, on both engines: a purge removes what is past the account's retention and under
no hold (so several ranges), leaves tombstones, and afterwards every retained entry, the chain across the
gaps, every checkpoint and every consistency and inclusion proof still verify — with the auditor's code, the
stdlib tool and Go's tlog — while verify, manifests and proof files name the purged ranges and the policy."""

from __future__ import annotations

import base64
import csv
import io
import json
import logging
import sys
import threading
import uuid
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, event, select, text
from sqlalchemy.exc import DBAPIError

from activitylog import pacing
from activitylog.db.base import SQLITE_WIDE_CACHE_KIB, Database, connect
from activitylog.db.models import ActivityEntry, PurgedEntry
from activitylog.errors import InvalidInput
from activitylog.log import purge, search_index
from activitylog.log.record import RequestContext
from activitylog.log.verify import verify_account
from activitylog.log.verify_export import (
    consistency_holds,
    inclusion_root,
    leaf_hash,
    open_checkpoint,
    parse_verifier_key,
)
from activitylog.pacing import Pacer
from activitylog.services import accounts, api_keys, lists, retention
from activitylog.services.uow import SYSTEM_CLI, UnitOfWork
from conftest import PASSWORD, Server, Tenant, app_role_on, run_auditor_tool
from test_cli import cli
from test_go_checker import Checker, checkpointcheck  # noqa: F401  (the Go checker's fixture)

NOW = datetime.now(UTC)
DAY = timedelta(days=1)

# Days ago of each entry the aged account writes before today (seq 1 and 2: account and owner).
LISTS = (880, 860, 840, 820)  # seq 3-6
IMPORT = 800  # seq 7: an import, which indexes the contacts it created (activity_affected)
HELD_A = (700, 690, 680)  # seq 8-10: under hold A (705..675 days ago)
FREE = (600, 590)  # seq 11-12: a hold covered them, but it was released
HELD_B = (500,)  # seq 13: under hold B (505..495 days ago)
LATE = (450, 420)  # seq 14-15: past 400 days only
YOUNG = (300, 200)  # seq 16-17: within the retention
PURGED = [[1, 7], [11, 12], [14, 15]]


class Clock:
    def __init__(self, days_ago: float) -> None:
        self.at = NOW - days_ago * DAY

    def __call__(self) -> datetime:
        return self.at

    def days_ago(self, days: float) -> None:
        self.at = NOW - days * DAY


@dataclass
class Aged:
    tenant: Tenant
    hashes: dict[int, str]  # seq -> hash, as written (before any purge)
    holds: dict[str, str]  # name -> hold id


def aged_tenant(server: Server) -> Aged:
    """An account 900 days old with entries spread over its life, two active legal holds and a released
    one; everything after seq 17 happens today."""
    clock = Clock(900)
    email = f"owner-{uuid.uuid4().hex[:10]}@example.com"
    created = accounts.create_account(
        server.db,
        name="Aged",
        owner_email=email,
        password=PASSWORD,
        actor=SYSTEM_CLI,
        context=RequestContext(),
        clock=clock,
    )
    account_id = created.account.id

    def uow(clocked: Callable[[], datetime] | None = clock) -> UnitOfWork:
        return UnitOfWork(
            server.db, account_id=account_id, actor=SYSTEM_CLI, context=RequestContext(), clock=clocked
        )

    def lists_at(days: tuple[int, ...]) -> str:
        made = ""
        for d in days:
            clock.days_ago(d)
            made = lists.create_list(uow(), f"List {d}").id
        return made

    target = lists_at(LISTS)
    clock.days_ago(IMPORT)
    lists.import_contacts(uow(), target, _rows(3))
    for days in (HELD_A, FREE, HELD_B, LATE, YOUNG):
        lists_at(days)
    issued = api_keys.create_api_key(uow(None), name="Test key", scopes=["full"])
    tenant = Tenant(account_id, created.owner.id, email, issued.key.id, issued.secret, server)
    holds = {}
    with tenant.key_client() as client:
        for name, since, until in (("A", 705, 675), ("B", 505, 495), ("released", 605, 585)):
            body = {"reason": f"hold {name}", "since": _ago(since), "until": _ago(until)}
            response = client.post("/api/v1/legal-holds", json=body)
            assert response.status_code == 201, response.text
            holds[name] = response.json()["id"]
        assert client.post(f"/api/v1/legal-holds/{holds['released']}/release").status_code == 200
    with server.db.for_account(account_id).reader() as session:
        rows = session.execute(
            select(ActivityEntry.seq, ActivityEntry.hash).where(ActivityEntry.account_id == account_id)
        )
        hashes = {seq: h for seq, h in rows}
    assert len(hashes) == 17 + 1 + 4  # the key, three holds and a release
    return Aged(tenant, hashes, holds)


def _rows(n: int) -> list[dict[str, Any]]:
    return [{"email": f"c{i}-{uuid.uuid4().hex[:6]}@example.com"} for i in range(n)]


def _ago(days: float) -> str:
    return (NOW - days * DAY).isoformat()


def _b(values: list[str]) -> list[bytes]:
    return [base64.b64decode(v) for v in values]


def _seqs(db: Database, account_id: str) -> list[int]:
    with db.for_account(account_id).reader() as session:
        return list(
            session.scalars(
                select(ActivityEntry.seq)
                .where(ActivityEntry.account_id == account_id)
                .order_by(ActivityEntry.seq)
            )
        )


def _vkey(tenant: Tenant) -> str:
    with httpx.Client(base_url=tenant.server.url) as anonymous:
        return str(anonymous.get(f"/api/v1/accounts/{tenant.account_id}/verifier-key").json()["verifier_key"])


def test_dry_run_and_as_of_judge_ages_at_that_instant_and_change_nothing(server: Server) -> None:
    aged = aged_tenant(server)
    db, account_id = server.db, aged.tenant.account_id
    before = _seqs(db, account_id)
    preview = retention.purge_account(db, account_id, dry_run=True)
    assert preview.plan.ranges == [tuple(r) for r in PURGED] and preview.plan.count == 11
    # 150 days ago, the entries of 450 and 420 days ago were not yet 400 days old
    earlier = retention.purge_account(db, account_id, as_of=NOW - 150 * DAY, dry_run=True)
    assert earlier.plan.ranges == [(1, 7), (11, 12)]
    # a year from now, the young ones are past it too (a preview only)
    later = retention.purge_account(db, account_id, as_of=NOW + 365 * DAY, dry_run=True)
    assert later.plan.ranges == [(1, 7), (11, 12), (14, 17)]
    with pytest.raises(InvalidInput, match="as_of"):
        retention.purge_account(db, account_id, as_of=NOW + 365 * DAY)
    done = cli(db, "purge", "--account", account_id, "--dry-run", "--as-of", (NOW - 150 * DAY).isoformat())
    assert done.returncode == 0, done.stderr
    assert f"{account_id}: would purge 9 entries, seq 1-7, 11-12 (retention 400 days" in done.stdout
    assert _seqs(db, account_id) == before  # nothing changed, and no entry was written

    # a purge as of 150 days ago really purges what was old then, and only that
    done = cli(db, "purge", "--account", account_id, "--as-of", (NOW - 150 * DAY).isoformat())
    assert done.returncode == 0, done.stderr
    assert f"{account_id}: purged 9 entries, seq 1-7, 11-12" in done.stdout
    remaining = _seqs(db, account_id)
    assert remaining[0] == 8 and 11 not in remaining and 14 in remaining
    with aged.tenant.key_client() as client:
        entry = client.get(f"/api/v1/activity/{remaining[-1]}").json()
    assert entry["action"] == "activity_log.purge" and entry["actor"]["type"] == "system"
    assert entry["changes"]["ranges"] == [[1, 7], [11, 12]] and entry["changes"]["count"] == 9
    assert entry["changes"]["older_than"].startswith((NOW - 550 * DAY).strftime("%Y-%m-%d"))
    assert entry["summary"] == 'Purged activity log "activity log"'

    # a second run as of the same instant finds nothing, and writes nothing
    again = cli(db, "purge", "--account", account_id, "--as-of", (NOW - 150 * DAY).isoformat())
    assert again.returncode == 0 and "nothing to purge" in again.stdout
    assert _seqs(db, account_id) == remaining


def test_a_purge_with_holds_keeps_every_proof(
    server: Server,
    tmp_path: Path,
    checkpointcheck: Path,  # noqa: F811
) -> None:
    aged = aged_tenant(server)
    db, tenant, account_id = server.db, aged.tenant, aged.tenant.account_id
    key = parse_verifier_key(_vkey(tenant))
    with tenant.key_client() as client:
        old = open_checkpoint(client.get("/api/v1/activity/tree/checkpoint").text, key)
        small = open_checkpoint(client.get("/api/v1/activity/tree/checkpoint?tree_size=5").text, key)

    result = retention.purge_account(db, account_id)
    assert result.plan.ranges == [tuple(r) for r in PURGED] and result.entry_seq == old.size + 1
    with db.for_account(account_id).reader() as session:
        tombstones = session.execute(
            select(PurgedEntry.seq, PurgedEntry.hash, PurgedEntry.prev_hash, PurgedEntry.retention_days)
            .where(PurgedEntry.account_id == account_id)
            .order_by(PurgedEntry.seq)
        ).all()
        verdict = verify_account(session, account_id)
        affected = session.execute(  # the purged entry's affected ids go with it
            text("SELECT count(*) FROM activity_affected WHERE account_id = :a AND seq = 7"),
            {"a": account_id},
        ).scalar_one()
    assert [t.seq for t in tombstones] == [1, 2, 3, 4, 5, 6, 7, 11, 12, 14, 15]
    assert all(t.hash == aged.hashes[t.seq] and t.retention_days == 400 for t in tombstones)
    assert affected == 0
    assert verdict.ok, verdict
    assert [[r.first, r.last] for r in verdict.purged] == PURGED

    with tenant.key_client() as client:
        # lists and entries: the purged are gone
        listed = client.get("/api/v1/activity", params={"limit": 1000}).json()["data"]
        assert {e["seq"] for e in listed} == set(aged.hashes) - {
            s for a, b in PURGED for s in range(a, b + 1)
        } | {old.size + 1}
        assert client.get("/api/v1/activity/3").status_code == 404
        # verify, through the API
        checked = client.get("/api/v1/activity/verify").json()
        assert checked["ok"] is True and checked["purged"] == PURGED, checked
        assert [p["retention_days"] for p in checked["purges"]] == [400, 400, 400]
        assert {p["purge_seq"] for p in checked["purges"]} == {old.size + 1}
        # every checkpoint signed before still holds: same roots, and the new tree extends them
        new = open_checkpoint(client.get("/api/v1/activity/tree/checkpoint").text, key)
        again = open_checkpoint(
            client.get(f"/api/v1/activity/tree/checkpoint?tree_size={old.size}").text, key
        )
        assert again.root == old.root and new.size == old.size + 1
        for before in (old, small):
            proof = client.get(
                "/api/v1/activity/tree/consistency", params={"old_size": before.size, "tree_size": new.size}
            ).json()
            assert consistency_holds(before.size, new.size, before.root, new.root, _b(proof["hashes"]))
        # inclusion, of retained and of purged seqs (their leaf is the tombstone's hash)
        go_inclusions = []
        for seq in (1, 3, 7, 8, 12, 13, 16, new.size):
            path = client.get(
                "/api/v1/activity/tree/inclusion", params={"seq": seq, "tree_size": new.size}
            ).json()
            leaf = base64.b64decode(path["leaf_hash"])
            expected = aged.hashes.get(seq) or client.get(f"/api/v1/activity/{seq}").json()["hash"]
            assert leaf == leaf_hash(expected)
            assert inclusion_root(seq - 1, new.size, leaf, _b(path["hashes"])) == new.root
            go_inclusions.append({**path, "seq": seq, "entry_hash": expected})
        go_consistency = [
            client.get(
                "/api/v1/activity/tree/consistency", params={"old_size": b.size, "tree_size": new.size}
            ).json()
            for b in (old, small)
        ]
        checkpoints = [c.text for c in (small, old, new)]

        # the export, its proof file and its manifest: the stdlib tool names the purged ranges
        export = client.get("/api/v1/activity/export")
        assert export.status_code == 200
        as_of = int(export.headers["x-activity-as-of-seq"])
        rows = list(csvrows(export.text))
        assert [int(r[1]) for r in rows][:3] == [8, 9, 10] and "11" not in [r[1] for r in rows]
        proof = client.get("/api/v1/activity/export/proof", params={"tree_size": as_of})
        manifest = client.get("/api/v1/activity/export/manifest", params={"as_of_seq": as_of})
        assert manifest.status_code == 200, manifest.text
        assert manifest.json()["purged"] == PURGED
        assert json.loads(proof.text.split("\n", 1)[0])["purged"] == PURGED
    (tmp_path / "e.csv").write_text(export.text)
    (tmp_path / "e.proof").write_text(proof.text)
    (tmp_path / "e.manifest").write_text(manifest.text)
    (tmp_path / "vkey").write_text(_vkey(tenant))
    plain = run_auditor_tool(str(tmp_path / "e.csv"))
    assert plain.returncode == 0 and "not in the slice: 11-12, 14-15" in plain.stdout, plain.stdout
    full = run_auditor_tool(
        str(tmp_path / "e.csv"),
        "--proof",
        str(tmp_path / "e.proof"),
        "--manifest",
        str(tmp_path / "e.manifest"),
        "--verifier-key",
        str(tmp_path / "vkey"),
        stdlib_only=False,
    )
    assert full.returncode == 0, full.stdout + full.stderr
    assert "2 gaps (purged: 11-12, 14-15)" in full.stdout and "not in the slice" not in full.stdout
    assert "PURGED (the signed manifest): seq 1-7 (retention 400 days" in full.stdout
    assert "MANIFEST OK" in full.stdout and "PROOF OK" in full.stdout and "TAMPERED" not in full.stdout
    files = [str(tmp_path / "e.csv"), "--proof", str(tmp_path / "e.proof")]
    proof_only = run_auditor_tool(*files, "--verifier-key", str(tmp_path / "vkey"), stdlib_only=False)
    assert proof_only.returncode == 0 and "PURGED (the proof file)" in proof_only.stdout, proof_only.stdout

    # Go's sumdb/tlog agrees: the checkpoints, the consistency across the purge, purged and kept leaves
    check = Checker(checkpointcheck, tmp_path)
    code, said = check(
        _vkey(tenant), {"checkpoints": checkpoints, "consistency": go_consistency, "inclusion": go_inclusions}
    )
    assert code == 0, said


def csvrows(body: str) -> Any:
    reader = csv.reader(io.StringIO(body))
    next(reader)
    return reader


def test_a_purge_of_nothing_writes_no_entry(tenant: Tenant) -> None:
    db = tenant.server.db
    before = _seqs(db, tenant.account_id)
    result = retention.purge_account(db, tenant.account_id)
    assert result.plan.count == 0 and result.entry_seq is None
    assert _seqs(db, tenant.account_id) == before


def test_the_log_still_refuses_deletes_without_a_tombstone(server: Server) -> None:
    aged = aged_tenant(server)
    db, account_id = server.db, aged.tenant.account_id
    engine = create_engine(db.engine.url)
    try:
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            if db.dialect == "postgresql":
                conn.execute(text("SELECT set_config('activitylog.account_id', :a, true)"), {"a": account_id})
            conn.execute(
                text("DELETE FROM activity_entries WHERE account_id = :a AND seq = 3"), {"a": account_id}
            )
    finally:
        engine.dispose()
    retention.purge_account(db, account_id)
    engine = create_engine(db.engine.url)
    try:  # nor may a tombstone go
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            if db.dialect == "postgresql":
                conn.execute(text("SELECT set_config('activitylog.account_id', :a, true)"), {"a": account_id})
            conn.execute(text("DELETE FROM activity_purged WHERE account_id = :a"), {"a": account_id})
    finally:
        engine.dispose()
    assert 3 not in _seqs(db, account_id)
    young = _seqs(db, account_id)[-2:]  # within the retention: no tombstone
    engine = create_engine(db.engine.url)
    try:  # one tombstoned entry deleted with one that is not, or a tombstone of another hash: nothing goes
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO activity_purged (account_id, seq, hash, prev_hash, older_than, "
                    "retention_days, purge_seq) SELECT account_id, seq, :h, prev_hash, occurred_at, 400, 1 "
                    "FROM activity_entries WHERE account_id = :a AND seq = :s"
                ),
                {"a": account_id, "s": young[0], "h": "0" * 64},
            )
        for seqs in ([young[0]], young):
            with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
                if db.dialect == "postgresql":
                    conn.execute(
                        text("SELECT set_config('activitylog.account_id', :a, true)"), {"a": account_id}
                    )
                listed = ",".join(map(str, seqs))
                for table in ("activity_affected", "activity_entries"):
                    conn.execute(
                        text(f"DELETE FROM {table} WHERE account_id = :a AND seq IN ({listed})"),
                        {"a": account_id},
                    )
    finally:
        engine.dispose()
    assert _seqs(db, account_id)[-2:] == young


def test_the_app_role_may_purge_only_through_the_function(server: Server) -> None:
    if server.db.dialect != "postgresql":
        pytest.skip("roles are a PostgreSQL feature")
    aged = aged_tenant(server)
    account_id = aged.tenant.account_id
    with app_role_on(server.db) as url:
        app = connect(url)
        try:
            for statement in (
                "DELETE FROM activity_entries WHERE account_id = :a AND seq = 3",
                "UPDATE activity_entries SET actor_name = 'x' WHERE account_id = :a AND seq = 3",
                "INSERT INTO activity_purged SELECT account_id, seq, hash, prev_hash, now(), 400, 99 "
                "FROM activity_entries WHERE account_id = :a AND seq = 3",
                "DELETE FROM activity_purged WHERE account_id = :a",
            ):
                with (
                    pytest.raises(DBAPIError, match="permission denied"),
                    app.for_account(account_id).writer() as session,
                ):
                    session.execute(text(statement), {"a": account_id})
                    session.commit()
            # the function is the one door, and it checks the retention by the database's clock
            with (
                pytest.raises(DBAPIError, match="within the retention"),
                app.for_account(account_id).writer() as session,
            ):
                head = session.execute(
                    text("SELECT seq FROM activity_heads WHERE account_id = :a"), {"a": account_id}
                ).scalar_one()
                session.execute(
                    text("SELECT activity_purge(:a, 16, 17, now(), :s)"), {"a": account_id, "s": head + 1}
                )
            # ... and legal holds: seq 8-10 are held, so asking for them purges nothing
            with app.for_account(account_id).writer() as session:
                head = session.execute(
                    text("SELECT seq FROM activity_heads WHERE account_id = :a"), {"a": account_id}
                ).scalar_one()
                n = session.execute(
                    text("SELECT activity_purge(:a, 8, 10, now() - interval '400 days', :s)"),
                    {"a": account_id, "s": head + 1},
                ).scalar_one()
                assert n == 0
                session.rollback()
            result = retention.purge_account(app, account_id)  # the worker's purge, as the app role
            assert result.plan.count == 11
            with app.for_account(account_id).reader() as session:
                assert verify_account(session, account_id).ok
        finally:
            app.dispose()


def test_retention_is_a_partial_owner_only_logged_update(tenant: Tenant) -> None:
    with closing(tenant.session_client()) as owner:
        account = owner.get("/api/v1/account").json()
        assert account["log_retention_days"] == 400
        for bad in (364, 0, -1, "400", 400.5, None, 36501):
            response = owner.patch("/api/v1/account", json={"log_retention_days": bad})
            if bad is None:
                assert response.status_code == 200  # null: no change
            else:
                assert response.status_code == 422, (bad, response.text)
        response = owner.patch("/api/v1/account", json={"log_retention_days": 730})
        assert response.status_code == 200 and response.json()["log_retention_days"] == 730
        assert response.json()["name"] == account["name"]  # a partial update: the name stayed
        entry = owner.get("/api/v1/activity", params={"action": "account.update", "limit": 1}).json()["data"][
            0
        ]
        assert entry["changes"] == {"log_retention_days": {"from": 400, "to": 730}}
        assert owner.patch("/api/v1/account", json={"name": "Renamed"}).json()["log_retention_days"] == 730
        admin_email = f"admin-{uuid.uuid4().hex[:8]}@example.com"
        created = owner.post(
            "/api/v1/users", json={"email": admin_email, "password": PASSWORD, "role": "admin"}
        )
        assert created.status_code == 201
    with closing(tenant.session_client(admin_email)) as admin:
        assert admin.patch("/api/v1/account", json={"log_retention_days": 365}).status_code == 403
    with tenant.key_client() as key:
        assert key.patch("/api/v1/account", json={"log_retention_days": 365}).status_code == 403


def test_legal_holds_are_created_listed_released_and_logged(tenant: Tenant) -> None:
    with tenant.key_client() as client:
        bad = client.post("/api/v1/legal-holds", json={"reason": "x", "since": _ago(1), "until": _ago(2)})
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "until"
        assert client.post("/api/v1/legal-holds", json={"reason": " "}).status_code == 422
        assert (
            client.post(
                "/api/v1/legal-holds", json={"reason": "x", "since": "2026-01-01T00:00:00"}
            ).status_code
            == 422
        )
        for field, edge in (  # valid where given, past the years 1-9999 in UTC
            ("since", "9999-12-31T23:59:59-05:00"),
            ("until", "9999-12-31T23:00:00-05:00"),
            ("since", "0001-01-01T00:00:00+05:00"),
        ):
            answer = client.post("/api/v1/legal-holds", json={"reason": "x", field: edge})
            assert answer.status_code == 422 and answer.json()["error"]["field"] == field, answer.text
            assert "years 1-9999" in answer.json()["error"]["message"]
        made = client.post("/api/v1/legal-holds", json={"reason": "Case 42", "since": _ago(30)})
        assert made.status_code == 201, made.text
        hold = made.json()
        assert hold["active"] is True and hold["until"] is None and hold["id"].startswith("lh_")
        listed = client.get("/api/v1/legal-holds").json()["data"]
        assert [h["id"] for h in listed] == [hold["id"]]
        released = client.post(f"/api/v1/legal-holds/{hold['id']}/release")
        assert released.status_code == 200 and released.json()["active"] is False
        assert client.post(f"/api/v1/legal-holds/{hold['id']}/release").status_code == 409
        assert client.post("/api/v1/legal-holds/lh_nope/release").status_code == 404
        entries = client.get("/api/v1/activity", params={"resource_type": "legal_hold"}).json()["data"]
        assert [e["action"] for e in entries] == ["legal_hold.release", "legal_hold.create"]
        assert entries[1]["summary"] == 'Created legal hold "Case 42"'
        assert entries[0]["summary"] == 'Released legal hold "Case 42"'
    with closing(tenant.session_client()) as owner:
        member_email = f"member-{uuid.uuid4().hex[:8]}@example.com"
        owner.post("/api/v1/users", json={"email": member_email, "password": PASSWORD, "role": "member"})
    with closing(tenant.session_client(member_email)) as member:
        assert member.get("/api/v1/legal-holds").status_code == 403
        assert member.post("/api/v1/legal-holds", json={"reason": "x"}).status_code == 403


def test_purge_pieces_are_paced_to_their_time_and_cover_the_plan_exactly() -> None:
    pacer = Pacer(0.1, first=1000, least=100, most=20_000)
    pacer.took(1000, 0.025)  # four times too fast: at most doubled
    assert pacer.size == 2000
    pacer.took(2000, 0.1)  # on target: kept
    assert pacer.size == 2000
    pacer.took(2000, 2.0)  # twenty times too slow: at most halved
    assert pacer.size == 1000
    pacer.took(10, 5.0)  # a range's short tail: no evidence
    assert pacer.size == 1000
    for _ in range(20):
        pacer.took(pacer.size, 1e-9)
    assert pacer.size == 20_000
    for _ in range(20):
        pacer.took(pacer.size, 60.0)
    assert pacer.size == 100
    fixed = Pacer(0.1, fixed=4)
    fixed.took(4, 60.0)
    assert fixed.size == 4

    ranges = [(1, 2500), (2600, 2601), (3000, 9999)]
    paced = Pacer(0.1, first=300, least=100, most=1000)
    pieces = []
    for lo, hi in purge.batches(ranges, paced):
        pieces.append((lo, hi))
        paced.took(hi - lo + 1, 0.05 if len(pieces) % 3 else 0.4)  # fast, fast, slow, ...
    assert len({hi - lo + 1 for lo, hi in pieces}) > 2  # the size moved with the timings
    covered = [seq for lo, hi in pieces for seq in range(lo, hi + 1)]
    assert covered == [seq for lo, hi in ranges for seq in range(lo, hi + 1)]
    assert all(any(a <= lo and hi <= b for a, b in ranges) for lo, hi in pieces)  # never across a gap


def test_pieces_are_paced_on_sqlite_and_large_on_postgresql() -> None:
    """On SQLite a request waits for a piece, so pieces follow the clock; on PostgreSQL none does, and each
    piece's fixed cost (the counts of the hours it touched) is paid once per LARGE_BATCH seqs."""
    lite = pacing.for_engine("sqlite")
    assert not lite.fixed and lite.size == pacing.SMALL_BATCH  # nothing known yet: start small
    lite.took(lite.size, 0.01)  # fast: the next piece grows, at most twice as large
    assert lite.size == 2 * pacing.SMALL_BATCH
    lite.took(lite.size, 0.5)  # slow: it shrinks, never below the smallest
    assert lite.size == pacing.SMALL_BATCH
    pg = pacing.for_engine("postgresql")
    assert pg.fixed and pg.size == pacing.LARGE_BATCH
    pg.took(pacing.LARGE_BATCH, 5.0)
    assert pg.size == pacing.LARGE_BATCH
    assert pacing.for_engine("postgresql", 4).size == pacing.for_engine("sqlite", 4).size == 4


def test_a_purge_piece_walks_its_seq_range_not_every_older_entry_on_sqlite(server: Server) -> None:
    """SQLite plans without statistics (no ANALYZE runs on a product database): each statement of a piece
    must reach its rows through the piece's seq range, not the time index (every entry of the account
    older than the cut-off, in every piece: 1M at 2M entries) nor the account alone (the affected
    resources, keyed by resource for the resource filter: every one of the account's, in every piece)."""
    db = server.db
    if db.dialect != "sqlite":
        pytest.skip(
            "a SQLite planner case: PostgreSQL keeps its statistics (autovacuum), and purges in its function"
        )
    aged = aged_tenant(server)
    with db.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS sqlite_stat1")
    sent: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "seq BETWEEN" in statement and statement.lstrip().startswith(("INSERT", "DELETE")):
            sent.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", capture)
    try:
        result = retention.purge_account(db, aged.tenant.account_id, batch=4)
    finally:
        event.remove(db.engine, "before_cursor_execute", capture)
    assert result.plan.count > 4 and sent, "the purge ran no pieces"
    deleted = {"activity_entries", "activity_affected"}
    assert deleted == {t for s, _ in sent for t in deleted if f"DELETE FROM {t}" in s}
    with db.engine.connect() as conn:
        for statement, parameters in sent:
            steps = [row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)]
            plan = " | ".join(steps)
            assert "occurred_at<?" not in plan, f"{plan}\n{statement}"
            assert not any(
                step.startswith("SCAN") or step.endswith(("(account_id=?)", "(c3=?)"))
                for step in steps
                if "legal_holds" not in step  # an account's few holds
            ), f"{plan}\n{statement}"
            assert "seq>? AND seq<?" in plan or "c4>? AND c4<?" in plan, f"{plan}\n{statement}"


def _wal_frames(database_file: str) -> tuple[int, int]:
    """(frames in the write-ahead log, frames copied into the database file), read off the WAL index
    (``-shm``) without taking part: ``mxFrame`` at byte 16 of its header, ``nBackfill`` at byte 96."""
    with open(database_file + "-shm", "rb") as shm:
        head = shm.read(100)
    return int.from_bytes(head[16:20], sys.byteorder), int.from_bytes(head[96:100], sys.byteorder)


def test_a_sqlite_purge_copies_the_write_ahead_log_after_each_piece(server: Server) -> None:
    """SQLite's auto-checkpoint runs in whichever commit passes 1,000 pages of log, often a request's; the
    purge copies its own pieces into the file as it goes, so the requests' commits find nothing to copy."""
    db = server.db
    if db.dialect != "sqlite":
        pytest.skip("a SQLite case: PostgreSQL checkpoints in a process of its own, never in a commit")
    aged = aged_tenant(server)
    database_file = str(db.engine.url.database)
    seen: list[tuple[int, int]] = []
    result = retention.purge_account(
        db, aged.tenant.account_id, batch=4, progress=lambda _n: seen.append(_wal_frames(database_file))
    )
    assert result.plan.count > 8 and len(seen) >= 3
    assert all(logged > 0 and copied == logged for logged, copied in seen), seen


def _automerge(conn: Any, table: str) -> Any:
    return conn.execute(text(f"SELECT v FROM {table}_config WHERE k = 'automerge'")).scalar()


def test_a_sqlite_purge_merges_the_text_index_in_bounded_steps(server: Server) -> None:
    """Each piece turns FTS5's own merging off for its deletes and takes one bounded merge step after them,
    in its own transaction: afterwards both text indexes are back at the default and pass FTS5's own
    integrity check, and verify finds each kept entry's copy in its index."""
    db = server.db
    if db.dialect != "sqlite":
        pytest.skip("a SQLite case: PostgreSQL has no FTS5 tables")
    aged = aged_tenant(server)
    steps: list[str] = []

    def capture(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "'merge'" in statement or "'automerge'" in statement:
            steps.append(statement.split("VALUES")[1].strip())

    event.listen(db.engine, "before_cursor_execute", capture)
    try:
        result = retention.purge_account(db, aged.tenant.account_id, batch=4)
    finally:
        event.remove(db.engine, "before_cursor_execute", capture)
    pieces = len(list(purge.batches(result.plan.ranges, Pacer(fixed=4))))
    per_table = ["('automerge', ?)", "('merge', ?)", "('automerge', ?)"]
    assert pieces >= 2 and steps == per_table * len(search_index.TABLES) * pieces
    with db.engine.begin() as conn:
        for table in search_index.TABLES:
            assert int(_automerge(conn, table)) == search_index.AUTOMERGE
            conn.execute(text(f"INSERT INTO {table}({table}) VALUES ('integrity-check')"))
    kept = retention.purge_account(db, aged.tenant.account_id, dry_run=True)
    assert kept.plan.count == 0
    with db.for_account(aged.tenant.account_id).reader() as session:
        assert verify_account(session, aged.tenant.account_id).ok


def test_only_a_purge_piece_widens_its_sqlite_page_cache(server: Server) -> None:
    """A purge piece's connection gets the large page cache before its first statement; the connections
    that serve reads keep SQLite's default, so a web process's pool does not grow a large cache each."""
    db = server.db
    if db.dialect != "sqlite":
        pytest.skip("a SQLite case: PostgreSQL has no per-connection page cache to size")
    fresh = connect(db.engine.url.render_as_string(hide_password=False))  # a pool no purge has used
    try:
        with fresh.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA cache_size").scalar_one() == -2000  # SQLite's default
    finally:
        fresh.dispose()
    aged = aged_tenant(server)
    seen: list[str] = []

    def capture(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", capture)
    try:
        result = retention.purge_account(db, aged.tenant.account_id, batch=4)
    finally:
        event.remove(db.engine, "before_cursor_execute", capture)
    assert result.plan.count > 0
    widened = [
        i for i, statement in enumerate(seen) if statement == f"PRAGMA cache_size=-{SQLITE_WIDE_CACHE_KIB}"
    ]
    deletes = [i for i, statement in enumerate(seen) if statement.startswith("DELETE FROM activity_entries")]
    assert len(widened) == len(deletes) >= 2  # once per piece, before the piece deletes
    assert all(w < d for w, d in zip(widened, deletes, strict=True))


def test_a_failed_piece_leaves_the_text_index_merging_as_before(server: Server) -> None:
    """The setting is turned off and back inside the piece's transaction: one that fails and rolls back
    leaves nothing changed."""
    db = server.db
    if db.dialect != "sqlite":
        pytest.skip("a SQLite case: PostgreSQL has no FTS5 tables")
    table = search_index.SHARED
    with db.engine.connect() as conn:
        before = _automerge(conn, table)
    with (
        pytest.raises(RuntimeError),
        db.system().writer() as session,
        search_index.bounded_merges(session, table),
    ):
        assert int(_automerge(session, table)) == 0
        raise RuntimeError("the piece failed")
    with db.engine.connect() as conn:
        assert _automerge(conn, table) == before


def test_each_purge_piece_is_a_debug_line_with_its_duration(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    """What an append may have waited for: one line per piece, their ranges tiling the plan's and their
    counts adding up to the purge's."""
    aged = aged_tenant(server)
    with caplog.at_level(logging.DEBUG, logger="activitylog.services.retention"):
        result = retention.purge_account(server.db, aged.tenant.account_id, batch=4)
    pieces = [r.fields for r in caplog.records if r.getMessage() == "purge piece"]  # type: ignore[attr-defined]
    assert len(pieces) >= 2
    assert sum(p["purged"] for p in pieces) == result.plan.count
    assert all(p["account_id"] == aged.tenant.account_id and p["ms"] >= 0 for p in pieces)
    for p in pieces:  # the transaction's parts make up its time (each rounded to 0.1 ms)
        parts = p["counts_ms"] + p["delete_ms"] + p["commit_ms"]
        assert p["lock_ms"] >= 0 and min(p["counts_ms"], p["delete_ms"], p["commit_ms"]) >= 0
        assert abs(parts - p["ms"]) <= 0.3
    covered = {seq for p in pieces for seq in range(p["from_seq"], p["to_seq"] + 1)}
    assert covered == {seq for lo, hi in result.plan.ranges for seq in range(lo, hi + 1)}


def test_the_plan_is_found_while_appends_and_holds_go_on(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding the plan reads every purgeable entry (seconds at 2M): it holds neither SQLite's write lock
    nor the chain head, so an append made meanwhile goes through at once; a hold placed then keeps what it
    covers, as one placed during the pieces does, and the log still verifies."""
    aged = aged_tenant(server)
    account_id = aged.tenant.account_id
    found = purge.plan
    appended: list[str] = []
    held: list[str] = []

    def append_and_hold_meanwhile(*args: Any, **kwargs: Any) -> purge.Plan:
        planned = found(*args, **kwargs)
        uow = UnitOfWork(server.db, account_id=account_id, actor=SYSTEM_CLI, context=RequestContext())

        def meanwhile() -> None:
            appended.append(lists.create_list(uow, "made while the plan was found").id)
            hold = retention.create_hold(
                UnitOfWork(server.db, account_id=account_id, actor=SYSTEM_CLI, context=RequestContext()),
                reason="placed while the plan was found",
                until=NOW - 700 * DAY,
            )
            held.append(hold.id)

        worker = threading.Thread(target=meanwhile)
        worker.start()
        worker.join(timeout=10)
        assert not worker.is_alive(), "an append waited for the purge's plan"
        return planned

    monkeypatch.setattr(purge, "plan", append_and_hold_meanwhile)
    result = retention.purge_account(server.db, account_id)
    assert appended and held
    with server.db.for_account(account_id).reader() as session:
        kept = (
            session.execute(
                select(ActivityEntry.seq).where(
                    ActivityEntry.account_id == account_id, ActivityEntry.occurred_at <= NOW - 700 * DAY
                )
            )
            .scalars()
            .all()
        )
        assert kept, "the hold placed during the plan kept nothing"
        assert set(kept) & {s for lo, hi in result.plan.ranges for s in range(lo, hi + 1)}
        verdict = verify_account(session, account_id)
        assert verdict.ok, verdict
