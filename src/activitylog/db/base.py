"""Engine and session factory for SQLite (embedded default) and PostgreSQL (psycopg 3).

SQLite is tuned for an audit log: WAL so readers never block the writer, ``synchronous=FULL`` so an
acknowledged commit survives power loss, a busy timeout so concurrent writers queue instead of failing,
and write transactions that take the write lock at ``BEGIN IMMEDIATE`` (a deferred BEGIN that later
upgrades to a write can deadlock with another writer and fail with "database is locked").

On PostgreSQL every transaction also says whose rows it may touch: row-level security (migration 0006)
shows a transaction only the rows of the account named in ``activitylog.account_id``, or, for the few
deliberate cross-account lookups, lets it read every account when ``activitylog.system`` is ``on``. A
:class:`Database` carries that :class:`Scope`; ``for_account`` and ``system`` return views that share the
engine. An unscoped view sees no tenant rows at all, so a forgotten scope fails closed.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, DateTime, Engine, MetaData, TypeDecorator, create_engine, event, text
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DisconnectionError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Session, SessionTransaction, sessionmaker

from activitylog.db.limits import check_flush
from activitylog.db.waiting import POLL_SECONDS, WaitingWriters

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC instant on both engines (SQLite has no time zones, so store naive UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def normalize_url(url: str) -> str:
    """Accept ``postgresql://`` and route it to psycopg 3."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def _lower(value: str | None) -> str | None:
    return value.lower() if isinstance(value, str) else value


SQLITE_WIDE_CACHE_KIB = 16_384
"""The page cache of a connection writing thousands of rows in one transaction (a purge piece): SQLite's
default 2 MiB holds too little of the entries' nine indexes (a piece ran 1.3x slower at 2M entries; 16 MiB
did as well as 64). Only there: every pooled connection grows its own cache, so readers keep the default
(a web process serving an export peaked ~15 MB higher with 16 MiB on all of them)."""


def widen_page_cache(connection: Connection) -> None:
    """Give this SQLite connection the large page cache from now on (it keeps it back in the pool)."""
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql(f"PRAGMA cache_size=-{SQLITE_WIDE_CACHE_KIB}")


SQLITE_BUSY_MS = 30_000
"""How long SQLite waits for a lock before "database is locked": its busy handler in any statement, and a
writer's ``BEGIN IMMEDIATE`` polling for the write lock."""


def _configure_sqlite(engine: Engine, waiters: WaitingWriters | None) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves, below
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()
        # SQLite's own lower() folds ASCII only; text search must be case-insensitive in every script
        dbapi_connection.create_function("lower", 1, _lower, deterministic=True)

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        if mode == "IMMEDIATE":
            _begin_immediate(conn, waiters)
        else:
            conn.exec_driver_sql(f"BEGIN {mode}")


def _begin_immediate(conn: Any, waiters: WaitingWriters | None) -> None:
    """``BEGIN IMMEDIATE``; while another writer holds the lock, counted among the ``waiters`` (so batches
    let it go first) and retried every ``waiting.POLL_SECONDS`` (the busy handler off meanwhile), for up to
    ``SQLITE_BUSY_MS``; then "database is locked" as before."""
    raw = conn.connection.dbapi_connection
    deadline = time.monotonic() + SQLITE_BUSY_MS / 1000
    raw.execute("PRAGMA busy_timeout=0")
    try:
        if _try_begin(conn):
            return
        with waiters.waiting() if waiters is not None else nullcontext():
            while not _try_begin(conn, give_up=time.monotonic() >= deadline):
                time.sleep(POLL_SECONDS)
    finally:
        raw.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")


def _try_begin(conn: Any, give_up: bool = False) -> bool:
    """One ``BEGIN IMMEDIATE`` without waiting: false if another writer holds the lock (unless ``give_up``:
    then "database is locked" is raised)."""
    try:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    except OperationalError as exc:
        code = getattr(exc.orig, "sqlite_errorcode", None)
        if code is None or code & 0xFF != sqlite3.SQLITE_BUSY or give_up:
            raise
        return False
    return True


def sqlite_checkpoint(engine: Engine, mode: str = "PASSIVE") -> None:
    """Copy the write-ahead log into the database file, outside any transaction (one inside cannot finish).
    ``PASSIVE`` waits for no one and blocks no writer: the purge runs one after each piece, so the requests'
    commits do not find a long log to copy (SQLite's auto-checkpoint runs in whichever commit passes 1,000
    pages). ``TRUNCATE`` also empties the file, once no reader holds an older snapshot (the erasure)."""
    raw = engine.raw_connection()
    try:
        raw.driver_connection.execute(f"PRAGMA wal_checkpoint({mode})")  # type: ignore[union-attr]
    finally:
        raw.close()


PING_AFTER_IDLE_SECONDS = 1.0
_IDLE_SINCE = "activitylog.idle_since"


def _ping_after_idle(engine: Engine) -> None:
    """Check a pooled connection before use only if it sat idle: a ping is a round trip, on every checkout
    (two per request) that cost as much as the page's own query on a busy machine. A connection a server
    restart, failover or idle timeout killed has been idle; one used within the last second is alive, and
    if it is not, the error invalidates the whole pool as any disconnect does."""

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get(_IDLE_SINCE)  # none on a fresh connection: no need to ask
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            raise DisconnectionError("stale pooled connection") from exc  # the pool connects afresh


WRITE_PREPARE_THRESHOLD = 5  # psycopg's default: a statement run this often on a connection is prepared


def _unprepared(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """Every checkout starts with preparing off: reads plan each query for its own parameters."""
    dbapi_connection.prepare_threshold = None


def _prepare_writes(_session: Session, _transaction: SessionTransaction, connection: Connection) -> None:
    """A write transaction's statements are prepared once they repeat: the recorder's, the services' key
    lookups and inserts, whose plan never depends on the values (a row by its key, a row appended). On
    this machine a prepared insert or key lookup is 70-80 µs faster of about 280 (a round trip is ~150)."""
    driver = connection.connection.driver_connection
    if driver is not None:
        driver.prepare_threshold = WRITE_PREPARE_THRESHOLD


TENANT_SETTING = "activitylog.account_id"
SYSTEM_SETTING = "activitylog.system"
_SCOPE_KEY = "activitylog.scope"
_SET_SCOPE = text(
    f"SELECT set_config('{TENANT_SETTING}', :account, true), set_config('{SYSTEM_SETTING}', :system, true)"
)


@dataclass(frozen=True)
class Scope:
    """Whose rows a transaction may touch on PostgreSQL (SQLite has no row security and ignores it).

    ``account_id`` may be a callable, resolved when each transaction begins: a request knows its caller
    only after authentication, which runs after the request's store was handed out.
    """

    account_id: str | Callable[[], str | None] | None = None
    system: bool = False

    def settings(self) -> dict[str, str]:
        account = self.account_id() if callable(self.account_id) else self.account_id
        return {"account": account or "", "system": "on" if self.system else ""}


def apply_scope(connection: Connection, scope: Scope) -> None:
    """Name the scope for the rest of this transaction only (``set_config(..., true)``), so a pooled
    connection never carries one request's account into the next."""
    connection.execute(_SET_SCOPE, scope.settings())


def _on_session_begin(session: Session, _transaction: SessionTransaction, connection: Connection) -> None:
    apply_scope(connection, session.info.get(_SCOPE_KEY, Scope()))


@dataclass(frozen=True)
class Database:
    """One store: a session factory for writes, and one for reads that on SQLite take no write lock."""

    url: str
    engine: Engine
    read_engine: Engine
    write_sessions: sessionmaker[Session]
    read_sessions: sessionmaker[Session]
    scope: Scope = field(default_factory=Scope)
    waiting_writers: WaitingWriters | None = None
    """On SQLite (a file), the writers waiting for its write lock: batches of background work let them go
    first (``pacing``)."""

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def writer(self) -> Session:
        return self.write_sessions(info={_SCOPE_KEY: self.scope})

    def reader(self) -> Session:
        return self.read_sessions(info={_SCOPE_KEY: self.scope})

    @contextmanager
    def read_connection(self) -> Iterator[Connection]:
        """One read-only transaction in this view's scope on a Core connection, rolled back at the end:
        what :meth:`reader` gives, without a session's bookkeeping, for the few statements every request
        runs (an ORM session costs more than a small indexed read itself)."""
        with self.read_engine.connect() as connection:
            if self.dialect == "postgresql":
                apply_scope(connection, self.scope)
            yield connection

    def connection(self) -> Connection:
        """A Core connection in this view's scope, for what sessions cannot do (e.g. ``COPY``)."""
        connection = self.engine.connect()
        if self.dialect == "postgresql":
            apply_scope(connection, self.scope)
        return connection

    def for_account(self, account_id: str | Callable[[], str | None]) -> Database:
        """This store limited to one account's rows: what every request and unit of work uses."""
        return replace(self, scope=Scope(account_id=account_id))

    def system(self) -> Database:
        """This store able to read every account: only for the lookups that find out which account a
        credential, an email address or a piece of due work belongs to. Writes still need
        :meth:`for_account` (the system policy grants SELECT only)."""
        return replace(self, scope=Scope(system=True))

    def dispose(self) -> None:
        self.engine.dispose()


def connect(url: str, **engine_kwargs: Any) -> Database:
    url = normalize_url(url)
    # A failed statement's error (and so a 500's logged traceback) shows its SQL, not its values: they are
    # subscribers' addresses and names, tokens' hashes.
    engine_kwargs.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        waits = SQLITE_BUSY_MS / 1000
        engine_kwargs.setdefault("connect_args", {"check_same_thread": False, "timeout": waits})
        engine = create_engine(url, **engine_kwargs)
        waiters = WaitingWriters.beside(engine.url.database)
        _configure_sqlite(engine, waiters)
        read_engine: Engine = engine.execution_options(sqlite_begin="DEFERRED")
    else:
        waiters = None
        engine_kwargs.setdefault("pool_size", 10)
        engine_kwargs.setdefault("max_overflow", 20)
        # Last in, first out: a request's second transaction gets the connection its first just returned
        # (no idle check needed), and connections a quiet spell leaves spare are the ones that idle.
        engine_kwargs.setdefault("pool_use_lifo", True)
        # No server-side prepared statements by default: after a few runs PostgreSQL may switch a prepared
        # filter query to a generic plan that sorts every matching row (hundreds of times slower for CIDR and
        # text filters); planning each query afresh costs a fraction of a millisecond. Write transactions
        # prepare theirs (see _prepare_writes).
        engine_kwargs.setdefault("connect_args", {"prepare_threshold": None})
        engine = create_engine(url, **engine_kwargs)
        if not engine_kwargs.get("pool_pre_ping"):
            _ping_after_idle(engine)
        event.listen(engine, "checkout", _unprepared)
        read_engine = engine
    # The choke point's guard, on this database's own factories and engine: no session it makes can commit
    # an audited change without its entry, whatever the process imported first. (The one import of the log
    # from here: log imports db, so it is resolved at call time.)
    from activitylog.log.guard import GuardedSession, guard_engine  # noqa: PLC0415
    from activitylog.log.record import install  # noqa: PLC0415

    guarded: type[Session] = GuardedSession
    writer = sessionmaker(bind=engine, class_=guarded, expire_on_commit=False, autoflush=True)
    reader = sessionmaker(bind=read_engine, class_=guarded, expire_on_commit=False)
    event.listen(writer, "before_flush", check_flush)  # both engines store the same text (db/limits.py)
    for factory in (writer, reader):
        install(factory)
    guard_engine(engine)
    if engine.dialect.name == "postgresql":
        for factory in (writer, reader):
            event.listen(factory, "after_begin", _on_session_begin)
        event.listen(writer, "after_begin", _prepare_writes)
    return Database(
        url=url,
        engine=engine,
        read_engine=read_engine,
        write_sessions=writer,
        read_sessions=reader,
        waiting_writers=waiters,
    )
