"""``activitylog demo`` as a new user runs it: on a database nothing has touched yet, and leaving no work
behind for the workers of the server that starts next (``make run``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from activitylog.db.base import connect
from activitylog.db.models import ActivityEntry, Broadcast
from conftest import PG_ENV, fresh_postgres_database


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database no migration has run on."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    server = os.environ.get(PG_ENV)
    if not server:
        pytest.skip(f"PostgreSQL tests skipped: set {PG_ENV}")
    yield from fresh_postgres_database(server)


def demo(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "activitylog", "demo", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "ACTIVITYLOG_DATABASE_URL": url},
        timeout=600,
        check=False,
    )


def statuses(url: str, account_id: str) -> dict[str, int]:
    db = connect(url).for_account(account_id)
    try:
        with db.reader() as session:
            rows = session.execute(
                select(Broadcast.status, func.count())
                .where(Broadcast.account_id == account_id)
                .group_by(Broadcast.status)
            ).all()
            entries = session.scalar(select(func.count()).where(ActivityEntry.account_id == account_id))
        return {**{str(s): int(n) for s, n in rows}, "entries": int(entries or 0)}
    finally:
        db.dispose()


def test_demo_on_a_fresh_database_migrates_and_leaves_nothing_for_the_workers(fresh_url: str) -> None:
    result = demo(fresh_url, "--entries", "600", "--port", "8123")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert "http://127.0.0.1:8123" in result.stdout and ":8000" not in result.stdout
    seeded = json.loads(result.stdout.strip().splitlines()[-1])
    counts = statuses(fresh_url, seeded["account_id"])
    assert counts.get("sending", 0) == 0 and counts.get("scheduled", 0) == 0, counts
    assert counts.get("sent", 0) > 0, counts  # the history did send broadcasts
    assert counts["entries"] == 600, counts


def test_demo_leaves_work_for_the_workers_only_when_asked(fresh_url: str) -> None:
    result = demo(fresh_url, "--entries", "600", "--leave-work")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "http://127.0.0.1:8000" in result.stdout
    seeded = json.loads(result.stdout.strip().splitlines()[-1])
    counts = statuses(fresh_url, seeded["account_id"])
    assert counts.get("sending", 0) + counts.get("scheduled", 0) > 0, counts
