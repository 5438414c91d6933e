"""Prove it: the log is append-only in the database, every tampering drill is caught at the right seq, and
an untouched log raises no alarm. The drills edit the database behind the application's back, as its owner.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, select, text

from activitylog.config import Settings
from activitylog.db.base import Database, connect
from activitylog.db.migrate import alembic_config, upgrade
from activitylog.db.models import SigningKey
from activitylog.log.chain import entry_hash, format_instant
from activitylog.log.checkpoints import checkpoint_account
from activitylog.log.record import RequestContext, ip_key
from activitylog.log.signing import load_signer, rotate_key_file
from activitylog.log.verify import Verdict, verify_account
from activitylog.services import lists
from activitylog.services.uow import SYSTEM_CLI, UnitOfWork
from conftest import (
    PG_ENV,
    Tenant,
    app_role_on,
    behind_the_apps_back,
    fresh_postgres_database,
    make_tenant,
    run_auditor_tool,
)

LISTS = 8  # the drills' account: seq 1-3 (account, owner, key), then 8 list creations: seq 4-11
HEAD = 3 + LISTS
VICTIM = 6


# ---- append-only and tenant-only, in the database itself ----
def _triggers(db: Database) -> set[str]:
    """Triggers, and on PostgreSQL the row-level policies (``table.policy``) of tables that force them."""
    with db.engine.connect() as conn:
        if db.dialect == "sqlite":
            return set(conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger'")).scalars())
        triggers = set(conn.execute(text("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")).scalars())
        policies = conn.execute(
            text(
                "SELECT c.relname || '.' || p.polname FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid "
                "WHERE c.relrowsecurity AND c.relforcerowsecurity"
            )
        ).scalars()
        return triggers | set(policies)


TENANT_TABLES = (
    "accounts", "users", "api_keys", "auth_sessions", "lists", "contacts", "segments", "broadcasts",
    "suppressions", "sending_domains", "reputation_rules", "deliveries", "delivery_events",
    "activity_heads", "activity_entries", "activity_checkpoints",
)  # fmt: skip


PROTECTIONS = {
    "0007": {"sqlite": set(), "postgresql": set()},  # csv_escapes: one added column
    "0001": {
        "sqlite": {"activity_entries_no_update", "activity_entries_no_delete"},
        "postgresql": {"activity_entries_no_change", "activity_entries_no_truncate"},
    },
    "0006": {  # row-level security: each tenant table shows a transaction only its account's rows
        "sqlite": set(),
        "postgresql": {f"{t}.{p}" for t in TENANT_TABLES for p in ("tenant_rows", "system_reads")},
    },
    "0005": {"sqlite": set(), "postgresql": set()},  # indexes only
    "0004": {"sqlite": set(), "postgresql": set()},  # deliveries and events: bookkeeping, not the log
    "0003": {"sqlite": set(), "postgresql": set()},  # the text-search index adds none
    "0002": {
        "sqlite": {"activity_checkpoints_no_update", "activity_checkpoints_no_delete"},
        "postgresql": {"activity_checkpoints_no_change", "activity_checkpoints_no_truncate"},
    },
}


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'fresh.db'}"
        database = connect(url)
        yield database
        database.dispose()
        return
    server = os.environ.get(PG_ENV)
    if not server:
        pytest.skip(f"PostgreSQL tests skipped: set {PG_ENV}")
    for url in fresh_postgres_database(server):
        database = connect(url)
        yield database
        database.dispose()


def test_protections_exist_after_every_migration(empty_database: Database) -> None:
    script = alembic_config(empty_database)
    from alembic.script import ScriptDirectory

    revisions = [r.revision for r in reversed(list(ScriptDirectory.from_config(script).walk_revisions()))]
    assert revisions == sorted(PROTECTIONS), "a new migration must say which protections it adds"
    expected: set[str] = set()
    for revision in revisions:
        upgrade(empty_database, revision)
        expected |= PROTECTIONS[revision][empty_database.dialect]
        assert expected <= _triggers(empty_database), f"after {revision}"


def test_sqlite_durability_settings(tmp_path: Path) -> None:
    db = connect(f"sqlite:///{tmp_path / 'durable.db'}")
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    statements: list[str] = []
    from sqlalchemy import event

    event.listen(db.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    with db.writer() as session:
        session.execute(text("SELECT 1"))
        session.commit()
    with db.reader() as session:
        session.execute(text("SELECT 1"))
    assert statements[:2] == ["BEGIN IMMEDIATE", "SELECT 1"]  # writers take the write lock at BEGIN
    assert "BEGIN DEFERRED" in statements  # readers do not
    db.dispose()


def test_the_postgres_app_role_can_only_read_and_append_the_log(db: Database, tenant: Tenant) -> None:
    if db.dialect != "postgresql":
        pytest.skip("application roles are a PostgreSQL feature")
    with app_role_on(db) as url:
        app_db = connect(url)
        uow = UnitOfWork(app_db, account_id=tenant.account_id, actor=SYSTEM_CLI, context=RequestContext())
        lists.create_list(uow, "Made by the app role")  # the app can still do its work
        for statement in (
            "UPDATE activity_entries SET ip = NULL",
            "DELETE FROM activity_entries",
            "TRUNCATE activity_entries",
            "ALTER TABLE activity_entries DISABLE TRIGGER USER",
            "DELETE FROM activity_checkpoints",
        ):
            with (
                app_db.engine.connect() as conn,
                pytest.raises(Exception, match=r"permission denied|must be owner"),
            ):
                conn.execute(text(statement))
        with app_db.for_account(tenant.account_id).reader() as session:
            assert verify_account(session, tenant.account_id).ok
        app_db.dispose()


def test_truncate_is_refused_even_for_the_owner(db: Database) -> None:
    if db.dialect != "postgresql":
        pytest.skip("SQLite has no TRUNCATE")
    with db.engine.connect() as conn, pytest.raises(Exception, match="append-only"):
        conn.execute(text("TRUNCATE activity_entries CASCADE"))


# ---- tampering drills ----
def _drill_account(db: Database, tenant: Tenant) -> None:
    uow = UnitOfWork(
        db,
        account_id=tenant.account_id,
        actor=SYSTEM_CLI,
        context=RequestContext(ip="203.0.113.9", user_agent="drill", request_id="r"),
    )
    for i in range(LISTS):
        lists.create_list(uow, f"List {i}")


def _verdict(db: Database, tenant: Tenant) -> Verdict:
    with db.reader() as session:
        return verify_account(session, tenant.account_id)


def _row(conn: Connection, tenant: Tenant, seq: int) -> dict[str, Any]:
    return dict(
        conn.execute(
            text("SELECT * FROM activity_entries WHERE account_id = :a AND seq = :s"),
            {"a": tenant.account_id, "s": seq},
        )
        .mappings()
        .one()
    )


def _set(conn: Connection, tenant: Tenant, seq: int, **values: Any) -> None:
    assignments = ", ".join(f"{k} = :{k}" for k in values)
    conn.execute(
        text(f"UPDATE activity_entries SET {assignments} WHERE account_id = :a AND seq = :s"),
        {**values, "a": tenant.account_id, "s": seq},
    )


def _flip(value: str) -> str:
    """One character changed, the way a stray byte would."""
    return value[:-1] + ("A" if value[-1] != "A" else "B")


FIELDS = [
    "actor_type",
    "actor_id",
    "actor_name",
    "user_agent",
    "action",
    "resource_type",
    "resource_id",
    "resource_name",
    "changes",
    "request_id",
    "summary",
    "prev_hash",
    "hash",
]


@pytest.mark.parametrize(
    "column", [*FIELDS, "occurred_at", "ip", "ip_key", "csv_escapes", "on_behalf_of", "account_id"]
)
def test_a_flipped_field_is_caught_at_its_seq(db: Database, tenant: Tenant, column: str) -> None:
    _drill_account(db, tenant)
    assert _verdict(db, tenant).ok  # zero false alarms before the drill
    elsewhere = make_tenant(tenant.server).account_id if column == "account_id" else None
    with behind_the_apps_back(db) as conn:
        row = _row(conn, tenant, VICTIM)
        if column == "occurred_at":  # one microsecond later, stored the way the engine stores it
            raw = row["occurred_at"]
            later = (
                raw[:-1] + str((int(raw[-1]) + 1) % 10)
                if isinstance(raw, str)
                else raw + timedelta(microseconds=1)
            )
            _set(conn, tenant, VICTIM, occurred_at=later)
        elif column == "ip":
            _set(conn, tenant, VICTIM, ip="203.0.113.10")
        elif column == "ip_key":
            _set(conn, tenant, VICTIM, ip_key=ip_key("198.51.100.1"))
        elif column == "csv_escapes":  # a cell's guard switched off: the export would let a formula through
            _set(conn, tenant, VICTIM, csv_escapes=row["csv_escapes"] ^ 1)
        elif column == "on_behalf_of":
            _set(conn, tenant, VICTIM, on_behalf_of="api_key:key_forged")
        elif column == "account_id":  # moved into another account's log
            _set(conn, tenant, VICTIM, account_id=elsewhere)
        else:
            _set(conn, tenant, VICTIM, **{column: _flip(row[column])})
    verdict = _verdict(db, tenant)
    assert not verdict.ok and verdict.first_bad_seq == VICTIM, verdict


@pytest.mark.parametrize("victim", [1, VICTIM, HEAD], ids=["first", "middle", "last"])
def test_a_deleted_entry_is_caught(db: Database, tenant: Tenant, victim: int) -> None:
    _drill_account(db, tenant)
    with behind_the_apps_back(db) as conn:
        conn.execute(
            text("DELETE FROM activity_entries WHERE account_id = :a AND seq = :s"),
            {"a": tenant.account_id, "s": victim},
        )
    verdict = _verdict(db, tenant)
    assert not verdict.ok and verdict.first_bad_seq == victim, verdict


def test_two_swapped_entries_are_caught(db: Database, tenant: Tenant) -> None:
    _drill_account(db, tenant)
    with behind_the_apps_back(db) as conn:
        a, b = _row(conn, tenant, VICTIM), _row(conn, tenant, VICTIM + 1)
        keep = {"account_id", "seq"}
        _set(conn, tenant, VICTIM, **{k: v for k, v in b.items() if k not in keep})
        _set(conn, tenant, VICTIM + 1, **{k: v for k, v in a.items() if k not in keep})
    verdict = _verdict(db, tenant)
    assert not verdict.ok and verdict.first_bad_seq == VICTIM, verdict


def _forge(row: dict[str, Any], prev_hash: str, **changes: Any) -> dict[str, Any]:
    """A forged entry whose prev_hash links and whose hash is computed correctly by the forger."""
    forged = {**row, **changes, "prev_hash": prev_hash}
    fields = {
        **forged,
        "occurred_at": format_instant(_aware(forged["occurred_at"])),
        "changes": json.loads(forged["changes"]),
    }
    forged["hash"] = entry_hash(prev_hash, fields)
    return forged


def _aware(value: Any) -> Any:
    from datetime import UTC, datetime

    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def test_a_forged_replacement_with_a_valid_prev_hash_is_caught(db: Database, tenant: Tenant) -> None:
    _drill_account(db, tenant)
    with behind_the_apps_back(db) as conn:
        row = _row(conn, tenant, VICTIM)
        forged = _forge(
            row,
            row["prev_hash"],
            resource_name="Forged",
            changes='{"name":{"from":null,"to":"Forged"}}',
            summary='Created list "Forged"',
        )
        _set(conn, tenant, VICTIM, **{k: forged[k] for k in ("resource_name", "changes", "summary", "hash")})
    verdict = _verdict(db, tenant)
    assert not verdict.ok and verdict.first_bad_seq == VICTIM, verdict
    assert "replaced" in (verdict.reason or "")


def test_a_forged_entry_appended_with_a_valid_prev_hash_is_caught(db: Database, tenant: Tenant) -> None:
    _drill_account(db, tenant)
    with behind_the_apps_back(db) as conn:
        last = _row(conn, tenant, HEAD)
        forged = _forge({**last, "seq": HEAD + 1}, last["hash"], resource_name="Forged")
        columns = ", ".join(forged)
        conn.execute(
            text(f"INSERT INTO activity_entries ({columns}) VALUES ({', '.join(':' + k for k in forged)})"),
            forged,
        )
    verdict = _verdict(db, tenant)
    assert not verdict.ok and verdict.first_bad_seq == HEAD + 1, verdict


def _signer(tmp_path: Path) -> Any:
    return load_signer(Settings(signing_key_file=str(tmp_path / "drill.key")))


def test_a_truncated_tail_behind_a_held_checkpoint_is_caught(
    db: Database, tenant: Tenant, tmp_path: Path
) -> None:
    _drill_account(db, tenant)
    held = checkpoint_account(db, tenant.account_id, _signer(tmp_path))
    assert held is not None and held.seq == HEAD
    keep = VICTIM
    with behind_the_apps_back(db) as conn:
        conn.execute(
            text("DELETE FROM activity_entries WHERE account_id = :a AND seq > :s"),
            {"a": tenant.account_id, "s": keep},
        )
        last = _row(conn, tenant, keep)
        conn.execute(
            text("UPDATE activity_heads SET seq = :s, hash = :h WHERE account_id = :a"),
            {"s": keep, "h": last["hash"], "a": tenant.account_id},
        )
    verdict = _verdict(db, tenant)
    assert not verdict.ok and verdict.first_bad_seq == keep + 1, verdict
    assert f"vouches for seq {HEAD}" in (verdict.reason or "")


def test_a_rewritten_chain_is_caught_by_the_checkpoint(db: Database, tenant: Tenant, tmp_path: Path) -> None:
    """Rewrite an entry and recompute every later hash: the chain links again, but not to the signed head."""
    _drill_account(db, tenant)
    checkpoint_account(db, tenant.account_id, _signer(tmp_path))
    with behind_the_apps_back(db) as conn:
        prev = _row(conn, tenant, VICTIM - 1)["hash"]
        for seq in range(VICTIM, HEAD + 1):
            row = _row(conn, tenant, seq)
            extra = {"ip": "192.0.2.66", "ip_key": ip_key("192.0.2.66")} if seq == VICTIM else {}
            forged = _forge(row, prev, **extra)
            _set(conn, tenant, seq, **{k: forged[k] for k in ("ip", "ip_key", "prev_hash", "hash")})
            prev = forged["hash"]
        conn.execute(
            text("UPDATE activity_heads SET hash = :h WHERE account_id = :a"),
            {"h": prev, "a": tenant.account_id},
        )
    verdict = _verdict(db, tenant)
    assert not verdict.ok and verdict.first_bad_seq == HEAD, verdict
    assert "signed checkpoint" in (verdict.reason or "")


def test_a_tampered_checkpoint_is_caught(db: Database, tenant: Tenant, tmp_path: Path) -> None:
    _drill_account(db, tenant)
    held = checkpoint_account(db, tenant.account_id, _signer(tmp_path))
    assert held is not None
    with behind_the_apps_back(db) as conn:
        conn.execute(
            text("UPDATE activity_checkpoints SET hash = :h WHERE account_id = :a AND seq = :s"),
            {"h": "0" * 64, "a": tenant.account_id, "s": held.seq},
        )
    verdict = _verdict(db, tenant)
    assert not verdict.ok and verdict.first_bad_seq == held.seq and "signature" in (verdict.reason or "")


def test_checkpoints_chain_and_verify_through_the_api(tenant: Tenant) -> None:
    with tenant.key_client() as client:
        client.post("/api/v1/lists", json={"name": "One"})
        first = client.get("/api/v1/activity/export/manifest", params={"as_of_seq": 1}).json()["checkpoint"]
        client.post("/api/v1/lists", json={"name": "Two"})
        second = client.get("/api/v1/activity/export/manifest", params={"as_of_seq": 1}).json()["checkpoint"]
        listed = client.get("/api/v1/activity/checkpoints").json()["data"]
        keys = client.get("/api/v1/activity/checkpoints/public-key").json()
        assert client.get("/api/v1/activity/verify").json()["ok"] is True
    assert second["previous_signature"] == first["signature"] and second["seq"] > first["seq"]
    assert [c["seq"] for c in listed[:2]] == [second["seq"], first["seq"]]
    current = next(k for k in keys["keys"] if k["id"] == keys["current"])
    assert keys["current"] == second["key_id"] and current["pem"].startswith("-----BEGIN PUBLIC KEY")

    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    public = load_pem_public_key(current["pem"].encode())
    signed = {k: second[k] for k in ("account_id", "seq", "hash", "time", "previous_signature", "key_id")}
    import base64

    public.verify(
        base64.b64decode(second["signature"]),  # type: ignore[union-attr, call-arg]
        json.dumps(signed, sort_keys=True, separators=(",", ":")).encode(),
    )


# ---- the export, checked by the standalone verifier with its signed manifest ----
def test_export_with_manifest_proves_rows_were_not_removed(tenant: Tenant, tmp_path: Path) -> None:
    with tenant.key_client() as client:
        for i in range(5):
            client.post("/api/v1/lists", json={"name": f"L{i}"})
            client.post("/api/v1/sending-domains", json={"domain": f"m{i}.example.com"})
        params = {"resource_type": "list"}
        export = client.get("/api/v1/activity/export", params=params)
        as_of = export.headers["x-activity-as-of-seq"]
        assert 'rel="describedby"' in export.headers["link"]
        manifest = client.get(
            "/api/v1/activity/export/manifest", params={**params, "as_of_seq": as_of}
        ).json()
        client.post("/api/v1/lists", json={"name": "After the export"})  # not part of the slice as of then
        again = client.get("/api/v1/activity/export/manifest", params={**params, "as_of_seq": as_of}).json()
        keys = client.get("/api/v1/activity/checkpoints/public-key").json()
        pem = next(k["pem"] for k in keys["keys"] if k["id"] == keys["current"])
    assert again["slice_digest"] == manifest["slice_digest"] and manifest["rows"] == 5
    csv_path, manifest_path, key_path = tmp_path / "e.csv", tmp_path / "e.manifest.json", tmp_path / "k.pem"
    csv_path.write_bytes(export.content)
    manifest_path.write_text(json.dumps(manifest))
    key_path.write_text(pem)
    args = ("--manifest", str(manifest_path), "--public-key", str(key_path))

    ok = run_auditor_tool(str(csv_path), *args, stdlib_only=False)
    assert ok.returncode == 0 and "MANIFEST OK: all 5 rows" in ok.stdout, ok.stdout + ok.stderr

    lines = export.content.decode().splitlines(keepends=True)
    csv_path.write_text("".join(lines[:2] + lines[3:]))  # one row removed: the chain alone sees only a gap
    removed = run_auditor_tool(str(csv_path), *args, stdlib_only=False)
    assert removed.returncode == 1 and "rows were removed or added" in removed.stdout

    csv_path.write_text("".join([*lines[:2], lines[2].replace("L1", "LX", 1), *lines[3:]]))
    altered = run_auditor_tool(str(csv_path), *args, stdlib_only=False)
    seq = lines[2].split(",")[1]
    assert altered.returncode == 1 and f"TAMPERED: seq {seq}" in altered.stdout

    csv_path.write_bytes(export.content)
    manifest_path.write_text(json.dumps({**manifest, "rows": 4}))
    forged = run_auditor_tool(str(csv_path), *args, stdlib_only=False)
    assert forged.returncode == 1 and "manifest's signature does not verify" in forged.stdout


def test_no_false_alarms_on_a_busy_untouched_log(db: Database, tenant: Tenant, tmp_path: Path) -> None:
    signer = _signer(tmp_path)
    uow = UnitOfWork(db, account_id=tenant.account_id, actor=SYSTEM_CLI, context=RequestContext())
    for i in range(60):
        lst = lists.create_list(uow, f"List {i}")
        lists.update_list(uow, lst.id, {"name": f"Renamed {i}"})
        if i % 15 == 0:
            checkpoint_account(db, tenant.account_id, signer)
    verdict = _verdict(db, tenant)
    assert verdict.ok and verdict.checked == 3 + 120, verdict


def test_key_rotation_keeps_old_checkpoints_verifiable(db: Database, tenant: Tenant, tmp_path: Path) -> None:
    settings = Settings(database_url=db.url, signing_key_file=str(tmp_path / "rotating.key"))
    _drill_account(db, tenant)
    old = load_signer(settings)
    first = checkpoint_account(db, tenant.account_id, old)
    path = rotate_key_file(settings)
    assert path.exists() and list(tmp_path.glob(f"rotating.key.retired-{old.key_id}"))
    new = load_signer(settings)
    assert new.key_id != old.key_id
    lists.create_list(
        UnitOfWork(db, account_id=tenant.account_id, actor=SYSTEM_CLI, context=RequestContext()), "X"
    )
    second = checkpoint_account(db, tenant.account_id, new)
    assert first is not None and second is not None
    assert (first.key_id, second.key_id) == (old.key_id, new.key_id)
    assert second.previous_signature == first.signature  # the line of checkpoints goes on across keys
    assert _verdict(db, tenant).ok  # both keys' signatures verify
    with db.reader() as session:
        keys = {k.id: k for k in session.scalars(select(SigningKey))}
    assert keys[old.key_id].retired_at is not None and keys[new.key_id].retired_at is None
