"""The restore drill docs/deploy.md describes, as an operator runs it on both engines: back the database up
(SQLite's online backup, ``pg_dump``), let the log grow and be signed, restore the backup. The signer
remembers the longer tree it signed, so it refuses the restored, shorter one and ``verify`` fails naming
the sizes, until the operator accepts the restored history on purpose, which is itself logged."""

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
from activitylog.db.models import ActivityEntry, ChainHead
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
    verdict = cli(db, "verify", "--account", account)
    assert verdict.returncode == 1 and str(signed) in verdict.stdout + verdict.stderr

    accepted = cli(db, "checkpoint", "--accept-history", account)
    assert accepted.returncode == 0, accepted.stderr
    assert accepted.stdout.splitlines()[1] == str(
        before + 1
    )  # the note signs the restored tree plus its entry
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
