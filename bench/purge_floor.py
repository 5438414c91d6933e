"""The engine's own floor for a purge: the least the database must do to remove the entries past retention
of a ``--entries`` account while the proofs keep what they need, through the bare driver, with no
application on top. ``bench/retention.py`` times the product's purge against a target (1M of 2M in 60 s);
this says whether the engine alone can meet it on this machine.

The store is seeded as ``bench/retention.py`` seeds it (the same history: 800 days ending 30 days ago, so
about half is past the default 400-day retention; a few small tenants beside), with the migrations' schema,
indexes and triggers. Then, by ``sqlite3`` / ``psycopg`` alone, in pieces of ``--pieces`` seqs, each a
durable transaction of its own: the tombstones (seq, hash, prev_hash and the policy) copied from the
entries, the affected-resource rows deleted, on SQLite the text-search index's copies deleted, and the
entries deleted (the triggers let a delete through only once its tombstone exists). What the product adds
on top — the derived counts kept exact, the holds re-checked, FTS merges bounded, pieces sized by time,
pauses for waiting writers — is not here: this is the floor, not the product. On SQLite every piece size
is timed on the same seeded file (copied back before each); on PostgreSQL, whose product pieces are
``pacing.LARGE_BATCH`` seqs, the first size alone.

    .venv/bin/python bench/purge_floor.py [--entries 2000000] [--engines sqlite,postgresql] \
        [--pieces 20000,4000,2000,1000]

Writes bench/RESULTS-purge-floor.md (or ``--output``).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from tempfile import TemporaryDirectory

from activitylog.db.base import SQLITE_WIDE_CACHE_KIB
from activitylog.db.models import DEFAULT_RETENTION_DAYS

# isort: split
from bulk import settle
from harness import fresh_store
from report import load_average, machine
from retention import BIG_SHARE, ENDS_DAYS_AGO, HISTORY_DAYS
from seeding import seed
from stores import Store

ROOT = Path(__file__).resolve().parent.parent
TARGET_SECONDS, TARGET_ENTRIES = 60.0, 1_000_000  # issue 18: 1M entries of a 2M-entry account in 60 s
PURGE_SEQ = 0  # the run's own entry is the product's; the floor names none

_CUT = "SELECT max(seq) FROM activity_entries WHERE account_id = ? AND occurred_at < ?"
_TOMBSTONES = (
    "INSERT INTO activity_purged (account_id, seq, hash, prev_hash, older_than, retention_days, purge_seq)"
    " SELECT account_id, seq, hash, prev_hash, ?, ?, ? FROM activity_entries"
    " WHERE account_id = ? AND seq BETWEEN ? AND ?"
)
_AFFECTED = "DELETE FROM activity_affected WHERE account_id = ? AND seq BETWEEN ? AND ?"
_SEARCH = (
    "DELETE FROM {table} WHERE rowid IN (SELECT id FROM {table}_content WHERE c3 = ? AND c4 BETWEEN ? AND ?)"
)
_SEARCH_TABLES = ("activity_search", "activity_search_personal")
_ENTRIES = "DELETE FROM activity_entries WHERE account_id = ? AND seq BETWEEN ? AND ?"


@dataclass
class FloorRun:
    engine: str
    piece: int
    entries: int = 0  # in the account
    seed_s: float = 0.0
    purged: int = 0
    seconds: float = 0.0
    piece_ms: list[float] = field(default_factory=list)
    version: str = ""

    @property
    def rate(self) -> float:
        return self.purged / self.seconds if self.seconds else 0.0


def purge_floor(store: Store, account_id: str, piece: int, run: FloorRun) -> None:
    """Tombstone and delete every entry of the account older than the default retention, piece by piece."""
    conn = store.raw_connect()
    if store.is_sqlite:  # the page cache the product's purge pieces get (db.base.widen_page_cache)
        conn.execute(f"PRAGMA cache_size=-{SQLITE_WIDE_CACHE_KIB}")
    try:
        older_than = datetime.now(UTC) - timedelta(days=DEFAULT_RETENTION_DAYS)
        cut = store.bind_time(older_than)
        (last,) = conn.execute(store.sql(_CUT), (account_id, cut)).fetchone()
        version = "SELECT sqlite_version()" if store.is_sqlite else "SHOW server_version"
        run.version = str(conn.execute(version).fetchone()[0])
        if not store.is_sqlite:
            conn.commit()
        statements = [store.sql(_AFFECTED)]
        if store.is_sqlite:
            statements += [_SEARCH.format(table=table) for table in _SEARCH_TABLES]
        statements.append(store.sql(_ENTRIES))
        began = time.perf_counter()
        for lo in range(1, (last or 0) + 1, piece):
            hi = min(lo + piece - 1, last)
            started = time.perf_counter()
            if store.is_sqlite:
                conn.execute("BEGIN IMMEDIATE")
            params = (cut, DEFAULT_RETENTION_DAYS, PURGE_SEQ, account_id, lo, hi)
            run.purged += conn.execute(store.sql(_TOMBSTONES), params).rowcount
            for statement in statements:
                conn.execute(statement, (account_id, lo, hi))
            if store.is_sqlite:
                conn.execute("COMMIT")
            else:
                conn.commit()
            run.piece_ms.append((time.perf_counter() - started) * 1000)
        run.seconds = time.perf_counter() - began
        remaining = conn.execute(
            store.sql("SELECT count(*) FROM activity_entries WHERE account_id = ? AND seq <= ?"),
            (account_id, last or 0),
        ).fetchone()[0]
        if store.is_sqlite:  # nor their text-search copies: the floor does the whole of the work
            for table in _SEARCH_TABLES:
                remaining += conn.execute(
                    f"SELECT count(*) FROM {table}_content WHERE c3 = ? AND c4 <= ?", (account_id, last or 0)
                ).fetchone()[0]
        if remaining:
            raise AssertionError(f"{remaining} rows past retention left after the floor's purge")
    finally:
        conn.close()


def bench_engine(store: Store, entries: int, pieces: list[int]) -> list[FloorRun]:
    """Seed, then time the floor's purge in pieces of each size (SQLite) or of the first (PostgreSQL)."""
    started = time.perf_counter()
    seeded = seed(
        store,
        entries=int(entries / BIG_SHARE),
        accounts_total=5,
        big_share=BIG_SHARE,
        days=HISTORY_DAYS,
        ends_days_ago=ENDS_DAYS_AGO,
    )
    settle(store)  # on SQLite the WAL is now in the file, so the file alone is the seeded store
    seed_s = time.perf_counter() - started
    conn = store.raw_connect()
    try:
        entries = conn.execute(
            store.sql("SELECT count(*) FROM activity_entries WHERE account_id = ?"), (seeded.account_id,)
        ).fetchone()[0]
    finally:
        conn.close()
    print(f"[{store.engine}] seeded {entries:,} entries in {seed_s:.0f} s", flush=True)
    seeded_copy = Path(store.raw_target + ".seeded")
    if store.is_sqlite:
        shutil.copyfile(store.raw_target, seeded_copy)
    runs = []
    for i, piece in enumerate(pieces if store.is_sqlite else pieces[:1]):
        if i:
            for suffix in ("-wal", "-shm"):
                Path(store.raw_target + suffix).unlink(missing_ok=True)
            shutil.copyfile(seeded_copy, store.raw_target)
        run = FloorRun(store.engine, piece, entries, seed_s)
        purge_floor(store, seeded.account_id, piece, run)
        print(
            f"[{store.engine}] pieces of {piece:,}: {run.purged:,} purged in {run.seconds:.1f} s "
            f"({run.rate:,.0f}/s)",
            flush=True,
        )
        runs.append(run)
    return runs


def report(runs: list[FloorRun], load: str) -> str:
    info = machine()
    lines = [
        "# The engine's floor for a purge",
        "",
        f"Written by `bench/purge_floor.py` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} "
        f"({info['nproc']} CPUs, {info['CPU']}; load average {load} before, {load_average()} after); one "
        f"run, nothing else of the product running. Pieces of the seqs shown, each a durable transaction "
        "through the bare driver: tombstones copied from the entries, affected rows deleted, on SQLite the "
        "text-search copies deleted, the entries deleted, under the migrations' indexes and triggers (SQLite "
        f"with the {SQLITE_WIDE_CACHE_KIB // 1024} MiB page cache the product's pieces get). The product's "
        "purge does all this and keeps the derived counts exact on top, in pieces of about 0.1 s on SQLite "
        "(bench/retention.py). "
        "Do not edit by hand.",
        "",
        "| engine | seqs a piece | entries in the account | purged | wall time | entries/s "
        "| piece p50 / max ms | 1M at this rate | target: 1M in 60 s |",
        "|---|---:|---:|---:|---:|---:|---|---:|---|",
    ]
    for run in runs:
        million = TARGET_ENTRIES / run.rate if run.rate else float("inf")
        verdict = "within the engine's reach" if million < TARGET_SECONDS else "**beyond the engine here**"
        lines.append(
            f"| {run.engine} {run.version} | {run.piece:,} | {run.entries:,} | {run.purged:,} | "
            f"{run.seconds:.1f} s | "
            f"{run.rate:,.0f} | {statistics.median(run.piece_ms):,.0f} / {max(run.piece_ms):,.0f} | "
            f"{million:.0f} s | {verdict} |"
        )
    seeded = {run.engine: run.seed_s for run in runs}
    lines += ["", *(f"- {engine}: seeded in {seconds:.0f} s." for engine, seconds in seeded.items())]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--entries", type=int, default=2_000_000, help="entries of the account purged")
    parser.add_argument(
        "--pieces", default="20000,4000,2000,1000", help="seqs a transaction, comma-separated"
    )
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "RESULTS-purge-floor.md")
    options = parser.parse_args()
    load = load_average()
    runs: list[FloorRun] = []
    for engine in options.engines.split(","):
        with (
            TemporaryDirectory(prefix="activitylog-bench-floor-") as work,
            fresh_store(engine, options.pg_url, Path(work)) as store,
        ):
            runs += bench_engine(store, options.entries, [int(n) for n in options.pieces.split(",")])
    text = report(runs, load)
    options.output.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
