"""Append throughput: the real recorder path against the raw engine doing the same durable work by hand.

Every append is one durable transaction holding one list row and one chained entry. The *recorder* path is
what the API does (``services.lists.create_list`` in a fresh ``UnitOfWork``: ORM flush, guard, head lock,
hash, insert, head update, commit). The *raw* path is the least the engine must do for the same guarantee:
read the head under lock, insert the list row and the entry with a hand-computed sha256, extend the Merkle
tree (``log.tree.append``: pure arithmetic, and a tree row every other append), move the head, commit —
through the bare driver. Their ratio is the price of the application layer.

Writers run in spawned processes (one per account, never sharing a chain), started once and reused, so
interpreter start-up is never timed. A round starts all writers at the same wall-clock instant and stops
them after a fixed duration; a writer's rate is its appends over its own elapsed time.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import statistics
import time
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from activitylog.ids import new_id
from activitylog.log import tree
from activitylog.log.record import RequestContext
from activitylog.log.verify import verify_account
from activitylog.services import accounts
from activitylog.services.lists import create_list
from activitylog.services.uow import SYSTEM_CLI, UnitOfWork

# isort: split
# Sibling modules of bench/ (run.py runs as a script, so they import as top-level modules).
from stores import Store

WRITER_COUNTS = (1, 2, 4)
PATHS = ("recorder", "raw")


class Writer(Protocol):
    def append(self, i: int) -> None: ...

    def close(self) -> None: ...


class RecorderWriter:
    """The production path, exactly as a service call makes it."""

    def __init__(self, store: Store, account_id: str) -> None:
        self.db = store.app_db()
        self.account_id = account_id

    def append(self, i: int) -> None:
        uow = UnitOfWork(self.db, account_id=self.account_id, actor=SYSTEM_CLI, context=RequestContext())
        create_list(uow, f"bench list {i}")

    def close(self) -> None:
        self.db.dispose()


class RawWriter:
    """The same durable work through the bare driver: what the engine costs with no application on top."""

    def __init__(self, store: Store, account_id: str) -> None:
        self.store = store
        self.account_id = account_id
        self.conn = store.raw_connect()
        lock = "" if store.is_sqlite else " FOR UPDATE"
        self.select_head = store.sql(
            f"SELECT seq, hash, occurred_at, tree FROM activity_heads WHERE account_id = ?{lock}"
        )
        self.insert_list = store.sql(
            "INSERT INTO lists (id, account_id, name, created_at) VALUES (?, ?, ?, ?)"
        )
        self.insert_entry = store.sql(
            "INSERT INTO activity_entries (account_id, seq, occurred_at, actor_type, actor_id, actor_name,"
            " on_behalf_of, ip, ip_key, user_agent, action, resource_type, resource_id, resource_name,"
            " summary, changes, request_id, prev_hash, hash)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )
        self.insert_nodes = store.sql("INSERT INTO activity_tree (account_id, seq, hashes) VALUES (?, ?, ?)")
        self.update_head = store.sql(
            "UPDATE activity_heads SET seq = ?, hash = ?, occurred_at = ?, tree = ? WHERE account_id = ?"
        )

    def append(self, i: int) -> None:
        cur = self.conn.cursor()
        if self.store.is_sqlite:
            cur.execute("BEGIN IMMEDIATE")  # as the application: take the write lock up front
        seq, prev_hash, last, edge = cur.execute(self.select_head, (self.account_id,)).fetchone()
        last_at = self.store.read_time(last)
        now = datetime.now(UTC)
        occurred_at = max(now, last_at) if last_at else now
        list_id, name = new_id("lst"), f"bench list {i}"
        chained = {
            "account_id": self.account_id,
            "seq": seq + 1,
            "occurred_at": occurred_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "actor_type": SYSTEM_CLI.type,
            "actor_id": SYSTEM_CLI.id,
            "actor_name": SYSTEM_CLI.name,
            "on_behalf_of": None,
            "ip": None,
            "user_agent": None,
            "action": "list.create",
            "resource_type": "list",
            "resource_id": list_id,
            "resource_name": name,
            "changes": {"name": {"from": None, "to": name}},
            "request_id": None,
        }
        digest = hashlib.sha256(f"{prev_hash}\n{_canonical(chained)}".encode()).hexdigest()
        at = self.store.bind_time(occurred_at)
        cur.execute(self.insert_list, (list_id, self.account_id, name, at))
        cur.execute(
            self.insert_entry,
            (
                *(chained[k] for k in ("account_id", "seq", "occurred_at")),
                *(chained[k] for k in ("actor_type", "actor_id", "actor_name", "on_behalf_of", "ip")),
                None,  # ip_key
                *(chained[k] for k in ("user_agent", "action", "resource_type", "resource_id")),
                name,
                f'Created list "{name}"',
                _canonical(chained["changes"]),
                None,  # request_id
                prev_hash,
                digest,
            ),
        )
        frontier, completed = tree.append(tree.split(edge), seq, digest)
        if completed:
            cur.execute(self.insert_nodes, (self.account_id, seq + 1, completed))
        cur.execute(self.update_head, (seq + 1, digest, at, b"".join(frontier), self.account_id))
        if self.store.is_sqlite:
            cur.execute("COMMIT")
        else:
            self.conn.commit()
        cur.close()

    def close(self) -> None:
        self.conn.close()


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class WriterSpec:
    path: str  # "recorder" | "raw"
    store: Store
    account_id: str


def _make_writer(spec: WriterSpec) -> Writer:
    return (
        RecorderWriter(spec.store, spec.account_id)
        if spec.path == "recorder"
        else RawWriter(spec.store, spec.account_id)
    )


def _run_round(writer: Writer, start_at: float, duration: float, first: int) -> tuple[int, float]:
    """Append until ``duration`` has passed since the shared start instant; returns (appends, elapsed)."""
    while time.time() < start_at:
        time.sleep(0.0005)
    began = time.perf_counter()
    deadline = began + duration - max(0.0, time.time() - start_at)
    count = 0
    while time.perf_counter() < deadline:
        writer.append(first + count)
        count += 1
    return count, time.perf_counter() - began


def worker_main(wid: int, inbox: Any, outbox: Any) -> None:
    """A writer process: prepare a writer for one account, run timed rounds on command, report counts."""
    writer: Writer | None = None
    done = 0
    while True:
        command, payload = inbox.get()
        try:
            if command == "prepare":
                writer = _make_writer(payload)
                writer.append(0)  # connect, compile and warm the caches outside the timed rounds
                done = 1
                outbox.put(("ready", wid, None))
            elif command == "run" and writer is not None:
                start_at, duration = payload
                count, elapsed = _run_round(writer, start_at, duration, first=done)
                done += count
                outbox.put(("done", wid, (count, elapsed)))
            elif command == "release" and writer is not None:
                writer.close()
                writer = None
                outbox.put(("released", wid, None))
            elif command == "stop":
                return
        except Exception:
            outbox.put(("error", wid, traceback.format_exc()))


class WriterPool:
    """Long-lived spawned writer processes, so a measurement never includes interpreter start-up."""

    def __init__(self, size: int) -> None:
        ctx = mp.get_context("spawn")
        self.outbox: Any = ctx.Queue()
        self.inboxes: list[Any] = [ctx.Queue() for _ in range(size)]
        self.procs = [
            ctx.Process(target=worker_main, args=(i, inbox, self.outbox), daemon=True)
            for i, inbox in enumerate(self.inboxes)
        ]
        for proc in self.procs:
            proc.start()

    def _collect(self, n: int, expect: str) -> list[Any]:
        replies: list[Any] = []
        while len(replies) < n:
            kind, wid, payload = self.outbox.get(timeout=600)
            if kind == "error":
                raise RuntimeError(f"writer {wid} failed:\n{payload}")
            assert kind == expect, (kind, expect)
            replies.append(payload)
        return replies

    def measure(self, specs: list[WriterSpec], *, seconds: float) -> float:
        """One round: appends per second summed over the writers, all started at the same instant."""
        n = len(specs)
        for inbox, spec in zip(self.inboxes, specs, strict=False):
            inbox.put(("prepare", spec))
        self._collect(n, "ready")
        start_at = time.time() + 0.2
        for inbox in self.inboxes[:n]:
            inbox.put(("run", (start_at, seconds)))
        rate = float(sum(count / elapsed for count, elapsed in self._collect(n, "done")))
        for inbox in self.inboxes[:n]:
            inbox.put(("release", None))
        self._collect(n, "released")
        return rate

    def close(self) -> None:
        for inbox in self.inboxes:
            inbox.put(("stop", None))
        for proc in self.procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()


@dataclass(frozen=True)
class AppendResult:
    engine: str
    writers: int
    recorder: list[float]  # entries/s per round
    raw: list[float]

    @property
    def recorder_median(self) -> float:
        return statistics.median(self.recorder)

    @property
    def raw_median(self) -> float:
        return statistics.median(self.raw)


def _make_accounts(store: Store, count: int, label: str) -> list[str]:
    """Accounts made by the real service, so each starts with a real chain and head row."""
    db = store.app_db()
    try:
        return [
            accounts.create_account(
                db,
                name=f"Append bench {label} {i}",
                owner_email=f"append-{label}-{i}-{new_id('x')[2:].lower()}@bench.example",
                password="bench password, not a secret",
                actor=SYSTEM_CLI,
                context=RequestContext(),
            ).account.id
            for i in range(count)
        ]
    finally:
        db.dispose()


def run_appends(store: Store, pool: WriterPool, *, runs: int, seconds: float) -> list[AppendResult]:
    """Each writer count, recorder and raw, on accounts of their own; the raw chains are verified after.

    Recorder and raw rounds alternate (and swap which goes first), so a noisy neighbour on the machine
    weighs on both sides of the ratio alike.
    """
    top = max(WRITER_COUNTS)
    owned = {path: _make_accounts(store, top, path) for path in PATHS}
    results = []
    for writers in WRITER_COUNTS:
        rates: dict[str, list[float]] = {path: [] for path in PATHS}
        for run in range(runs):
            for path in PATHS if run % 2 == 0 else PATHS[::-1]:
                specs = [WriterSpec(path, store, account) for account in owned[path][:writers]]
                rates[path].append(pool.measure(specs, seconds=seconds))
        results.append(AppendResult(store.engine, writers, rates["recorder"], rates["raw"]))
    _verify_chains(store, [owned[path][0] for path in PATHS])
    return results


def _verify_chains(store: Store, account_ids: list[str]) -> None:
    """The raw baseline must build a chain the product accepts, or it is not doing the same work."""
    db = store.app_db()
    try:
        with db.reader() as session:
            for account_id in account_ids:
                verdict = verify_account(session, account_id)
                if not verdict.ok:
                    raise AssertionError(
                        f"chain of {account_id} broken at {verdict.first_bad_seq}: {verdict.reason}"
                    )
    finally:
        db.dispose()
