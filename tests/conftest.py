"""Fixtures: every storage test runs on a real SQLite file and, when ``ACTIVITYLOG_TEST_DATABASE_URL`` names
a server, on real PostgreSQL — each built by the migrations, each served by a real uvicorn on loopback.

Tests isolate by tenant, not by truncation: each test makes its own account(s), which is also how the
product isolates its customers.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from argon2 import PasswordHasher
from fastapi import FastAPI
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.engine import make_url

from activitylog.config import Settings
from activitylog.db.base import Database, connect, normalize_url
from activitylog.db.migrate import upgrade
from activitylog.db.roles import grant_app_role
from activitylog.services import credentials
from activitylog.web.app import create_app
from activitylog.web.guards import MAX_REQUEST_HEAD_BYTES
from factories import PASSWORD as PASSWORD  # what the tests sign in with
from factories import new_account, new_key

PG_ENV = "ACTIVITYLOG_TEST_DATABASE_URL"
TRUSTED_PROXY = "127.0.0.1"  # the test client's address; clients bound to 127.0.0.2 are untrusted
# Every `serve` a test starts answers with one process (each more costs a second of start-up on a busy
# machine); test_operations.py serves with several on purpose.
os.environ.setdefault("ACTIVITYLOG_WEB_PROCESSES", "1")
# Passwords are still argon2id hashes, checked for real, but at the cost argon2 allows as its floor in this
# process (servers it runs in threads included): the production cost, ~0.1-0.2 s a hash here, is paid by
# every account and sign-in a test makes, minutes of the suite. Processes the tests start keep the real
# cost, and hashes of either cost verify in both (argon2 reads the parameters from the hash).
credentials._hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
credentials._dummy_hash.cache_clear()


def pytest_report_header(config: pytest.Config) -> str:
    url = os.environ.get(PG_ENV)
    if url:
        return f"storage tests: SQLite and PostgreSQL ({make_url(url).render_as_string(hide_password=True)})"
    return f"storage tests: SQLite only; PostgreSQL SKIPPED (set {PG_ENV} to run them)"


def fresh_postgres_database(server_url: str) -> Iterator[str]:
    """A throw-away database on the given server, dropped afterwards."""
    name = f"activitylog_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(normalize_url(server_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(normalize_url(server_url)).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session", autouse=True)
def signing_key_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One checkpoint-signing key and one data key for the test server and the CLI processes the tests
    start."""
    keys = tmp_path_factory.mktemp("keys")
    path = keys / "signing.key"
    files = {"ACTIVITYLOG_SIGNING_KEY_FILE": path, "ACTIVITYLOG_DATA_KEY_FILE": keys / "data.key"}
    previous = {name: os.environ.get(name) for name in files}
    os.environ.update({name: str(file) for name, file in files.items()})
    yield path
    for name, value in previous.items():
        if value is None:
            del os.environ[name]
        else:
            os.environ[name] = value


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'activitylog.db'}"
        return
    server = os.environ.get(PG_ENV)
    if not server:
        pytest.skip(f"PostgreSQL tests skipped: set {PG_ENV}")
    yield from fresh_postgres_database(server)


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A database of its own with no tables yet, on each engine: for tests that run the migrations."""
    if request.param == "sqlite":
        database = connect(f"sqlite:///{tmp_path / 'fresh.db'}")
        yield database
        database.dispose()
        return
    server = os.environ.get(PG_ENV)
    if not server:
        pytest.skip(f"PostgreSQL tests skipped: set {PG_ENV}")
    for url in fresh_postgres_database(server):
        database = connect(url)
        yield database
        database.dispose()


@pytest.fixture(scope="session")
def db(database_url: str) -> Iterator[Database]:
    database = connect(database_url)
    upgrade(database)
    yield database
    database.dispose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    db: Database


@contextmanager
def serving(
    db: Database, extend: Callable[[FastAPI], None] | None = None, **overrides: Any
) -> Iterator[Server]:
    """The app over ``db`` on a real uvicorn on loopback, trusting X-Forwarded-For from 127.0.0.1 only;
    ``extend`` adds to the app (a route of the test's own), ``overrides`` are other settings (e.g. another
    signing key)."""
    settings = Settings(database_url=db.url, trusted_proxies=TRUSTED_PROXY, **overrides)
    port = free_port()
    app = create_app(settings, db)
    if extend is not None:
        extend(app)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        proxy_headers=False,
        h11_max_incomplete_event_size=MAX_REQUEST_HEAD_BYTES,  # as serve reads requests
    )
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not uv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.02)
    yield Server(url=f"http://127.0.0.1:{port}", db=db)
    uv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="session")
def server(db: Database) -> Iterator[Server]:
    with serving(db) as running:
        yield running


@dataclass
class Tenant:
    """An account with its owner and a full-scope API key, and clients for both."""

    account_id: str
    owner_id: str
    owner_email: str
    key_id: str
    key: str
    server: Server

    def key_client(self, key: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key or self.key}", "User-Agent": "tests-key/1.0"}
        return httpx.Client(base_url=self.server.url, headers=headers, timeout=30, **kwargs)

    def session_client(self, email: str | None = None, password: str = PASSWORD) -> httpx.Client:
        client = httpx.Client(
            base_url=self.server.url, headers={"User-Agent": "tests-browser/1.0"}, timeout=30
        )
        response = client.post(
            "/api/v1/session", json={"email": email or self.owner_email, "password": password}
        )
        assert response.status_code == 200, response.text
        client.headers["X-CSRF-Token"] = response.json()["csrf_token"]
        return client


def make_tenant(server: Server, name: str = "Tenant") -> Tenant:
    created = new_account(server.db, name)
    issued = new_key(server.db, created.account.id)
    return Tenant(
        account_id=created.account.id,
        owner_id=created.owner.id,
        owner_email=created.owner.email,
        key_id=issued.key.id,
        key=issued.secret,
        server=server,
    )


@pytest.fixture
def tenant(server: Server) -> Tenant:
    return make_tenant(server)


@pytest.fixture
def root() -> Path:
    return Path(__file__).resolve().parent.parent


def run_cli(*args: str, db_url: str | None = None, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """``activitylog`` as an operator runs it, in a process of its own, on ``db_url`` when given."""
    env = {**os.environ, **({"ACTIVITYLOG_DATABASE_URL": db_url} if db_url else {})}
    return subprocess.run(
        [sys.executable, "-m", "activitylog", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def run_auditor_tool(*args: str, stdlib_only: bool = True) -> subprocess.CompletedProcess[str]:
    """tools/verify_export.py as an auditor runs it; ``-S`` (no site-packages) proves the stdlib suffices."""
    tool = Path(__file__).resolve().parent.parent / "tools" / "verify_export.py"
    flags = ["-I", "-S"] if stdlib_only else ["-I"]  # manifests need the cryptography package
    return subprocess.run(
        [sys.executable, *flags, str(tool), *args], capture_output=True, text=True, timeout=120, check=False
    )


@contextmanager
def app_role_on(db: Database) -> Iterator[str]:
    """A PostgreSQL login role that owns nothing and bypasses nothing, granted what ``migrate --app-role``
    grants; yields the database URL that logs in as it, and drops the role afterwards."""
    role = f"al_rls_{uuid.uuid4().hex[:10]}"
    with db.engine.begin() as conn:
        conn.execute(text(f"CREATE ROLE {role} LOGIN"))
    try:
        grant_app_role(db, role)
        yield make_url(db.url).set(username=role).render_as_string(hide_password=False)
    finally:
        with db.engine.begin() as conn:
            conn.execute(
                text(f"REASSIGN OWNED BY {role} TO CURRENT_USER; DROP OWNED BY {role}; DROP ROLE {role}")
            )


@contextmanager
def unguarded(db: Database) -> Iterator[Connection]:
    """One transaction through a plain engine on ``db``'s database, without the product's guard (which
    refuses Core writes to audited tables): for state the product itself cannot make, such as an account
    from before the log existed, or rows seeded for a query plan."""
    engine = create_engine(db.url)
    try:
        with engine.begin() as conn:
            yield conn
    finally:
        engine.dispose()


@contextmanager
def behind_the_apps_back(db: Database) -> Iterator[Connection]:
    """The owner, switching the append-only triggers off for one transaction."""
    with db.engine.begin() as conn:
        if db.dialect == "postgresql":
            conn.execute(text("ALTER TABLE activity_entries DISABLE TRIGGER USER"))
            conn.execute(text("ALTER TABLE activity_tree DISABLE TRIGGER USER"))
            conn.execute(text("ALTER TABLE activity_affected DISABLE TRIGGER USER"))
            yield conn
            conn.execute(text("ALTER TABLE activity_entries ENABLE TRIGGER USER"))
            conn.execute(text("ALTER TABLE activity_tree ENABLE TRIGGER USER"))
            conn.execute(text("ALTER TABLE activity_affected ENABLE TRIGGER USER"))
            return
        saved = conn.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'")).all()
        for name, _ in saved:
            conn.execute(text(f"DROP TRIGGER {name}"))
        yield conn
        for _, sql in saved:
            conn.execute(text(sql))
