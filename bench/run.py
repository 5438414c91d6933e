"""``make bench``: append throughput and query latency on SQLite and PostgreSQL, written to bench/RESULTS.md.

Each engine gets a throw-away database built by the real migrations (a file under bench/data/, a
``CREATE DATABASE activitylog_bench_<random>`` on the server), measured in two parts:

1. appends through the recorder vs. the bare driver, with 1, 2 and 4 writer processes (``appends.py``);
2. an account seeded with a year of realistic history, queried through a real uvicorn vs. hand-written
   SQL (``seeding.py``, ``queries.py``).

``--quick`` (20,000 entries, one short run, fewer requests) checks the whole thing in under a minute; the
default run takes a few minutes on a 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime

import psycopg

# isort: split
# Sibling modules of bench/ (run.py runs as a script, so they import as top-level modules).
import report
from appends import WriterPool, run_appends
from queries import run_queries
from seeding import OTHER_ACCOUNTS, seed
from stores import Store, describe, postgres_store, sqlite_store

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small and short: a smoke run in under a minute")
    parser.add_argument(
        "--entries", type=int, help="entries seeded in the account under test (default 200,000)"
    )
    parser.add_argument("--runs", type=int, help="append runs per configuration; the median is reported (3)")
    parser.add_argument("--seconds", type=float, help="length of one append run in seconds (4)")
    parser.add_argument("--requests", type=int, help="timed requests per query (50)")
    parser.add_argument("--pages", type=int, help="keyset depth: next_cursor pages to follow (1000)")
    parser.add_argument("--engines", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql")
    parser.add_argument("--pg-url", default=DEFAULT_PG, help="PostgreSQL server to create the database on")
    parser.add_argument("--keep-data", action="store_true", help="keep bench/data/bench.db for inspection")
    args = parser.parse_args(argv)
    quick = {"entries": 20_000, "runs": 1, "seconds": 0.5, "requests": 10, "pages": 100}
    full = {"entries": 200_000, "runs": 3, "seconds": 4.0, "requests": 50, "pages": 1000}
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
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
    log("appends")
    result.appends += run_appends(store, pool, runs=args.runs, seconds=args.seconds)
    log(f"seeding {args.entries:,} entries (+{OTHER_ACCOUNTS} other accounts)")
    seeded = seed(store, entries=args.entries)
    result.seeding[f"seeding time, {store.engine}"] = f"{seeded.seconds:.1f} s"
    log(f"seeded in {seeded.seconds:.1f} s; queries")
    result.queries.append(run_queries(store, seeded, requests=args.requests, pages=args.pages))
    log("done")


def _logger(engine: str, load: list[float]) -> Callable[[str], None]:
    """Progress on stdout; each step also samples the load average, since the machine may be shared."""
    began = time.perf_counter()

    def log(message: str) -> None:
        load.append(os.getloadavg()[0])
        print(f"[{engine} +{time.perf_counter() - began:5.1f}s] {message}", flush=True)

    return log


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    result = report.Report(
        started=datetime.now(UTC),
        finished=datetime.now(UTC),
        settings={
            "argv": " ".join(argv) or "(defaults)",
            "mode": "quick" if args.quick else "full",
            "entries in the account under test": f"{args.entries:,}",
            "other accounts": f"{OTHER_ACCOUNTS} of {args.entries // OTHER_ACCOUNTS:,} entries",
            "append runs": f"{args.runs} of {args.seconds:g} s each",
            "timed requests per query": str(args.requests),
            "keyset depth (pages of 50)": str(args.pages),
        },
    )
    result.load.append(os.getloadavg()[0])
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
    result.load.append(os.getloadavg()[0])
    path = report.write(result)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
