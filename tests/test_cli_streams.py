"""``activitylog streams …`` as an operator runs it (real processes, both engines): every change an entry by
system:cli, JSON where a script reads it, the test event reaching a real receiver."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from typing import Any

from sqlalchemy import select

from activitylog.db.base import Database
from activitylog.db.models import ActivityEntry
from stream_receiver import receiving


def cli(db: Database, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ACTIVITYLOG_DATABASE_URL": db.url, "ACTIVITYLOG_STREAM_ALLOW_PRIVATE": "true"}
    return subprocess.run(
        [sys.executable, "-m", "activitylog", *args],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip


def ok(db: Database, *args: str) -> Any:
    done = cli(db, *args)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    return lines[0] if len(lines) == 1 else lines


def test_manage_a_stream_from_the_shell(db: Database) -> None:
    email = f"cli-{uuid.uuid4().hex[:8]}@example.com"
    account = ok(db, "account", "create", "--name", "Acme", "--owner-email", email, "--password", "long one")
    account_id = account["account_id"]
    with receiving() as receiver:
        made = ok(
            db, "streams", "create", "--account", account_id, "--name", "SIEM", "--type", "webhook",
            "--url", receiver.url, "--filter", "action=stream.*", "--format", "ocsf",
        )  # fmt: skip
        sid = made["id"]
        assert made["secret"].startswith("whsec_") and made["filter"] == {"action": "stream.*"}
        assert made["format"] == "ocsf" and made["state"] == "active"
        listed = ok(db, "streams", "list", "--account", account_id, "--json")
        assert listed["id"] == sid and "secret" not in listed
        assert ok(db, "streams", "pause", sid)["state"] == "paused"
        paused_again = cli(db, "streams", "pause", sid)
        assert paused_again.returncode == 1 and "not active" in paused_again.stderr
        assert ok(db, "streams", "resume", sid)["state"] == "active"
        tested = ok(db, "streams", "test", sid)
        assert tested["delivered"] is True and tested["status_code"] == 200
        assert receiver.received[-1].json["type"] == "activity.test"
        assert receiver.received[-1].id == tested["event_id"]
        replayed = ok(db, "streams", "replay", sid, "--from-seq", "1")
        assert replayed["delivered_seq"] == 0
        delivered = ok(db, "streams", "deliveries", sid, "--json")
        assert delivered["event_id"] == tested["event_id"] and delivered["status_code"] == 200
        table = cli(db, "streams", "list", "--account", account_id)
        assert table.returncode == 0 and sid in table.stdout and "SIEM" in table.stdout
        assert ok(db, "streams", "delete", sid) == {"deleted": sid}
    missing = cli(db, "streams", "pause", sid)
    assert missing.returncode == 1 and "no stream" in missing.stderr
    bad = cli(db, "streams", "create", "--account", account_id, "--name", "x", "--type", "smtp")
    assert bad.returncode == 2 and "--type" in bad.stderr
    with db.reader() as session:
        entries = session.scalars(
            select(ActivityEntry)
            .where(ActivityEntry.account_id == account_id, ActivityEntry.resource_type == "stream")
            .order_by(ActivityEntry.seq)
        ).all()
    assert [e.action for e in entries] == [
        "stream.create", "stream.pause", "stream.resume", "stream.replay", "stream.delete",
    ]  # fmt: skip
    assert {(e.actor_type, e.actor_id) for e in entries} == {("system", "cli")}
    assert made["secret"] not in "".join(e.changes for e in entries)
