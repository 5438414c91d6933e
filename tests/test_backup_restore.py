"""The restore drill docs/deploy.md describes, as an operator runs it on both engines: back the database up
(SQLite's online backup, ``pg_dump``), let the log grow and be signed, restore the backup. The signer
remembers the longer tree it signed, so it refuses the restored, shorter one and ``verify`` fails naming
the sizes and raises the account's ``integrity.failure`` alert (an ``alert.raise`` entry, which the
restored log then holds), until the operator accepts the restored history on purpose, which is itself
logged."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import make_url, select

from activitylog.db.base import Database
from activitylog.db.models import ActivityEntry, Alert, ChainHead
from conftest import run_cli


def cli(db: Database, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, db_url=db.url)


def ok(db: Database, *args: str) -> str:
    done = cli(db, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


@contextmanager
def backup(db: Database, where: Path) -> Iterator[None]:
    """Take a backup now; restore it over the live database when the block ends."""
    url = make_url(db.url)
    if url.get_backend_name() == "sqlite":
        copy = where / "backup.db"
        with sqlite3.connect(str(url.database)) as live, sqlite3.connect(copy) as saved:
            live.backup(saved)
        yield
        db.dispose()
        with sqlite3.connect(copy) as saved, sqlite3.connect(str(url.database)) as live:
            saved.backup(live)
        return
    libpq = url.set(drivername="postgresql").render_as_string(hide_password=False)
    dump = where / "backup.sql"
    subprocess.run(["pg_dump", "--clean", "--if-exists", "-f", str(dump), libpq], check=True)
    yield
    db.dispose()
    subprocess.run(
        ["psql", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(dump), libpq], check=True, capture_output=True
    )


def head(db: Database, account_id: str) -> int:
    with db.system().reader() as session:
        return session.execute(select(ChainHead.seq).where(ChainHead.account_id == account_id)).scalar_one()


def entries_after(db: Database, account_id: str, seq: int) -> list[ActivityEntry]:
    with db.for_account(account_id).reader() as session:
        return list(
            session.scalars(
                select(ActivityEntry)
                .where(ActivityEntry.account_id == account_id, ActivityEntry.seq > seq)
                .order_by(ActivityEntry.seq)
            )
        )


def test_a_restored_backup_is_refused_until_accepted_and_that_is_logged(
    empty_database: Database, tmp_path: Path
) -> None:
    db = empty_database
    ok(db, "migrate")
    email = f"ops-{uuid.uuid4().hex[:8]}@example.com"
    account = json.loads(
        ok(db, "account", "create", "--name", "Ops", "--owner-email", email, "--password", "long enough")
    )["account_id"]
    ok(db, "checkpoint", "--account", account)
    with backup(db, tmp_path):
        before = head(db, account)
        for name in ("Deploy bot", "Billing sync"):
            ok(db, "api-key", "create", "--account", account, "--name", name)
        ok(db, "checkpoint", "--account", account)
        signed = head(db, account)
    assert head(db, account) == before < signed

    refused = cli(db, "checkpoint", "--account", account)
    assert refused.returncode != 0 and str(signed) in refused.stderr, refused.stderr
    for _ in range(2):  # refused each time, alerted once while the alert is open
        verdict = cli(db, "verify", "--account", account)
        assert verdict.returncode == 1 and str(signed) in verdict.stdout + verdict.stderr
    # the refused verify raised the account's integrity.failure: its alert.raise entry is the restored log's
    # first new one, the seq the signer's longer tree also had (so the tree still does not extend it)
    raised = entries_after(db, account, before)
    assert [(e.seq, e.action, e.actor_type, e.actor_id) for e in raised] == [
        (before + 1, "alert.raise", "system", "alerts")
    ]
    with db.for_account(account).reader() as session:
        alerts = list(session.scalars(select(Alert).where(Alert.account_id == account)))
    assert [(a.kind, a.status) for a in alerts] == [("integrity.failure", "open")]
    assert str(signed) in alerts[0].summary and alerts[0].seqs == [before + 1]  # the first one missing

    accepted = cli(db, "checkpoint", "--accept-history", account)
    assert accepted.returncode == 0, accepted.stderr
    # the note signs the restored tree plus what was appended to it since: the alert's entry and the
    # acceptance's own
    assert accepted.stdout.splitlines()[1] == str(before + 2)
    ok(db, "verify", "--account", account)
    ok(db, "checkpoint", "--account", account)  # and signing goes on from there
    with db.for_account(account).reader() as session:
        last = session.scalars(
            select(ActivityEntry)
            .where(ActivityEntry.account_id == account)
            .order_by(ActivityEntry.seq.desc())
        ).first()
    assert last is not None and last.action == "activity_log.update" and last.actor_type == "system"
    assert last.changes is not None and f"{signed} " in json.dumps(last.changes)
