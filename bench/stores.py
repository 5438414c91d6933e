"""The stores under test: a throw-away SQLite file and a throw-away PostgreSQL database, built by migrations.

The application (through ``activitylog.db.base.connect``) and the raw baselines (plain ``sqlite3`` and
``psycopg``) open the *same* database, so both sides of every comparison see the same schema, indexes and
triggers; only the code path on top differs.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import select
from sqlalchemy.engine import make_url

from activitylog.db.base import Database, connect
from activitylog.db.migrate import upgrade
from activitylog.db.models import ChainHead
from activitylog.log import counts

DATA_DIR = Path(__file__).resolve().parent / "data"

# What activitylog.db.base sets on every SQLite connection; the raw baseline uses the same.
SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    "PRAGMA busy_timeout=30000",
    "PRAGMA foreign_keys=ON",
)


@dataclass(frozen=True)
class Store:
    """One database, addressable by the application (``url``) and by the raw driver (``raw_target``).

    Plain data, so it can be pickled to the writer processes.
    """

    engine: str  # "sqlite" | "postgresql"
    url: str  # what activitylog.db.base.connect takes
    raw_target: str  # a file path for sqlite3, a libpq URL for psycopg

    @property
    def is_sqlite(self) -> bool:
        return self.engine == "sqlite"

    def app_db(self) -> Database:
        return connect(self.url)

    def raw_connect(self) -> Any:
        """A driver connection with the application's durability settings, in explicit-transaction mode."""
        if self.is_sqlite:
            conn = sqlite3.connect(self.raw_target, isolation_level=None, timeout=30, check_same_thread=False)
            for pragma in SQLITE_PRAGMAS:
                conn.execute(pragma)
            return conn
        return psycopg.connect(self.raw_target)

    def sql(self, text: str) -> str:
        """Hand-written SQL uses ``?`` placeholders; psycopg wants ``%s``."""
        return text if self.is_sqlite else text.replace("?", "%s")

    def bind_time(self, instant: datetime) -> Any:
        """A UTC instant as the column stores it: SQLAlchemy's naive text on SQLite, timestamptz on PG."""
        if self.is_sqlite:
            return instant.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        return instant

    def read_time(self, value: Any) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            return datetime.fromisoformat(value).replace(tzinfo=UTC)
        moment: datetime = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
        return moment


@contextmanager
def sqlite_store(*, keep: bool = False, name: str = "bench.db") -> Iterator[Store]:
    """A fresh SQLite file under bench/data/ (git-ignored), migrated; removed afterwards unless ``keep``.
    Benchmarks that may run side by side use their own ``name``."""
    DATA_DIR.mkdir(exist_ok=True)
    path = DATA_DIR / name
    _remove_sqlite(path)
    store = Store(engine="sqlite", url=f"sqlite:///{path}", raw_target=str(path))
    try:
        _migrate(store)
        yield store
    finally:
        if not keep:
            _remove_sqlite(path)


def _remove_sqlite(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal", "-writers"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


@contextmanager
def postgres_store(server_url: str) -> Iterator[Store]:
    """A throw-away database on the server (``activitylog_bench_<random>``), always dropped."""
    name = f"activitylog_bench_{uuid.uuid4().hex[:10]}"
    admin_url = make_url(server_url).set(drivername="postgresql")
    admin = admin_url.render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    raw = admin_url.set(database=name).render_as_string(hide_password=False)
    try:
        store = Store(engine="postgresql", url=raw, raw_target=raw)
        _migrate(store)
        yield store
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _migrate(store: Store) -> None:
    db = store.app_db()
    try:
        upgrade(db)
    finally:
        db.dispose()


def describe(store: Store) -> dict[str, str]:
    """Engine version and the settings that decide what a durable commit costs."""
    conn = store.raw_connect()
    try:
        if store.is_sqlite:
            return {
                "version": f"SQLite {sqlite3.sqlite_version}",
                "journal_mode": conn.execute("PRAGMA journal_mode").fetchone()[0],
                "synchronous": {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}[
                    conn.execute("PRAGMA synchronous").fetchone()[0]
                ],
                "page_size": str(conn.execute("PRAGMA page_size").fetchone()[0]),
            }
        info = {"version": "PostgreSQL " + conn.execute("SHOW server_version").fetchone()[0]}
        for setting in ("fsync", "synchronous_commit", "wal_sync_method", "shared_buffers", "work_mem"):
            info[setting] = conn.execute(f"SHOW {setting}").fetchone()[0]
        return info
    finally:
        conn.close()


def row_counts(store: Store, account_id: str) -> dict[str, str]:
    """The size of what was measured: rows per table, the account under test, and bytes on disk."""
    conn = store.raw_connect()
    try:

        def scalar(sql: str, *args: Any) -> int:
            return int(conn.execute(store.sql(sql), args).fetchone()[0])

        entries = scalar("SELECT count(*) FROM activity_entries")
        mine = scalar("SELECT count(*) FROM activity_entries WHERE account_id = ?", account_id)
        out = {
            "activity_entries": f"{entries:,}",
            "… of the account under test": f"{mine:,} ({mine / entries:.1%})",
            "accounts": f"{scalar('SELECT count(*) FROM accounts'):,}",
            "activity_heads": f"{scalar('SELECT count(*) FROM activity_heads'):,}",
            "distinct actors": f"{scalar('SELECT count(DISTINCT actor_id) FROM activity_entries'):,}",
        }
        if store.is_sqlite:
            size = sum(
                Path(store.raw_target + s).stat().st_size
                for s in ("", "-wal")
                if Path(store.raw_target + s).exists()
            )
            out["database file"] = f"{size / 2**20:,.0f} MiB"
        else:
            table = scalar("SELECT pg_total_relation_size('activity_entries')")
            heap = scalar("SELECT pg_relation_size('activity_entries')")
            out["activity_entries on disk"] = (
                f"{table / 2**20:,.0f} MiB ({heap / 2**20:,.0f} MiB heap + indexes/TOAST)"
            )
        return out
    finally:
        conn.close()


def detectors_at_head(store: Store) -> int:
    """Move the alert detectors' cursor of every account to its chain's head, as if they had followed the
    seeded history while it was written. A benchmark that serves a bulk-seeded log then measures the steady
    state, not the worker replaying millions of entries through the detectors meanwhile (that replay is
    measured on its own by bench/alerts.py). Returns how many accounts it moved."""
    conn = store.raw_connect()
    try:
        moved = conn.execute(
            "INSERT INTO alert_cursors (account_id, seq) SELECT account_id, seq FROM activity_heads "
            "WHERE true ON CONFLICT (account_id) DO UPDATE SET seq = excluded.seq"
        ).rowcount
        conn.commit()
        return int(moved)
    finally:
        conn.close()


def counts_at_head(store: Store) -> int:
    """Count every account's seeded log into the derived counts (``counts.catch_up``), as the served
    worker would have while it was written: a benchmark then measures the steady state, not the worker's
    first count of millions of entries (which holds the counts' cursor, batch after batch, and so a purge
    piece waiting for it; bench/timeline.py measures that count). Returns the entries counted."""
    db = store.app_db()
    try:
        with db.system().reader() as session:
            accounts = list(session.scalars(select(ChainHead.account_id)))
        return sum(counts.catch_up(db, account_id) for account_id in accounts)
    finally:
        db.dispose()
