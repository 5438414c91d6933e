"""``make bench``: the log at scale on SQLite and PostgreSQL, each figure beside the raw engine's own.

Each engine gets a throw-away database built by the real migrations (a file under bench/data/, a
``CREATE DATABASE activitylog_bench_<random>`` on the server), then:

1. seeding: 1,000 accounts, one holding 20% of ``--entries``, 50 actors each, a year of history with
   realistic diffs and valid hash chains, bulk-loaded (``seeding.py``, ``history.py``, ``bulk.py``);
2. queries: the first page of every filter, a combination and a keyset page 1,000 deep, through the HTTP
   API of ``activitylog serve`` started as ``make run`` starts it (``server.py``: a web process per CPU,
   the worker beside them, JSON log lines) vs. the same SQL on the bare driver, plus plans
   (``queries.py``); the derived counts and the alert detectors are first brought to the seeded head, as the
   worker would have kept them while the history was written, so it runs in its steady state;
3. exports: the CSV export endpoint vs. ``COPY … TO STDOUT`` / the ``sqlite3`` shell, with the peak RSS of
   the web process serving it (``exports.py``);
4. appends through the recorder vs. hand-written SQL, 1, 2 and 4 writers on their own accounts
   (``appends.py``).

Results: bench/RESULTS.md and bench/PLANS.md (``report.py``). ``--entries 1000000`` is the default (about
10-20 minutes on a 2-core machine); ``--entries 10000000`` is the full-size run, by hand (about an hour);
``--quick`` (50,000 entries, short runs) checks the whole thing in about a minute.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime

import httpx
import psycopg

# isort: split
# Sibling modules of bench/ (run.py runs as a script, so they import as top-level modules).
import report
from appends import WriterPool, run_appends
from exports import run_exports
from queries import run_queries
from seeding import seed
from server import serve
from stores import (
    Store,
    counts_at_head,
    describe,
    detectors_at_head,
    postgres_store,
    row_counts,
    sqlite_store,
)

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small and short: a smoke run in about a minute")
    parser.add_argument("--entries", type=int, help="entries over all accounts (default 1,000,000)")
    parser.add_argument("--accounts", type=int, default=1000, help="accounts; the first holds 20%% (1000)")
    parser.add_argument("--runs", type=int, help="append runs per configuration; the median is reported (3)")
    parser.add_argument("--seconds", type=float, help="length of one append run in seconds (4)")
    parser.add_argument("--requests", type=int, help="timed requests per query (60)")
    parser.add_argument(
        "--budget", type=float, help="seconds a slow query may take before it stops early (30)"
    )
    parser.add_argument("--pages", type=int, help="keyset depth: next_cursor pages to follow (1000)")
    parser.add_argument("--export-runs", type=int, help="runs of each export, API and raw (3)")
    parser.add_argument("--engines", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql")
    parser.add_argument("--pg-url", default=DEFAULT_PG, help="PostgreSQL server to create the database on")
    parser.add_argument("--keep-data", action="store_true", help="keep bench/data/bench.db for inspection")
    args = parser.parse_args(argv)
    quick = {"entries": 50_000, "runs": 1, "seconds": 0.5, "requests": 10, "budget": 3.0, "pages": 100}
    full = {"entries": 1_000_000, "runs": 3, "seconds": 4.0, "requests": 60, "budget": 30.0, "pages": 1000}
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.export_runs is None:
        args.export_runs = 1 if args.quick else 3
    return args


def _open(engine: str, args: argparse.Namespace) -> AbstractContextManager[Store]:
    if engine == "sqlite":
        return sqlite_store(keep=args.keep_data)
    if engine == "postgresql":
        return postgres_store(args.pg_url)
    raise SystemExit(f"unknown engine {engine!r}")


def _unreachable(engine: str, args: argparse.Namespace) -> str | None:
    """Why the engine cannot be benchmarked here, if it cannot: PostgreSQL is optional, not a crash."""
    if engine != "postgresql":
        return None
    try:
        psycopg.connect(args.pg_url, connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        return f"cannot reach {args.pg_url}: {str(exc).strip().splitlines()[0]}"
    return None


def bench_engine(store: Store, pool: WriterPool, args: argparse.Namespace, result: report.Report) -> None:
    log = _logger(store.engine, result.load)
    result.engines[store.engine] = describe(store)
    log(f"seeding {args.entries:,} entries over {args.accounts:,} accounts")
    seeded = seed(store, entries=args.entries, accounts_total=args.accounts)
    result.seeded[store.engine] = seeded
    result.rows[store.engine] = row_counts(store, seeded.account_id)
    log(f"seeded in {seeded.seconds:.1f} s; counting it, as the worker would have")
    began = time.perf_counter()
    counted = counts_at_head(store)
    detectors_at_head(store)
    took = time.perf_counter() - began
    result.engines[store.engine]["counts and detectors brought to the head"] = (
        f"{counted:,} entries in {took:.1f} s"
    )
    log(f"counted {counted:,} entries in {took:.1f} s; serving")
    headers = {"Authorization": f"Bearer {seeded.api_key}", "User-Agent": "activitylog-bench"}
    with (
        serve(store.url) as server,
        httpx.Client(base_url=server.url, headers=headers, timeout=3600) as client,
    ):
        log("queries")
        result.queries.append(
            run_queries(store, seeded, client, requests=args.requests, pages=args.pages, budget=args.budget)
        )
        log("exports")
        result.exports += run_exports(store, seeded, client, server, runs=args.export_runs)
    log("appends")
    result.appends += run_appends(store, pool, runs=args.runs, seconds=args.seconds)
    log("done")


def _logger(engine: str, load: list[float]) -> Callable[[str], None]:
    """Progress on stdout; each step also samples the load average, since the machine may be shared."""
    began = time.perf_counter()

    def log(message: str) -> None:
        load.append(os.getloadavg()[0])
        print(f"[{engine} +{time.perf_counter() - began:6.1f}s] {message}", flush=True)

    return log


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    result = report.Report(
        started=datetime.now(UTC),
        finished=datetime.now(UTC),
        load_start=os.getloadavg(),
        settings={
            "argv": " ".join(argv) or "(defaults)",
            "mode": "quick" if args.quick else "full",
            "entries (all accounts)": f"{args.entries:,}",
            "accounts": f"{args.accounts:,}, the first holding 20% of the entries",
            "append runs": f"{args.runs} of {args.seconds:g} s each",
            "timed requests per query": f"{args.requests} (fewer if a query exceeds {args.budget:g} s)",
            "keyset depth (pages of 50)": str(args.pages),
            "export runs": str(args.export_runs),
        },
    )
    result.load.append(result.load_start[0])
    pool = WriterPool(4)
    try:
        for engine in engines:
            reason = _unreachable(engine, args)
            if reason:
                result.skipped[engine] = reason
                print(f"[{engine}] skipped: {reason}", flush=True)
                continue
            with _open(engine, args) as store:
                bench_engine(store, pool, args, result)
    finally:
        pool.close()
    result.finished = datetime.now(UTC)
    result.load_end = os.getloadavg()
    result.load.append(result.load_end[0])
    for path in report.write(result):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
