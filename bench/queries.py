"""Query latency through the HTTP API, beside the raw engine running the equivalent hand-written SQL.

The API side is a real uvicorn on loopback serving ``create_app``, called with httpx over one keep-alive
connection, so a figure includes everything a client waits for: HTTP, authentication, query building,
the query, serialisation. The raw side runs the same WHERE / ORDER BY / LIMIT through the bare driver on
the same database and indexes. Their ratio is the application's overhead; a slow *raw* figure is a missing
or unused index, and its plan is kept for the report. The first response of every case is compared with
the raw rows, so the two sides are known to answer the same question.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import uvicorn

from activitylog.config import Settings
from activitylog.log.actions import actions_for
from activitylog.log.record import ip_key
from activitylog.web.app import create_app

# isort: split
# Sibling modules of bench/ (run.py runs as a script, so they import as top-level modules).
from seeding import SEARCH_WORD, Seeded
from stores import Store

PAGE = 50
WARMUP = 3


@dataclass(frozen=True)
class Case:
    """One question asked both ways: API query parameters, and the hand-written WHERE fragments."""

    name: str
    params: dict[str, str]
    where: tuple[tuple[str, tuple[Any, ...]], ...] = ()


@dataclass
class QueryResult:
    engine: str
    name: str
    params: dict[str, str]
    matches: int  # rows in the account matching the filter (selectivity)
    returned: int
    api_ms: list[float]
    raw_ms: list[float]
    plan: str


@dataclass
class QueryRun:
    engine: str
    results: list[QueryResult]
    walk_pages: int
    walk_seconds: float
    verify_seconds: float
    verified: int
    row_counts: dict[str, int]


def _iso(instant: datetime) -> str:
    return instant.isoformat().replace("+00:00", "Z")


def _in(column: str, values: list[str] | tuple[str, ...]) -> tuple[str, tuple[Any, ...]]:
    return f"{column} IN ({', '.join('?' * len(values))})", tuple(values)


def _actions(token: str) -> tuple[str, tuple[Any, ...]]:
    expanded = actions_for(token)
    assert expanded is not None
    return _in("action", sorted(expanded))


def _cidr(block: str) -> tuple[str, tuple[Any, ...]]:
    net = ipaddress.ip_network(block, strict=False)
    return "(ip_key >= ? AND ip_key <= ?)", (
        ip_key(str(net.network_address)),
        ip_key(str(net.broadcast_address)),
    )


def _window(store: Store, since: datetime, until: datetime) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    return ("occurred_at >= ?", (store.bind_time(since),)), ("occurred_at < ?", (store.bind_time(until),))


def _text(word: str) -> tuple[str, tuple[Any, ...]]:
    pattern = f"%{word.lower()}%"  # the benchmark's words need no LIKE escaping
    like = " LIKE ? ESCAPE '\\'"
    sql = f"(lower(summary){like} OR lower(resource_name){like} OR lower(actor_name){like})"
    return sql, (pattern, pattern, pattern)


def cases(store: Store, seeded: Seeded) -> list[Case]:
    """The filters of the contract, alone and combined, with values a real user would pick."""
    pop = seeded.population
    actor = pop.actors[3]  # a busy but not the busiest actor
    person = next(a for a in pop.actors if a.type == "session")
    broadcast_id = pop.resources["broadcast"][0][0]  # the most-touched broadcast
    week = seeded.start + timedelta(days=180)
    quarter = seeded.start + timedelta(days=120)
    return [
        Case("first page (no filter)", {}),
        Case("actor", {"actor": actor.id}, (_in("actor_id", [actor.id]),)),
        Case("actor_type", {"actor_type": "api_key"}, (_in("actor_type", ["api_key"]),)),
        Case("action (full)", {"action": "broadcast.send"}, (_actions("broadcast.send"),)),
        Case("action (verb)", {"action": "update"}, (_actions("update"),)),
        Case("action (wildcard)", {"action": "broadcast.*"}, (_actions("broadcast.*"),)),
        Case(
            "resource_type + resource_id",
            {"resource_type": "broadcast", "resource_id": broadcast_id},
            (_in("resource_type", ["broadcast"]), _in("resource_id", [broadcast_id])),
        ),
        Case("ip (CIDR /24)", {"ip": "198.51.100.0/24"}, (_cidr("198.51.100.0/24"),)),
        Case(
            "since/until (7 days)",
            {"since": _iso(week), "until": _iso(week + timedelta(days=7))},
            _window(store, week, week + timedelta(days=7)),
        ),
        Case(f"q ({SEARCH_WORD!r})", {"q": SEARCH_WORD}, (_text(SEARCH_WORD),)),
        Case("q (no match)", {"q": "no-such-text"}, (_text("no-such-text"),)),
        Case(
            "actor + action + window (90 days)",
            {
                "actor": person.id,
                "action": "broadcast.*",
                "since": _iso(quarter),
                "until": _iso(quarter + timedelta(days=90)),
            },
            (
                _in("actor_id", [person.id]),
                _actions("broadcast.*"),
                *_window(store, quarter, quarter + timedelta(days=90)),
            ),
        ),
    ]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(store: Store) -> Iterator[str]:
    """The real application under a real uvicorn, in a thread, on a free loopback port."""
    db = store.app_db()
    port = _free_port()
    config = uvicorn.Config(
        create_app(Settings(database_url=store.url), db),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        db.dispose()


def _timed_pair(
    api: Callable[[], object], raw: Callable[[], object], n: int
) -> tuple[list[float], list[float]]:
    """Alternate the two calls, so both sides of the ratio see the same moments of a shared machine."""
    for _ in range(WARMUP):
        api()
        raw()
    api_ms: list[float] = []
    raw_ms: list[float] = []
    for _ in range(n):
        for call, out in ((api, api_ms), (raw, raw_ms)):
            began = time.perf_counter()
            call()
            out.append((time.perf_counter() - began) * 1000)
    return api_ms, raw_ms


class Raw:
    """The hand-written side: one driver connection, autocommit reads.

    On PostgreSQL, psycopg's automatic server-side prepare is off, so every execution is planned with its
    real values — the plan that EXPLAIN shows in the report. (With it on, PostgreSQL switches a statement
    to a value-blind generic plan after a few runs on one connection; the API's pooled connections switch at
    different moments, so a value-sensitive query would compare two different plans.)
    """

    def __init__(self, store: Store, account_id: str) -> None:
        self.store = store
        self.account_id = account_id
        self.conn = store.raw_connect()
        if not store.is_sqlite:
            self.conn.autocommit = True
            self.conn.prepare_threshold = None

    def statement(self, case: Case, *, count: bool = False) -> tuple[str, tuple[Any, ...]]:
        clauses = ["account_id = ?", *(sql for sql, _ in case.where)]
        args: tuple[Any, ...] = (self.account_id, *(v for _, values in case.where for v in values))
        head = "SELECT count(*)" if count else "SELECT *"
        tail = "" if count else " ORDER BY seq DESC LIMIT ?"
        sql = f"{head} FROM activity_entries WHERE {' AND '.join(clauses)}{tail}"
        return self.store.sql(sql), args if count else (*args, PAGE + 1)

    def rows(self, case: Case) -> list[Any]:
        sql, args = self.statement(case)
        return list(self.conn.execute(sql, args).fetchall())

    def count(self, case: Case) -> int:
        sql, args = self.statement(case, count=True)
        return int(self.conn.execute(sql, args).fetchone()[0])

    def plan(self, case: Case) -> str:
        sql, args = self.statement(case)
        if self.store.is_sqlite:
            rows = self.conn.execute("EXPLAIN QUERY PLAN " + sql, args).fetchall()
            depth: dict[int, int] = {0: -1}
            lines = []
            for node, parent, _, detail in rows:
                depth[node] = depth.get(parent, -1) + 1
                lines.append("  " * depth[node] + detail)
            return "\n".join(lines)
        rows = self.conn.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql, args).fetchall()
        return "\n".join(r[0] for r in rows)

    def scalar(self, sql: str, *args: Any) -> int:
        return int(self.conn.execute(self.store.sql(sql), args).fetchone()[0])

    def close(self) -> None:
        self.conn.close()


def _measure(client: httpx.Client, raw: Raw, case: Case, engine: str, n: int) -> QueryResult:
    params = {"limit": str(PAGE), **case.params}
    first = client.get("/api/v1/activity", params=params)
    first.raise_for_status()
    api_seqs = [e["seq"] for e in first.json()["data"]]
    raw_seqs = [r[1] for r in raw.rows(case)][:PAGE]
    if api_seqs != raw_seqs:
        raise AssertionError(
            f"{case.name}: API and hand-written SQL disagree: {api_seqs[:5]} vs {raw_seqs[:5]}"
        )

    def api_call() -> None:
        client.get("/api/v1/activity", params=params).raise_for_status()

    api_ms, raw_ms = _timed_pair(api_call, lambda: raw.rows(case), n)
    return QueryResult(
        engine=engine,
        name=case.name,
        params=case.params,
        matches=raw.count(case),
        returned=len(api_seqs),
        api_ms=api_ms,
        raw_ms=raw_ms,
        plan=raw.plan(case),
    )


def _walk(client: httpx.Client, pages: int) -> tuple[str, int, int, float]:
    """Follow ``next_cursor`` ``pages`` times; returns the cursor reached, its seq bound, pages, seconds."""
    cursor: str | None = None
    last_seq = 0
    began = time.perf_counter()
    done = 0
    for _ in range(pages):
        params = {"limit": str(PAGE), **({"cursor": cursor} if cursor else {})}
        body = client.get("/api/v1/activity", params=params).raise_for_status().json()
        if body["next_cursor"] is None:
            break
        cursor, last_seq, done = body["next_cursor"], body["data"][-1]["seq"], done + 1
    assert cursor is not None, "too few entries to page through"
    return cursor, last_seq, done, time.perf_counter() - began


def run_queries(store: Store, seeded: Seeded, *, requests: int, pages: int) -> QueryRun:
    """Verify the seeded chain through the API, then time every case and the deep keyset page."""
    raw = Raw(store, seeded.account_id)
    headers = {"Authorization": f"Bearer {seeded.api_key}", "User-Agent": "activitylog-bench"}
    try:
        with serve(store) as url, httpx.Client(base_url=url, headers=headers, timeout=600) as client:
            began = time.perf_counter()
            verdict = client.get("/api/v1/activity/verify").raise_for_status().json()
            verify_seconds = time.perf_counter() - began
            if not verdict["ok"]:
                raise AssertionError(f"seeded chain does not verify: {verdict}")
            results = [_measure(client, raw, case, store.engine, requests) for case in cases(store, seeded)]
            depth = min(pages, seeded.generated[seeded.account_id] // PAGE - 1)
            cursor, bound, walked, walk_seconds = _walk(client, depth)
            deep = Case(
                f"keyset page at depth {walked}",
                {"cursor": cursor},
                (("seq < ?", (bound,)),),
            )
            results.append(_measure(client, raw, deep, store.engine, requests))
        counts = {
            "activity_entries (all accounts)": raw.scalar("SELECT count(*) FROM activity_entries"),
            "activity_entries (account under test)": raw.scalar(
                "SELECT count(*) FROM activity_entries WHERE account_id = ?", seeded.account_id
            ),
            "accounts": raw.scalar("SELECT count(*) FROM accounts"),
        }
    finally:
        raw.close()
    return QueryRun(store.engine, results, walked, walk_seconds, verify_seconds, verdict["checked"], counts)
