"""Prove it: the log is append-only in the database, every tampering drill is caught at the right seq, and
an untouched log raises no alarm. The drills edit the database behind the application's back, as its owner.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from activitylog.config import Settings
from activitylog.db.base import Database, connect
from activitylog.db.migrate import alembic_config, upgrade
from activitylog.errors import InvalidInput
from activitylog.log.checkpoints import CheckpointSigner, HistoryRejected, memory_dir
from activitylog.log.csv_sql import CSV_COLUMNS
from activitylog.log.record import RequestContext, ip_key
from activitylog.log.signing import load_signer, rotate_key_file
from activitylog.log.verify import Verdict, verify_account
from activitylog.log.verify_export import open_checkpoint, parse_verifier_key
from activitylog.services import lists
from activitylog.services.uow import SYSTEM_CLI, UnitOfWork
from conftest import (
    Tenant,
    app_role_on,
    behind_the_apps_back,
    make_tenant,
    run_cli,
)
from drills import entry_row, forge, rebuild_tree, rechain_from, set_entry

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
    "accounts",
    "users",
    "api_keys",
    "auth_sessions",
    "lists",
    "contacts",
    "segments",
    "broadcasts",
    "suppressions",
    "sending_domains",
    "reputation_rules",
    "deliveries",
    "delivery_events",
    "activity_heads",
    "activity_entries",
    "activity_checkpoints",
)  # fmt: skip  (as 0006 found them; 0008 replaced activity_checkpoints with activity_tree)


PROTECTIONS: dict[str, dict[str, set[str]]] = {
    "0027": {"sqlite": set(), "postgresql": set()},  # a key's cascade dropped (saved views)
    "0026": {"sqlite": set(), "postgresql": set()},  # a key dropped; the rebuilt table keeps its guards
    "0025": {  # PostgreSQL: the log's deletes checked once per statement (the row guard lets them through)
        "sqlite": set(),
        "postgresql": {f"{t}_deletes_checked" for t in ("activity_entries", "activity_affected")},
    },
    "0024": {"sqlite": set(), "postgresql": set()},  # an index only
    "0023": {  # SQLite: v1 and v2 entries' text in indexes apart (no PostgreSQL change)
        "sqlite": {"activity_search_add", "activity_search_personal_add"},
        "postgresql": set(),
    },
    "0022": {"sqlite": set(), "postgresql": set()},  # an index only
    "0021": {"sqlite": set(), "postgresql": set()},  # a column of the counts cursor dropped: no trigger
    "0020": {"sqlite": set(), "postgresql": set()},  # the erasure function takes batches: no trigger
    "0019": {"sqlite": set(), "postgresql": set()},  # indexes only
    "0018": {  # verify runs, shared by the web processes: an account's rows, under row-level security
        "sqlite": set(),
        "postgresql": {f"verify_runs.{p}" for p in ("tenant_rows", "system_reads")},
    },
    "0017": {  # saved views: an account's rows (each user's own), under row-level security
        "sqlite": set(),
        "postgresql": {f"saved_views.{p}" for p in ("tenant_rows", "system_reads")},
    },
    "0015": {  # the derived counts of the timeline and facets, and their cursors: an account's rows
        "sqlite": set(),
        "postgresql": {
            f"{t}.{p}"
            for t in ("activity_counts", "activity_counts_cursors")
            for p in ("tenant_rows", "system_reads")
        },
    },
    "0014": {  # the records of erased entries: append-only, an account's rows
        "sqlite": {"activity_erased_no_update", "activity_erased_no_delete"},
        "postgresql": {"activity_erased_no_change", "activity_erased_no_truncate"}
        | {f"activity_erased.{p}" for p in ("tenant_rows", "system_reads")},
    },
    "0013": {  # alerts, their policies and the detectors' derived state: an account's rows
        "sqlite": set(),
        "postgresql": {
            f"{t}.{p}"
            for t in ("alerts", "alert_policies", "alert_cursors", "alert_credentials")
            for p in ("tenant_rows", "system_reads")
        },
    },
    "0012": {  # the tombstones of purged entries: append-only; legal holds: an account's rows
        "sqlite": {"activity_purged_no_update", "activity_purged_no_delete"},
        "postgresql": {"activity_purged_no_change", "activity_purged_no_truncate"}
        | {f"{t}.{p}" for t in ("activity_purged", "legal_holds") for p in ("tenant_rows", "system_reads")},
    },
    "0011": {  # streams, their cursors and delivery attempts: an account's rows, under row-level security
        "sqlite": set(),
        "postgresql": {
            f"{t}.{p}"
            for t in ("streams", "stream_cursors", "stream_deliveries")
            for p in ("tenant_rows", "system_reads")
        },
    },
    "0010": {  # the index of the resources each entry changed besides its own: append-only like the log
        "sqlite": {"activity_affected_no_update", "activity_affected_no_delete"},
        "postgresql": {"activity_affected_no_change", "activity_affected_no_truncate"}
        | {f"activity_affected.{p}" for p in ("tenant_rows", "system_reads")},
    },
    "0009": {"sqlite": set(), "postgresql": set()},  # sign-in failures per address: not an account's rows
    "0008": {
        "sqlite": {"activity_tree_no_update", "activity_tree_no_delete"},
        "postgresql": {"activity_tree_no_change", "activity_tree_no_truncate"}
        | {f"activity_tree.{p}" for p in ("tenant_rows", "system_reads")},
    },
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


# Protections that went with their table: 0008 replaced the old checkpoints by the Merkle tree.
DROPPED: dict[str, dict[str, set[str]]] = {
    "0008": {
        "sqlite": PROTECTIONS["0002"]["sqlite"],
        "postgresql": PROTECTIONS["0002"]["postgresql"]
        | {f"activity_checkpoints.{p}" for p in ("tenant_rows", "system_reads")},
    }
}


def test_protections_exist_after_every_migration(empty_database: Database) -> None:
    script = alembic_config(empty_database)
    from alembic.script import ScriptDirectory

    revisions = [r.revision for r in reversed(list(ScriptDirectory.from_config(script).walk_revisions()))]
    assert revisions == sorted(PROTECTIONS), "a new migration must say which protections it adds"
    expected: set[str] = set()
    for revision in revisions:
        upgrade(empty_database, revision)
        expected |= PROTECTIONS[revision][empty_database.dialect]
        expected -= DROPPED.get(revision, {}).get(empty_database.dialect, set())
        assert expected <= _triggers(empty_database), f"after {revision}"


def test_sqlite_durability_settings(tmp_path: Path) -> None:
    db = connect(f"sqlite:///{tmp_path / 'durable.db'}")
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one() >= 5000
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
            "DELETE FROM activity_tree",
            "DELETE FROM activity_affected",
        ):
            with (
                app_db.engine.connect() as conn,
                pytest.raises(Exception, match=r"permission denied|must be owner"),
            ):
                conn.execute(text(statement))
        with app_db.for_account(tenant.account_id).reader() as session:
            assert verify_account(session, tenant.account_id).ok
        app_db.dispose()


def test_a_role_that_bypasses_row_security_is_refused_as_the_app_role(db: Database) -> None:
    """Serving as a superuser or BYPASSRLS role would turn tenant isolation back into a WHERE clause."""
    if db.dialect != "postgresql":
        pytest.skip("application roles are a PostgreSQL feature")
    with db.engine.connect() as conn:
        superuser = conn.execute(text("SELECT current_user")).scalar_one()
    migrate = run_cli("migrate", "--app-role", superuser, db_url=db.url)
    assert migrate.returncode == 2 and "bypasses row-level security" in migrate.stderr, migrate.stderr


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
        row = entry_row(conn, tenant, VICTIM)
        if column == "occurred_at":  # one microsecond later, stored the way the engine stores it
            raw = row["occurred_at"]
            later = (
                raw[:-1] + str((int(raw[-1]) + 1) % 10)
                if isinstance(raw, str)
                else raw + timedelta(microseconds=1)
            )
            set_entry(conn, tenant, VICTIM, occurred_at=later)
        elif column == "ip":
            set_entry(conn, tenant, VICTIM, ip="203.0.113.10")
        elif column == "ip_key":
            set_entry(conn, tenant, VICTIM, ip_key=ip_key("198.51.100.1"))
        elif column == "csv_escapes":  # a cell's guard switched off: the export would let a formula through
            set_entry(conn, tenant, VICTIM, csv_escapes=row["csv_escapes"] ^ 1)
        elif column == "on_behalf_of":
            set_entry(conn, tenant, VICTIM, on_behalf_of="api_key:key_forged")
        elif column == "account_id":  # moved into another account's log
            set_entry(conn, tenant, VICTIM, account_id=elsewhere)
        else:
            set_entry(conn, tenant, VICTIM, **{column: _flip(row[column])})
    verdict = _verdict(db, tenant)
    assert not verdict.ok and verdict.first_bad_seq == VICTIM, verdict


@pytest.mark.parametrize("victim", [1, VICTIM], ids=["first", "middle"])
def test_any_flipped_csv_escapes_bit_is_caught(db: Database, tenant: Tenant, victim: int) -> None:
    """Every cell's two bits, the first entry of a walk (every cell recomputed) and a later one (repeating
    cells memoised, the hash cells known to need none) alike."""
    _drill_account(db, tenant)
    for bit in range(2 * len(CSV_COLUMNS)):
        with behind_the_apps_back(db) as conn:
            honest = entry_row(conn, tenant, victim)["csv_escapes"]
            set_entry(conn, tenant, victim, csv_escapes=honest ^ (1 << bit))
        verdict = _verdict(db, tenant)
        assert not verdict.ok and verdict.first_bad_seq == victim, (CSV_COLUMNS[bit // 2], bit % 2, verdict)
        with behind_the_apps_back(db) as conn:
            set_entry(conn, tenant, victim, csv_escapes=honest)
    assert _verdict(db, tenant).ok


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
        a, b = entry_row(conn, tenant, VICTIM), entry_row(conn, tenant, VICTIM + 1)
        keep = {"account_id", "seq"}
        set_entry(conn, tenant, VICTIM, **{k: v for k, v in b.items() if k not in keep})
        set_entry(conn, tenant, VICTIM + 1, **{k: v for k, v in a.items() if k not in keep})
    verdict = _verdict(db, tenant)
    assert not verdict.ok and verdict.first_bad_seq == VICTIM, verdict


def test_a_forged_replacement_with_a_valid_prev_hash_is_caught(db: Database, tenant: Tenant) -> None:
    _drill_account(db, tenant)
    with behind_the_apps_back(db) as conn:
        row = entry_row(conn, tenant, VICTIM)
        forged = forge(
            row,
            row["prev_hash"],
            resource_name="Forged",
            changes='{"name":{"from":null,"to":"Forged"}}',
            summary='Created list "Forged"',
        )
        set_entry(
            conn, tenant, VICTIM, **{k: forged[k] for k in ("resource_name", "changes", "summary", "hash")}
        )
    verdict = _verdict(db, tenant)
    assert not verdict.ok and verdict.first_bad_seq == VICTIM, verdict
    assert "replaced" in (verdict.reason or "") or "Merkle tree" in (verdict.reason or "")


def test_a_forged_entry_appended_with_a_valid_prev_hash_is_caught(db: Database, tenant: Tenant) -> None:
    _drill_account(db, tenant)
    with behind_the_apps_back(db) as conn:
        last = entry_row(conn, tenant, HEAD)
        forged = forge({**last, "seq": HEAD + 1}, last["hash"], resource_name="Forged")
        columns = ", ".join(forged)
        conn.execute(
            text(f"INSERT INTO activity_entries ({columns}) VALUES ({', '.join(':' + k for k in forged)})"),
            forged,
        )
    verdict = _verdict(db, tenant)
    assert not verdict.ok and verdict.first_bad_seq == HEAD + 1, verdict


def _signer(tmp_path: Path) -> CheckpointSigner:
    settings = Settings(signing_key_file=str(tmp_path / "drill.key"))
    return CheckpointSigner(settings, load_signer(settings))


def _anchored(db: Database, tenant: Tenant, signer: CheckpointSigner) -> Verdict:
    with db.reader() as session:
        return verify_account(session, tenant.account_id, signer.last_signed(tenant.account_id))


def test_a_rebuilt_log_is_caught_by_the_signers_memory(db: Database, tenant: Tenant, tmp_path: Path) -> None:
    """The forger edits an entry, re-chains and rebuilds the tree: every derived check passes; only the
    checkpoint kept outside the database still knows the history, and the signer will not sign it."""
    _drill_account(db, tenant)
    signer = _signer(tmp_path)
    signer.sign(db, tenant.account_id)
    with behind_the_apps_back(db) as conn:
        rechain_from(conn, tenant, VICTIM, ip="192.0.2.66", ip_key=ip_key("192.0.2.66"))
        rebuild_tree(conn, tenant)
    assert _verdict(db, tenant).ok  # without the anchor, a consistent forgery is indistinguishable
    verdict = _anchored(db, tenant, signer)
    assert not verdict.ok and "not the one the signer signed" in (verdict.reason or ""), verdict
    with pytest.raises(HistoryRejected, match="not the ones the signer signed"):
        signer.sign(db, tenant.account_id)


@pytest.mark.parametrize("keep", [0, VICTIM], ids=["everything", "the tail"])
def test_a_truncated_log_is_caught_by_the_signers_memory(
    db: Database, tenant: Tenant, tmp_path: Path, keep: int
) -> None:
    _drill_account(db, tenant)
    signer = _signer(tmp_path)
    signer.sign(db, tenant.account_id)
    with behind_the_apps_back(db) as conn:
        for table in ("activity_entries", "activity_tree"):
            conn.execute(
                text(f"DELETE FROM {table} WHERE account_id = :a AND seq > :s"),
                {"a": tenant.account_id, "s": keep},
            )
        if keep:
            rebuild_tree(conn, tenant)
        else:
            conn.execute(
                text("UPDATE activity_heads SET seq = 0, hash = :g, tree = NULL WHERE account_id = :a"),
                {"g": "0" * 64, "a": tenant.account_id},
            )
    verdict = _anchored(db, tenant, signer)
    assert not verdict.ok and verdict.first_bad_seq == keep + 1, verdict
    assert f"signer signed a tree of {HEAD} entries" in (verdict.reason or "")
    with pytest.raises((HistoryRejected, InvalidInput)):
        signer.sign(db, tenant.account_id)


def test_a_forged_signer_memory_is_refused(db: Database, tenant: Tenant, tmp_path: Path) -> None:
    """Replacing the remembered checkpoint needs the signing key: one signed by another key is refused."""
    _drill_account(db, tenant)
    signer = _signer(tmp_path)
    signer.sign(db, tenant.account_id)
    impostor = CheckpointSigner(
        Settings(signing_key_file=str(tmp_path / "impostor.key")),
        load_signer(Settings(signing_key_file=str(tmp_path / "impostor.key"))),
    )
    forged_note = impostor.sign(db, tenant.account_id)
    (note_file,) = memory_dir(signer.settings).glob("*.note")
    note_file.write_text(forged_note)
    with pytest.raises(HistoryRejected, match="not signed by a pinned key"):
        signer.last_signed(tenant.account_id)


def test_a_tampered_tree_hash_is_caught(db: Database, tenant: Tenant) -> None:
    _drill_account(db, tenant)
    with behind_the_apps_back(db) as conn:
        conn.execute(
            text("UPDATE activity_tree SET hashes = :h WHERE account_id = :a AND seq = :s"),
            {"h": b"\x00" * 32, "a": tenant.account_id, "s": VICTIM},
        )
    verdict = _verdict(db, tenant)
    assert not verdict.ok and verdict.first_bad_seq == VICTIM and "Merkle tree" in (verdict.reason or "")


def test_non_canonical_changes_text_is_caught(db: Database, tenant: Tenant) -> None:
    """The same object with a duplicate key or other spacing hashes the same, but is not what the entry
    says, and every export would show it."""
    _drill_account(db, tenant)
    with behind_the_apps_back(db) as conn:
        row = entry_row(conn, tenant, VICTIM)
        name = json.loads(row["changes"])["name"]["to"]
        duplicated = '{"name":{"from":null,"to":"Forged"},' + row["changes"][1:]
        assert json.loads(duplicated)["name"]["to"] == name  # the last duplicate wins when parsed
        set_entry(conn, tenant, VICTIM, changes=duplicated)
    verdict = _verdict(db, tenant)
    assert not verdict.ok and verdict.first_bad_seq == VICTIM and "canonical" in (verdict.reason or "")


def test_no_false_alarms_on_a_busy_untouched_log(db: Database, tenant: Tenant, tmp_path: Path) -> None:
    signer = _signer(tmp_path)
    uow = UnitOfWork(db, account_id=tenant.account_id, actor=SYSTEM_CLI, context=RequestContext())
    for i in range(60):
        lst = lists.create_list(uow, f"List {i}")
        lists.update_list(uow, lst.id, {"name": f"Renamed {i}"})
        if i % 15 == 0:
            signer.sign(db, tenant.account_id)
    verdict = _anchored(db, tenant, signer)
    assert verdict.ok and verdict.checked == 3 + 120, verdict
    assert signer.last_signed(tenant.account_id).size == 3 + 2 * 46  # type: ignore[union-attr]


def test_key_rotation_keeps_the_signers_memory_verifiable(
    db: Database, tenant: Tenant, tmp_path: Path
) -> None:
    settings = Settings(database_url=db.url, signing_key_file=str(tmp_path / "rotating.key"))
    _drill_account(db, tenant)
    old = load_signer(settings)
    CheckpointSigner(settings, old).sign(db, tenant.account_id)
    path = rotate_key_file(settings)
    assert path.exists() and list(tmp_path.glob(f"rotating.key.retired-{old.key_id}"))
    new = CheckpointSigner(settings, load_signer(settings))
    assert new.signer.key_id != old.key_id
    remembered = new.last_signed(tenant.account_id)  # signed by the retired key, pinned beside the new one
    assert remembered is not None and remembered.size == HEAD
    lists.create_list(
        UnitOfWork(db, account_id=tenant.account_id, actor=SYSTEM_CLI, context=RequestContext()), "X"
    )
    note = new.sign(db, tenant.account_id)
    key = parse_verifier_key(new.verifier_key(tenant.account_id))
    assert open_checkpoint(note, key).size == HEAD + 1
    assert _anchored(db, tenant, new).ok
