"""SQLite writers waiting for the write lock are seen by background batches, which let them go first."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from activitylog import pacing
from activitylog.db import base, waiting
from activitylog.db.base import Database, connect


def _sqlite(tmp_path: Path) -> Database:
    db = connect(f"sqlite:///{tmp_path / 'turns.db'}")
    with db.engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE pieces (who TEXT)")
    return db


def _until(condition: Callable[[], object], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


WRITER = """
import sys
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from activitylog.db.base import connect
db = connect(sys.argv[1])
with db.writer() as session:
    session.execute(text("INSERT INTO pieces (who) VALUES ('other process')"))
    session.commit()
"""


def test_a_writer_waiting_in_another_process_is_seen_until_it_has_the_lock(tmp_path: Path) -> None:
    db = _sqlite(tmp_path)
    waiters = db.waiting_writers
    assert waiters is not None and waiters.path == str(tmp_path / "turns.db") + waiting.SUFFIX
    assert not waiters.any()
    with db.writer() as holder:
        holder.execute(text("INSERT INTO pieces (who) VALUES ('holder')"))
        other = subprocess.Popen([sys.executable, "-c", WRITER, db.url])
        try:
            _until(waiters.any)  # it found the lock taken, and waits
            assert other.poll() is None
        finally:
            holder.commit()
        assert other.wait(timeout=30) == 0
    assert not waiters.any()
    with db.reader() as session:
        assert session.execute(text("SELECT who FROM pieces")).scalars().all() == ["holder", "other process"]
    db.dispose()


def _pieces(db: Database, pieces: int, hold: float, done: list[float], pacer: pacing.Pacer) -> None:
    """A purge's shape: write transactions one after another, each followed by ``pacer``'s rest."""
    for _ in range(pieces):
        with db.writer() as session:
            session.execute(text("INSERT INTO pieces (who) VALUES ('piece')"))
            time.sleep(hold)
            session.commit()
        done.append(time.monotonic())
        pacer.took(1, hold)


def test_a_waiting_sqlite_writer_takes_the_first_gap_between_transactions(tmp_path: Path) -> None:
    """SQLite's busy handler backs off to 100 ms between tries, so a writer behind a run of short
    transactions missed the 10 ms gaps between them; polling for the lock, it takes the first (even
    behind batches that do not look for waiting writers)."""
    db = _sqlite(tmp_path)
    done: list[float] = []
    writer = threading.Thread(target=_pieces, args=(db, 20, 0.2, done, pacing.for_engine("sqlite", 1)))
    writer.start()
    _until(lambda: done)
    time.sleep(0.02)  # now waiting behind the second piece
    with db.writer() as session:
        session.execute(text("INSERT INTO pieces (who) VALUES ('request')"))
        session.commit()
    passed = len(done)
    writer.join()
    assert passed <= 3, f"{passed} pieces went before the waiting writer"  # 5 with the busy handler
    assert len(done) == 20

    with db.writer() as holder:  # past SQLITE_BUSY_MS, still "database is locked"
        holder.execute(text("INSERT INTO pieces (who) VALUES ('holder')"))
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(base, "SQLITE_BUSY_MS", 50)
            with pytest.raises(OperationalError, match="database is locked"), db.writer() as other:
                other.execute(text("SELECT 1"))
        holder.commit()
    with db.writer() as session:  # the refused connection's busy handler is back for its next use
        assert session.execute(text("PRAGMA busy_timeout")).scalar_one() == base.SQLITE_BUSY_MS
    db.dispose()


def test_a_slow_waiting_writer_goes_before_the_next_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer that tries the lock only every 50 ms (a busy machine that did not run it sooner) mostly
    misses the 10 ms rest after a batch; seen waiting, it still goes before the next batch."""
    db = _sqlite(tmp_path)
    done: list[float] = []
    batches = threading.Thread(target=_pieces, args=(db, 8, 0.15, done, pacing.for_database(db, 1)))
    batches.start()
    _until(lambda: done)
    time.sleep(0.02)  # inside the second batch now
    monkeypatch.setattr(base, "POLL_SECONDS", 0.05)  # this writer's tries only; the batches look every 2 ms
    with db.writer() as session:
        session.execute(text("INSERT INTO pieces (who) VALUES ('request')"))
        session.commit()
    passed = len(done)
    batches.join()
    assert passed == 2, f"{passed} batches went before the waiting writer"
    db.dispose()


def test_a_batch_waits_for_waiting_writers_at_most_its_own_time(tmp_path: Path) -> None:
    db = _sqlite(tmp_path)
    waiters = db.waiting_writers
    assert waiters is not None
    assert waiters.let_go_first(5.0) < 5.0  # no one waits: at once
    with waiters.waiting():  # a writer that never takes its turn
        assert waiters.any()
        assert 0.05 <= waiters.let_go_first(0.05) < 5.0
        pacer = pacing.for_database(db)
        began = time.monotonic()
        pacer.took(pacer.size, pacing.BATCH_SECONDS)
        assert time.monotonic() - began >= pacing.REST_SECONDS + pacing.BATCH_SECONDS
    assert not waiters.any()
    db.dispose()


def test_only_a_sqlite_file_has_waiting_writers(db: Database, tmp_path: Path) -> None:
    memory = connect("sqlite://")
    assert memory.waiting_writers is None
    assert pacing.for_database(memory).let_go_first is None
    memory.dispose()
    if db.dialect == "postgresql":  # its batches lock only their own rows: no one waits for them
        assert db.waiting_writers is None and pacing.for_database(db).let_go_first is None
    else:
        assert db.waiting_writers is not None
        assert pacing.for_database(db).let_go_first == db.waiting_writers.let_go_first
