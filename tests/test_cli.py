"""The CLI end to end, as a user runs it: real processes on both engines; it logs as system:cli."""

from __future__ import annotations

import itertools
import json
import subprocess
import uuid

from sqlalchemy import select

from activitylog.db.base import Database
from activitylog.db.models import ActivityEntry
from activitylog.log.actions import ALL_ACTIONS
from conftest import run_cli


def cli(db: Database, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, db_url=db.url)


def _entries(db: Database, account_id: str) -> list[ActivityEntry]:
    with db.reader() as s:
        return list(
            s.scalars(
                select(ActivityEntry)
                .where(ActivityEntry.account_id == account_id)
                .order_by(ActivityEntry.seq)
            )
        )


def test_account_and_key_creation_are_logged_as_the_cli(db: Database) -> None:
    assert cli(db, "migrate").returncode == 0
    email = f"cli-{uuid.uuid4().hex[:8]}@example.com"
    made = cli(db, "account", "create", "--name", "Acme", "--owner-email", email, "--password", "long enough")
    assert made.returncode == 0, made.stderr
    account = json.loads(made.stdout)
    key = cli(
        db,
        "api-key",
        "create",
        "--account",
        account["account_id"],
        "--name",
        "Deploy bot",
        "--scope",
        "write",
    )
    assert key.returncode == 0, key.stderr
    issued = json.loads(key.stdout)
    assert issued["id"].startswith("key_") and issued["key"].startswith("alk_")
    entries = _entries(db, account["account_id"])
    assert [e.action for e in entries] == ["account.create", "user.create", "api_key.create"]
    assert {(e.actor_type, e.actor_id) for e in entries} == {("system", "cli")}
    assert entries[1].resource_id == account["user_id"]
    assert issued["key"] not in str([vars(e) for e in entries])

    duplicate = cli(
        db, "account", "create", "--name", "Again", "--owner-email", email, "--password", "long enough"
    )
    assert duplicate.returncode == 2 and "already" in duplicate.stderr
    short = cli(db, "account", "create", "--name", "X", "--owner-email", "a@b.example", "--password", "short")
    assert short.returncode == 2 and "--password" in short.stderr
    unknown = cli(db, "api-key", "create", "--account", "acc_nope", "--name", "K")
    assert unknown.returncode == 2 and "acc_nope" in unknown.stderr
    scope = cli(db, "api-key", "create", "--account", account["account_id"], "--name", "K", "--scope", "root")
    assert scope.returncode == 2 and "--scope" in scope.stderr


def test_demo_seeds_every_kind_of_action_and_verifies(db: Database) -> None:
    result = cli(db, "demo", "--entries", "400")
    assert result.returncode == 0, result.stderr
    seeded = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(seeded) == {"account_id", "email", "password", "api_key"}
    entries = _entries(db, seeded["account_id"])
    assert len(entries) >= 400
    actions = {e.action for e in entries}
    by_the_service = {
        "activity_log.export",
        "activity_log.update",
        "activity_log.purge",
        "alert.raise",  # by the worker's detectors as they follow the log (tests/test_alerts*.py)
        "alert.acknowledge",
        "contact.erase",  # on a subscriber's request (tests/test_erasure.py)
        "saved_view.create",  # a dashboard user's own views (tests/test_saved_views*.py)
        "saved_view.rename",
        "saved_view.delete",
    }  # on demand, or by age
    refused = {a for a in ALL_ACTIONS if a.endswith(".denied")}  # one code path for every type
    missing = ALL_ACTIONS - actions - by_the_service - refused
    assert not missing, f"demo never performs {sorted(missing)}"
    assert actions & refused, "demo shows refused attempts too"
    assert {e.actor_type for e in entries} >= {"session", "api_key", "system"}
    assert len({e.ip for e in entries}) >= 5
    span = entries[-1].occurred_at - entries[0].occurred_at
    assert span.days >= 14
    assert all(a.occurred_at <= b.occurred_at for a, b in itertools.pairwise(entries))

    again = cli(db, "demo", "--reuse")
    assert again.returncode == 0, again.stderr
    reused = json.loads(again.stdout.strip().splitlines()[-1])
    assert reused["account_id"] == seeded["account_id"] and reused["api_key"] != seeded["api_key"]

    verified = cli(db, "verify", "--account", seeded["account_id"])
    assert verified.returncode == 0 and "ok" in verified.stdout


def test_a_database_without_the_schema_is_one_line_saying_to_migrate(empty_database: Database) -> None:
    for args in (("streams", "list", "--account", "acc_x"), ("verify", "--account", "acc_x")):
        done = run_cli(*args, db_url=empty_database.url)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        said = " ".join(done.stderr.split())  # the console wraps at the terminal's width
        assert said.startswith("error: the database does not have this release's tables"), said
        assert "run `activitylog migrate` first" in said and "Traceback" not in said
