"""Query latency through the HTTP API, beside the raw engine running the very same SQL.

The API side is the real application in its own uvicorn process (``server``), called with httpx over one
keep-alive connection, so a figure includes everything a client waits for: HTTP, authentication, query
building, the query, serialisation. The raw side replays, through the bare driver on the same database,
the statements the application sends for that page (captured at the driver, ``appsql``). Their ratio is
the application's overhead; a slow *raw* figure is the query itself (an unused or missing index), and its
plans are in PLANS.md. The first response of every case is compared with the raw rows, so both sides are
known to answer the same question.
"""

from __future__ import annotations

import ipaddress
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx

# isort: split
# Sibling modules of bench/ (run.py runs as a script, so they import as top-level modules).
import appsql
import explain
from appsql import Statement
from seeding import SEARCH_WORD, Seeded
from stores import Store

PAGE = 50
WARMUP = 3


@dataclass(frozen=True)
class Case:
    name: str
    params: dict[str, str]


@dataclass
class QueryResult:
    name: str
    params: dict[str, str]
    matches: int  # entries of the account that satisfy the filter (selectivity)
    api_ms: list[float]
    raw_ms: list[float]
    statements: list[Statement]
    plan: explain.Plan


@dataclass
class QueryRun:
    engine: str
    results: list[QueryResult] = field(default_factory=list)
    walk_pages: int = 0
    walk_seconds: float = 0.0
    verify_seconds: float = 0.0
    verified: int = 0


def _iso(instant: datetime) -> str:
    return instant.isoformat().replace("+00:00", "Z")


def cases(seeded: Seeded) -> list[Case]:
    """The contract's filters, alone and combined, with values a real user would pick."""
    pop = seeded.population
    actor = pop.general[1]  # a busy actor, not the busiest
    person = next(a for a in pop.general if a.type == "session")
    network = next(a for a in pop.general if a.addresses and ":" not in a.addresses[0].ip).addresses[0].ip
    block = str(ipaddress.ip_network(f"{network}/24", strict=False))
    broadcast_id = pop.resources["broadcast"][0].id  # the most-touched broadcast
    week = seeded.start + timedelta(days=180)
    quarter = seeded.start + timedelta(days=120)
    return [
        Case("first page (no filter)", {}),
        Case("actor", {"actor": actor.id}),
        Case("actor_type", {"actor_type": "api_key"}),
        Case("action (full)", {"action": "broadcast.send"}),
        Case("action (verb)", {"action": "update"}),
        Case("action (wildcard)", {"action": "broadcast.*"}),
        Case("resource_type + resource_id", {"resource_type": "broadcast", "resource_id": broadcast_id}),
        Case("ip (CIDR /24)", {"ip": block}),
        Case("since/until (7 days)", {"since": _iso(week), "until": _iso(week + timedelta(days=7))}),
        Case(f"q ({SEARCH_WORD!r})", {"q": SEARCH_WORD}),
        Case("q (no match)", {"q": "no-such-text"}),
        Case(
            "actor + action + window (90 days)",
            {
                "actor": person.id,
                "action": "broadcast.*",
                "since": _iso(quarter),
                "until": _iso(quarter + timedelta(days=90)),
            },
        ),
    ]


class Raw:
    """The bare driver on the same database, autocommit reads.

    On PostgreSQL psycopg's automatic prepare is off, so every execution is planned with its real values
    (the custom plan). The application's pooled psycopg connections prepare a statement after 5 runs, and
    PostgreSQL may then switch it to a generic plan: PLANS.md shows both, with their execution times.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.conn = store.raw_connect()
        if not store.is_sqlite:
            self.conn.autocommit = True
            self.conn.prepare_threshold = None

    def run(self, statements: list[Statement]) -> list[Any]:
        """The page's seqs: the entry rows of every statement in order (a recent window, then the index),
        skipping the lookups in between (newest seq, a time window's seq range)."""
        page: list[Any] = []
        for s in statements:
            cur = self.conn.execute(s.sql, s.params)
            rows = cur.fetchall()
            names = [d[0] for d in cur.description]
            if "seq" in names and "hash" in names:
                page.extend(r[names.index("seq")] for r in rows)
        return page

    def close(self) -> None:
        self.conn.close()


def _timed_pair(
    api: Callable[[], object], raw: Callable[[], object], n: int, budget: float
) -> tuple[list[float], list[float]]:
    """Alternate the two calls, so both sides see the same moments of a shared machine; stop after ``n``
    pairs, or after ``budget`` seconds once 10 pairs are in (a very slow query still gets a p95)."""
    for _ in range(WARMUP):
        api()
        raw()
    api_ms: list[float] = []
    raw_ms: list[float] = []
    deadline = time.monotonic() + budget
    while len(api_ms) < n and (len(api_ms) < 10 or time.monotonic() < deadline):
        for call, out in ((api, api_ms), (raw, raw_ms)):
            began = time.perf_counter()
            call()
            out.append((time.perf_counter() - began) * 1000)
    return api_ms, raw_ms


def _measure(
    client: httpx.Client, raw: Raw, store: Store, seeded: Seeded, case: Case, n: int, budget: float
) -> QueryResult:
    db = store.app_db()
    try:
        statements = appsql.page(db, seeded.account_id, case.params, PAGE)
        matches = appsql.matching(db, seeded.account_id, case.params)
    finally:
        db.dispose()
    params = {"limit": str(PAGE), **case.params}
    first = client.get("/api/v1/activity", params=params).raise_for_status().json()
    api_seqs = [e["seq"] for e in first["data"]]
    raw_seqs = raw.run(statements)[:PAGE]
    if api_seqs != raw_seqs:
        raise AssertionError(f"{case.name}: API and raw SQL disagree: {api_seqs[:5]} vs {raw_seqs[:5]}")

    def api_call() -> None:
        client.get("/api/v1/activity", params=params).raise_for_status()

    api_ms, raw_ms = _timed_pair(api_call, lambda: raw.run(statements), n, budget)
    plan = explain.plan(raw.conn, store, statements)
    return QueryResult(case.name, case.params, matches, api_ms, raw_ms, statements, plan)


def _walk(client: httpx.Client, pages: int) -> tuple[str, int, float]:
    """Follow ``next_cursor`` ``pages`` times; returns the cursor reached, pages walked, seconds."""
    cursor: str | None = None
    began = time.perf_counter()
    done = 0
    for _ in range(pages):
        params = {"limit": str(PAGE), **({"cursor": cursor} if cursor else {})}
        body = client.get("/api/v1/activity", params=params).raise_for_status().json()
        if body["next_cursor"] is None:
            break
        cursor, done = body["next_cursor"], done + 1
    assert cursor is not None, "too few entries to page through"
    return cursor, done, time.perf_counter() - began


def run_queries(
    store: Store, seeded: Seeded, client: httpx.Client, *, requests: int, pages: int, budget: float
) -> QueryRun:
    """Verify the big account's chain through the API, then time every case and the deep keyset page."""
    run = QueryRun(store.engine)
    began = time.perf_counter()
    verdict = client.get("/api/v1/activity/verify").raise_for_status().json()
    run.verify_seconds = time.perf_counter() - began
    if not verdict["ok"]:
        raise AssertionError(f"seeded chain does not verify: {verdict}")
    run.verified = verdict["checked"]
    raw = Raw(store)
    try:
        for case in cases(seeded):
            result = _measure(client, raw, store, seeded, case, requests, budget)
            run.results.append(result)
            print(f"    {case.name}: API p50 {statistics.median(result.api_ms):.1f} ms", flush=True)
        cursor, run.walk_pages, run.walk_seconds = _walk(client, pages)
        deep = Case(f"keyset page {run.walk_pages} deep", {"cursor": cursor})
        run.results.append(_measure(client, raw, store, seeded, deep, requests, budget))
    finally:
        raw.close()
    return run
