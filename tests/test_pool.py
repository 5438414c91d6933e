"""Pooled PostgreSQL connections: checked before use only after sitting idle, and replaced if dead."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from activitylog.db import base
from activitylog.db.base import Database, connect, normalize_url
from conftest import make_tenant, serving


@pytest.fixture
def pg(db: Database) -> Iterator[Database]:
    """A pool of one over the migrated test database."""
    if db.dialect != "postgresql":
        pytest.skip("connection pooling with liveness checks is for PostgreSQL")
    database = connect(db.url, pool_size=1)
    yield database
    database.dispose()


def _backend_pid(db: Database) -> int:
    with db.reader() as session:
        return int(session.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _terminate(database_url: str, pid: int) -> None:
    admin = create_engine(normalize_url(database_url))
    try:
        with admin.connect() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
    finally:
        admin.dispose()


def test_a_connection_killed_while_idle_is_replaced_before_use(
    pg: Database, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(base, "PING_AFTER_IDLE_SECONDS", 0.0)  # any idle time counts
    killed = _backend_pid(pg)
    _terminate(database_url, killed)
    assert _backend_pid(pg) != killed  # the ping found it dead; the request never saw an error


def test_a_connection_just_used_is_not_checked_again(
    pg: Database, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(base, "PING_AFTER_IDLE_SECONDS", 3600.0)  # nothing has been idle that long
    pings: list[object] = []
    ping = pg.engine.dialect.do_ping

    def counted_ping(connection: Any) -> bool:
        pings.append(connection)
        return bool(ping(connection))

    monkeypatch.setattr(pg.engine.dialect, "do_ping", counted_ping)
    first = _backend_pid(pg)
    assert _backend_pid(pg) == first
    assert pings == []
    monkeypatch.setattr(base, "PING_AFTER_IDLE_SECONDS", 0.0)
    assert _backend_pid(pg) == first
    assert len(pings) == 1


def test_a_request_on_a_connection_that_died_unnoticed_is_told_to_retry(
    pg: Database, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Within the no-ping window a dead connection surfaces as an error: a 503 with Retry-After (never a
    500), and the retry gets a fresh connection."""
    monkeypatch.setattr(base, "PING_AFTER_IDLE_SECONDS", 3600.0)
    with serving(pg) as server:
        tenant = make_tenant(server)
        with tenant.key_client() as client:
            assert client.get("/api/v1/activity").status_code == 200
            _terminate(database_url, _backend_pid(pg))
            refused = client.get("/api/v1/activity")
            assert refused.status_code == 503, refused.text
            assert refused.headers["Retry-After"] == "1"
            assert refused.json()["error"]["code"] == "unavailable"
            assert client.get("/api/v1/activity").status_code == 200


_KEY_LOOKUP = text("SELECT id FROM accounts WHERE id = :id")
_PREPARED = text(
    "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE 'SELECT id FROM accounts%'"
)


def test_write_transactions_prepare_what_they_repeat_and_reads_never_do(pg: Database) -> None:
    """A writer's repeated statement is prepared on its connection (one pooled connection: the reads below
    run on the same one); a reader's never is, so a filter query always gets a plan for its own values."""
    with pg.reader() as session:
        for _ in range(base.WRITE_PREPARE_THRESHOLD + 2):
            session.execute(_KEY_LOOKUP, {"id": "acc_nobody"})
        assert session.execute(_PREPARED).scalar_one() == 0
    with pg.writer() as session:
        for _ in range(base.WRITE_PREPARE_THRESHOLD + 2):
            session.execute(_KEY_LOOKUP, {"id": "acc_nobody"})
        assert session.execute(_PREPARED).scalar_one() == 1
        session.rollback()
    with pg.read_connection() as conn:  # the same connection, checked out again: preparing is off again
        driver = conn.connection.driver_connection
        assert driver is not None and driver.prepare_threshold is None
