"""A throw-away store, an account with one API key per client, and the real ``activitylog serve`` as a child
process that can be killed and started again.

Shared by ``crash.py`` (kill the server mid-write, then prove nothing was lost or forged), ``soak.py``
(hold load for minutes) and ``tests/test_crash.py``. The server is the installed command, not an
in-process app, so a SIGKILL ends it the way a crash or an OOM kill would: no shutdown hooks, no flush.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from sqlalchemy import text

from activitylog.db.base import Database, connect
from activitylog.db.migrate import upgrade
from activitylog.log.record import RequestContext
from activitylog.services import accounts, api_keys
from activitylog.services.uow import SYSTEM_CLI, UnitOfWork

# isort: split
from stores import Store, postgres_store

ACTIVITYLOG = Path(sys.executable).with_name("activitylog")
PASSWORD = "bench owner password"


@contextmanager
def fresh_store(engine: str, pg_url: str, workdir: Path) -> Iterator[Store]:
    """A migrated, empty store: a SQLite file in ``workdir``, or a new PostgreSQL database (dropped after)."""
    if engine == "sqlite":
        path = workdir / "activitylog.db"
        store = Store(engine="sqlite", url=f"sqlite:///{path}", raw_target=str(path))
        db = connect(store.url)
        try:
            upgrade(db)
        finally:
            db.dispose()
        yield store
    elif engine == "postgresql":
        with postgres_store(pg_url) as store:
            yield store
    else:
        raise ValueError(f"unknown engine {engine!r}")


@dataclass(frozen=True)
class Key:
    id: str
    secret: str


@dataclass(frozen=True)
class Tenant:
    account_id: str
    keys: list[Key]


def make_tenant(db: Database, clients: int, scopes: tuple[str, ...] = ("full",)) -> Tenant:
    """An account and one API key per client, made by the same services the CLI uses (actor system:cli)."""
    created = accounts.create_account(
        db,
        name="Bench",
        owner_email=f"owner-{os.urandom(5).hex()}@bench.example",
        password=PASSWORD,
        actor=SYSTEM_CLI,
        context=RequestContext(),
    )
    account_id = created.account.id
    keys = []
    for number in range(clients):
        uow = UnitOfWork(db, account_id=account_id, actor=SYSTEM_CLI, context=RequestContext())
        issued = api_keys.create_api_key(uow, name=f"client {number}", scopes=list(scopes))
        keys.append(Key(issued.key.id, issued.secret))
    return Tenant(account_id, keys)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_env(store: Store, workdir: Path) -> dict[str, str]:
    """What the server and CLI processes need: the store, a signing key of their own, no checkpoints."""
    return {
        **os.environ,
        "ACTIVITYLOG_DATABASE_URL": store.url,
        "ACTIVITYLOG_SIGNING_KEY_FILE": str(workdir / "signing.key"),
        "ACTIVITYLOG_CHECKPOINT_INTERVAL_SECONDS": "0",
    }


class ServerProcess:
    """``activitylog serve --no-workers --no-migrate`` on one fixed loopback port, restartable after a kill.

    The port stays the same across restarts, so clients keep their base URL, as they would behind a
    load balancer. Output goes to ``server.log`` in the work directory.
    """

    def __init__(self, store: Store, workdir: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = server_env(store, workdir)
        self.log_path = workdir / "server.log"
        self.starts = 0
        self.kills = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self, timeout: float = 60.0) -> float:
        """Start the server and wait until it accepts connections; returns the seconds that took."""
        began = time.monotonic()
        if self._log is None:
            self._log = self.log_path.open("ab")
        command = [str(ACTIVITYLOG), "serve", "--no-workers", "--no-migrate"]
        command += ["--host", "127.0.0.1", "--port", str(self.port)]
        self._proc = subprocess.Popen(
            command, env=self.env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.starts += 1
        while time.monotonic() - began < timeout:
            if self._proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self._proc.returncode}; see {self.log_path}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return time.monotonic() - began
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"the server did not accept connections within {timeout:g} s")

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def kill(self) -> None:
        """SIGKILL: the process ends at once, mid-request, mid-transaction, with nothing flushed."""
        if self._proc is None:
            return
        self._proc.send_signal(signal.SIGKILL)
        self._proc.wait()
        self._proc = None
        self.kills += 1

    def stop(self) -> None:
        """A clean shutdown (SIGTERM), for the end of a run."""
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None


@contextmanager
def running_server(store: Store, workdir: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(store, workdir)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    output: str
    entries: int
    seq_problems: list[str]


def verify_chains(store: Store, workdir: Path) -> ChainReport:
    """``activitylog verify`` as an operator runs it, plus a direct look for seq gaps and head drift."""
    done = subprocess.run(
        [str(ACTIVITYLOG), "verify"],
        env=server_env(store, workdir),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    db = connect(store.url)
    try:
        problems, entries = seq_problems(db)
    finally:
        db.dispose()
    return ChainReport(done.returncode == 0, (done.stdout + done.stderr).strip(), entries, problems)


def seq_problems(db: Database) -> tuple[list[str], int]:
    """Per account: seq must run 1..N with no gap or repeat, and the chain head must sit on N."""
    sql = text(
        "SELECT e.account_id, count(*), count(DISTINCT e.seq), min(e.seq), max(e.seq), h.seq"
        " FROM activity_entries e LEFT JOIN activity_heads h ON h.account_id = e.account_id"
        " GROUP BY e.account_id, h.seq"
    )
    problems, total = [], 0
    with db.reader() as session:
        for account_id, count, distinct, low, high, head in session.execute(sql):
            total += count
            if not (count == distinct == high and low == 1):
                problems.append(f"{account_id}: {count} entries, seq {low}..{high} ({distinct} distinct)")
            if head != high:
                problems.append(f"{account_id}: head at seq {head}, last entry at {high}")
    return problems, total
