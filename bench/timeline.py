"""The activity page's timeline and facet counts at a 2,000,000-entry account over 90 days, on both engines.

For each engine: a store built by the real migrations, seeded with 2M entries over 90 days in one account
(``seeding.seed``, the bench's bulk loader), the derived counts built from the log by the follower's own
code (``counts.catch_up``, timed: what a rebuild costs), then ``activitylog serve`` started as ``make run``
starts it (its worker process included) and the Activity page asked for by a signed-in session, one
request at a time, ``--reps`` times after a warm-up, for a few filters. Beside each: the raw engine
queries in the same run through the bare driver (``sqlite3`` / ``psycopg``), with no application code —
(a) the same counts summed from ``activity_counts`` (the floor for this design) and (b) the same counts
grouped from the entries themselves (what the page would cost without derived counts; fewer runs, it is
slow). Results: bench/RESULTS-timeline.md.

    .venv/bin/python bench/timeline.py [--entries 2000000] [--engines sqlite,postgresql] [--reps 20]
        [--sqlite-file bench/data/x.db]   # reuse a file seeded by this script (skips seeding)
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
from sqlalchemy import text

from activitylog.db.base import connect
from activitylog.db.migrate import upgrade
from activitylog.log import counts

# isort: split
# Sibling modules of bench/ (this runs as a script, so they import as top-level modules).
import seeding
from server import serve
from stores import DATA_DIR, Store, describe, detectors_at_head, postgres_store

RESULTS = Path(__file__).resolve().parent / "RESULTS-timeline.md"
PASSWORD = "bench password, not a secret"  # seeding._account_under_test
BUDGET_MS = 150.0


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def timed(fn: Callable[[], Any], reps: int, warm: int = 1) -> list[float]:
    for _ in range(warm):
        fn()
    out = []
    for _ in range(reps):
        began = time.perf_counter()
        fn()
        out.append((time.perf_counter() - began) * 1000)
    return out


@contextmanager
def store_for(engine: str, args: argparse.Namespace) -> Iterator[tuple[Store, bool]]:
    """The store and whether it still needs seeding."""
    if engine == "sqlite":
        if args.sqlite_file:
            path = Path(args.sqlite_file).resolve()
            store = Store("sqlite", f"sqlite:///{path}", str(path))
            db = store.app_db()
            upgrade(db)
            db.dispose()
            yield store, False
            return
        DATA_DIR.mkdir(exist_ok=True)
        path = DATA_DIR / "timeline.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        store = Store("sqlite", f"sqlite:///{path}", str(path))
        db = store.app_db()
        upgrade(db)
        db.dispose()
        yield store, True
        return
    with postgres_store(args.pg_url) as store:
        yield store, True


def raw_queries(
    store: Store, account_id: str, since: datetime, until: datetime, where: dict[str, str]
) -> dict[str, Callable[[], Any]]:
    """The same counts through the bare driver: summed from the derived counts, and grouped from the log."""
    conn = store.raw_connect()
    sqlite = store.is_sqlite
    day = (
        "strftime('%Y-%m-%d', occurred_at)" if sqlite else "date_trunc('day', occurred_at AT TIME ZONE 'UTC')"
    )
    col = {"actor_type": "actor_type", "actor": "actor_id", "action": "action"}
    cond_log = "".join(f" AND {col[k]} = ?" for k in where)
    values = list(where.values())
    lo, hi = store.bind_time(since), store.bind_time(until)
    timeline_grain = "actor" if "actor" in where else "action" if "action" in where else "type"
    actor_grain = "both" if "action" in where else "actor"
    action_grain = "both" if "actor" in where else "action"

    def run(sql: str, params: list[Any]) -> None:
        conn.execute(store.sql(sql), params).fetchall()

    # grouped as the application groups them: "+column" on SQLite (log/counts.py says why)
    plus = "+" if sqlite else ""

    def from_counts() -> None:
        base = (
            "FROM activity_counts WHERE account_id = ? AND grain = ? AND unit = 'day' "
            "AND start >= ? AND start < ?"
        )
        run(
            f"SELECT start, actor_type, sum(entries) {base}{cond_log} GROUP BY {plus}start, {plus}actor_type",
            [account_id, timeline_grain, lo, hi, *values],
        )
        run(
            f"SELECT actor_id, sum(entries) {base}{cond_log} GROUP BY {plus}actor_id",
            [account_id, actor_grain, lo, hi, *values],
        )
        run(
            f"SELECT action, resource_type, sum(entries) {base}{cond_log} "
            f"GROUP BY {plus}action, {plus}resource_type",
            [account_id, action_grain, lo, hi, *values],
        )

    def from_log() -> None:
        base = "FROM activity_entries WHERE account_id = ? AND occurred_at >= ? AND occurred_at < ?"
        run(
            f"SELECT {day}, actor_type, actor_id, action, resource_type, count(*) {base}{cond_log} "
            "GROUP BY 1, 2, 3, 4, 5",
            [account_id, lo, hi, *values],
        )

    return {"counts": from_counts, "log": from_log, "close": conn.close}


def bench_engine(engine: str, args: argparse.Namespace, out: list[str], log: Callable[[str], None]) -> None:
    with store_for(engine, args) as (store, fresh):
        phases: dict[str, float] = {}
        if fresh:
            began = time.perf_counter()
            seeding.seed(store, entries=args.entries, accounts_total=1, big_share=1.0, days=90)
            phases["seed"] = time.perf_counter() - began
            log(f"{engine}: seeded in {phases['seed']:.0f} s")
        db = connect(store.url)
        with db.engine.connect() as conn:
            account_id, email = conn.execute(
                text(
                    "SELECT a.id, u.email FROM accounts a JOIN users u ON u.account_id = a.id "
                    "ORDER BY a.created_at LIMIT 1"
                )
            ).one()
            n = conn.execute(
                text("SELECT count(*) FROM activity_entries WHERE account_id = :a"), {"a": account_id}
            ).scalar_one()
            first, last = conn.execute(
                text("SELECT min(occurred_at), max(occurred_at) FROM activity_entries WHERE account_id = :a"),
                {"a": account_id},
            ).one()
        began = time.perf_counter()
        counted = counts.rebuild(db, account_id)  # from nothing, as after a loss
        phases["build counts"] = time.perf_counter() - began
        with db.engine.connect() as conn:
            rows = conn.execute(
                text("SELECT count(*) FROM activity_counts WHERE account_id = :a"), {"a": account_id}
            ).scalar_one()
        if not store.is_sqlite:
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM ANALYZE activity_counts"))
                conn.execute(text("CHECKPOINT"))  # the rebuild's dirty pages written now, not during timing
        db.dispose()
        log(
            f"{engine}: {n:,} entries, counts built ({counted:,} seqs, {rows:,} rows) "
            f"in {phases['build counts']:.0f} s"
        )
        first_at = store.read_time(first)
        last_at = store.read_time(last)
        assert first_at and last_at
        top_actor = None
        load_start = os.getloadavg()
        workdir = DATA_DIR / f"timeline-{engine}"
        workdir.mkdir(parents=True, exist_ok=True)
        lines = []
        detectors_at_head(store)  # the served worker follows new entries only, as it would have all along
        with (
            serve(store.url, workdir=workdir) as server,
            httpx.Client(base_url=server.url, timeout=300) as client,
        ):
            r = client.post("/sign-in", data={"email": email, "password": PASSWORD, "next": "/activity"})
            assert r.status_code == 303, r.text[:300]
            key_facets = client.get("/api/v1/activity/facets").json()
            top_actor = key_facets["actor"][0]["id"]
            scenarios: list[tuple[str, dict[str, str], dict[str, str]]] = [
                ("all 90 days (day buckets)", {}, {}),
                ("window=30d", {"window": "30d"}, {}),
                (
                    "last 2 days of data, hour buckets",
                    {"since": (last_at - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")},
                    {},
                ),
                ("actor_type=session", {"actor_type": "session"}, {"actor_type": "session"}),
                ("action=contact.update", {"action": "contact.update"}, {"action": "contact.update"}),
                ("actor=<busiest actor>", {"actor": top_actor}, {"actor": top_actor}),
            ]
            now = datetime.now(UTC)
            for label, params, where in scenarios:
                path = "/activity" + ("?" + urlencode(params) if params else "")
                api = "?" + urlencode({k: v for k, v in params.items() if k != "window"}) if params else ""
                if "window" in params:
                    api = "?" + urlencode(
                        {"since": (now - timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")}
                    )

                def page(path: str = path) -> None:
                    response = client.get(path)
                    assert response.status_code == 200 and "data-timeline" in response.text, (
                        response.status_code
                    )

                def both(api: str = api) -> None:
                    for endpoint in ("histogram", "facets"):
                        response = client.get(f"/api/v1/activity/{endpoint}{api}")
                        assert response.status_code == 200, response.text[:200]

                page_ms = timed(page, args.reps)
                api_ms = timed(both, args.reps)
                since = first_at.replace(hour=0, minute=0, second=0, microsecond=0)
                if "since" in params:
                    since = datetime.fromisoformat(params["since"].replace("Z", "+00:00")).replace(
                        minute=0, second=0
                    )
                if "window" in params:
                    since = (now - timedelta(days=30)).replace(hour=0, minute=0, second=0, microsecond=0)
                raw = raw_queries(store, account_id, since, now, where)
                counts_ms = timed(raw["counts"], args.reps)
                log_ms = timed(raw["log"], args.log_reps, warm=0)
                raw["close"]()
                p50, p95 = statistics.median(page_ms), percentile(page_ms, 95)
                mark = "" if p95 < BUDGET_MS else " ✗"
                lines.append(
                    f"| {label} | **{p50:.0f} / {p95:.0f}**{mark} "
                    f"| {statistics.median(api_ms):.0f} / {percentile(api_ms, 95):.0f} "
                    f"| {statistics.median(counts_ms):.1f} / {percentile(counts_ms, 95):.1f} "
                    f"| {statistics.median(log_ms):,.0f} ({len(log_ms)} runs) "
                    f"| {p50 / max(statistics.median(counts_ms), 0.01):.1f}x "
                    f"| {statistics.median(log_ms) / p50:,.0f}x | `{path}` |"
                )
                log(f"{engine}: {lines[-1]}")
        info = describe(store)
        load_end = os.getloadavg()
        out += [
            f"## {engine} ({info.get('version', '')})",
            "",
            f"- {n:,} entries in the account, {first_at:%Y-%m-%d} to {last_at:%Y-%m-%d}; seeding: "
            + (
                f"{phases['seed']:.0f} s"
                if fresh
                else f"reused `{args.sqlite_file}` (seeded by this script's seeder with the same parameters)"
            ),
            f"- derived counts built from the log by `counts.rebuild`: {phases['build counts']:.0f} s, "
            f"{rows:,} rows "
            "(what a rebuild after a lost cursor costs; the worker does it the same way, in batches of "
            "about 0.1 s each)",
            f"- load average at the start {load_start[0]:.2f} / {load_start[1]:.2f} / {load_start[2]:.2f}, "
            f"at the end {load_end[0]:.2f} / {load_end[1]:.2f} / {load_end[2]:.2f}",
            "",
            "| view | page p50 / p95 ms | API histogram + facets p50 / p95 ms | raw: counts p50 / p95 ms "
            "| raw: log grouped, median ms | page ÷ raw counts | raw log ÷ page | URL |",
            "|---|---|---|---|---|---:|---:|---|",
            *lines,
            "",
        ]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--entries", type=int, default=2_000_000)
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--log-reps", type=int, default=2, help="runs of the raw grouped count over the log")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--sqlite-file", help="reuse a SQLite file this script's seeder made")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    began = time.time()
    out: list[str] = []

    def log(message: str) -> None:
        print(f"[{time.time() - began:6.0f} s] {message}", flush=True)

    for engine in args.engines.split(","):
        bench_engine(engine, args, out, log)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    head = [
        "# Timeline and facet counts at a 2M-entry account",
        "",
        "Written by `bench/timeline.py`; do not edit by hand. The Activity page (rows + timeline + facets) "
        "asked for by a signed-in session over loopback HTTP/1.1 from `activitylog serve` started as "
        f"`make run` starts it (worker process included), {args.reps} times after one warm-up, one request "
        "at a time; wall time until the whole body has arrived. "
        f"Budget: **{BUDGET_MS:.0f} ms p95** for the page; ✗ marks a p95 over it.",
        "",
        "Beside each view, in the same run, the raw engine through the bare driver: *raw: counts* sums the "
        "same three answers (timeline, actors, actions) from `activity_counts` with no application code "
        "(the floor of "
        "this design); *raw: log grouped* groups the window's entries themselves by day and the four columns "
        "(what any design without derived counts pays per request).",
        "",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; code `{commit}`; {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}; the run took {(time.time() - began) / 60:.1f} min; "
        "the machine is shared with other work (see the load averages)",
        "",
    ]
    Path(args.out).write_text("\n".join(head + out) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
