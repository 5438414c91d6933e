"""``bench/partitions.py``: would monthly time partitions make a purge cheaper on PostgreSQL? (issue: "measure
whether time partitioning (declarative, by month, created ahead) makes purge cheaper than deleting rows at 10M
entries").

In a throw-away database built by the real migrations, two copies of ``activity_entries`` with its columns
and every B-tree index of the migrations (each led by ``account_id``), filled with the same ``--entries`` rows
over 24 months in ``--accounts`` accounts (the first holding 20%): *plain* (the product's layout) and
*monthly* (``PARTITION BY RANGE (occurred_at)``, one partition a month, created ahead; its primary key becomes
``(account_id, seq, occurred_at)``, since a unique key of a partitioned table must hold the partition key).
The text-search GIN index is left out of both (the same on each side; it is not what a purge changes).
Then, each side timed alike:

1. **purge by rows**: the big account's entries of its oldest months (``--purge`` of them, about 1M at the
   defaults), deleted the way ``activity_purge()`` deletes them (``account_id`` and a seq range, pieces of
   20,000 seqs, a commit each; on *monthly* with the cut-off time too, so only the old partitions are
   visited), then ``VACUUM`` of the table (what makes the space reusable, part of a delete's real cost).
   A purge's tombstones and its subtraction from the counts are the same work whichever the layout, so
   they are left out of both;
2. **purge by partition** (*monthly* only): ``DETACH`` and ``DROP`` of the oldest month whole, which is
   possible only when no account keeps any entry of that month (every account's retention past it and no
   legal hold in it);
3. **appends**: single-row durable inserts into each, alternating rounds (entries/s);
4. **a first page**: the big account's 50 newest entries of one action, through the action index (median of
   ``--queries``).

Results: bench/RESULTS-partitions.md.

    .venv/bin/python bench/partitions.py [--entries 10000000] [--pg-url postgresql://…/postgres]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stores import describe, postgres_store

RESULTS = Path(__file__).resolve().parent / "RESULTS-partitions.md"
MONTHS = 24
START = datetime(2025, 1, 1, tzinfo=UTC)
PIECE = 20_000
ACTIONS = ("contact.create", "contact.update", "contact.delete", "suppression.create", "list.update")

COLUMNS = """
  account_id varchar(40) NOT NULL, seq bigint NOT NULL, occurred_at timestamptz NOT NULL,
  actor_type varchar(20) NOT NULL, actor_id varchar(60) NOT NULL, actor_name varchar(320),
  on_behalf_of varchar(80), ip varchar(45), ip_key varchar(33), user_agent varchar(512),
  action varchar(60) NOT NULL, resource_type varchar(40) NOT NULL, resource_id varchar(320) NOT NULL,
  resource_name varchar(998), summary text NOT NULL, changes text NOT NULL, request_id varchar(64),
  prev_hash varchar(64) NOT NULL, hash varchar(64) NOT NULL, csv_escapes bigint, salts text
"""

# Rows like the recorder's: hex hashes, a changes object, an address, a user agent; seq per account in
# time order (row i of account a is that account's seq i // accounts + 1).
FILL = """
INSERT INTO {table}
SELECT a.id, s.seq, %(start)s::timestamptz + (s.seq::bigint * %(span)s / a.n) * interval '1 second',
  CASE WHEN s.seq %% 3 = 0 THEN 'session' ELSE 'api_key' END, 'key_' || (s.seq %% 40), 'Integration',
  NULL, '203.0.113.' || (s.seq %% 250), '4cb0071' || lpad(to_hex(s.seq %% 250), 2, '0'),
  'python-httpx/0.28', (%(actions)s::text[])[1 + s.seq %% 5], 'contact', 'con_' || md5(s.seq::text),
  'person' || s.seq || '@example.com', 'Updated contact person' || s.seq || '@example.com',
  '{{"status":{{"from":"subscribed","to":"unsubscribed"}}}}', 'req_' || s.seq,
  md5(s.seq::text || 'p') || md5(s.seq::text || 'q'), md5(s.seq::text || 'h') || md5(s.seq::text || 'i'),
  0, NULL
FROM (SELECT %(big)s AS id, %(big_n)s AS n UNION ALL
      SELECT 'acc_small' || g, %(small_n)s FROM generate_series(1, %(smalls)s) g) a
CROSS JOIN LATERAL generate_series(1, a.n) AS s(seq)
"""


@dataclass
class Run:
    entries: int = 0
    phases: dict[str, float] = field(default_factory=dict)
    purged: dict[str, int] = field(default_factory=dict)
    purge_s: dict[str, float] = field(default_factory=dict)
    vacuum_s: dict[str, float] = field(default_factory=dict)
    drop_s: float = 0.0
    dropped: int = 0
    appends: dict[str, list[float]] = field(default_factory=lambda: {"plain": [], "monthly": []})
    page_ms: dict[str, list[float]] = field(default_factory=lambda: {"plain": [], "monthly": []})
    sizes: dict[str, str] = field(default_factory=dict)


def month(i: int) -> datetime:
    return datetime(START.year + (START.month - 1 + i) // 12, (START.month - 1 + i) % 12 + 1, 1, tzinfo=UTC)


def create(conn: psycopg.Connection[Any]) -> None:
    conn.execute(f"CREATE TABLE plain ({COLUMNS}, PRIMARY KEY (account_id, seq))")
    conn.execute(
        f"CREATE TABLE monthly ({COLUMNS}, PRIMARY KEY (account_id, seq, occurred_at)) "
        "PARTITION BY RANGE (occurred_at)"
    )
    for i in range(MONTHS + 2):  # created ahead: two months past the data
        conn.execute(
            f"CREATE TABLE monthly_{i:02d} PARTITION OF monthly "
            f"FOR VALUES FROM ('{month(i).isoformat()}') TO ('{month(i + 1).isoformat()}')"
        )


def index_ddl(conn: psycopg.Connection[Any]) -> list[str]:
    """The migrations' B-tree indexes on activity_entries, as their own DDL (GIN search index left out)."""
    rows = conn.execute(
        "SELECT indexdef FROM pg_indexes WHERE tablename = 'activity_entries' "
        "AND indexdef NOT LIKE '%gin%' AND indexname NOT LIKE 'pk_%'"
    ).fetchall()
    return [r[0] for r in rows]


def build_indexes(conn: psycopg.Connection[Any], ddl: list[str], table: str) -> None:
    for i, statement in enumerate(ddl):
        on = statement.split(" USING ", 1)[1]
        conn.execute(f"CREATE INDEX {table}_ix{i} ON {table} USING {on}")


def fill(conn: psycopg.Connection[Any], table: str, entries: int, accounts: int) -> None:
    big_n = entries // 5
    smalls = max(1, accounts - 1)
    params = {
        "start": START,
        "span": int((month(MONTHS) - START).total_seconds()),
        "actions": list(ACTIONS),
        "big": "acc_big",
        "big_n": big_n,
        "small_n": (entries - big_n) // smalls,
        "smalls": smalls,
    }
    conn.execute(FILL.format(table=table), params)


def purge_rows(conn: psycopg.Connection[Any], table: str, cutoff: datetime) -> tuple[int, float]:
    """Delete the big account's entries before ``cutoff`` in pieces of PIECE seqs, a commit each."""
    high = conn.execute(
        f"SELECT max(seq) FROM {table} WHERE account_id = 'acc_big' AND occurred_at < %s", (cutoff,)
    ).fetchone()
    assert high is not None and high[0]
    conn.commit()
    removed, began = 0, time.perf_counter()
    for lo in range(1, int(high[0]) + 1, PIECE):
        extra = " AND occurred_at < %s" if table == "monthly" else ""
        args: tuple[Any, ...] = (lo, min(lo + PIECE - 1, int(high[0]))) + ((cutoff,) if extra else ())
        cur = conn.execute(
            f"DELETE FROM {table} WHERE account_id = 'acc_big' AND seq BETWEEN %s AND %s{extra}", args
        )
        removed += cur.rowcount
        conn.commit()
    return removed, time.perf_counter() - began


def vacuum(url: str, table: str) -> float:
    with psycopg.connect(url, autocommit=True) as conn:
        began = time.perf_counter()
        conn.execute(f"VACUUM {table}")
        return time.perf_counter() - began


def appends(conn: psycopg.Connection[Any], table: str, n: int, base: int) -> float:
    """Single-row durable inserts (a commit each) at the end of the big account's log: entries/s."""
    row = (
        f"INSERT INTO {table} VALUES ('acc_big', %s, %s, 'api_key', 'key_1', 'Integration', NULL, "
        "'203.0.113.9', '4cb007109', 'python-httpx/0.28', 'contact.update', 'contact', 'con_x', "
        "'x@example.com', 'Updated contact x@example.com', '{}', 'req_x', %s, %s, 0, NULL)"
    )
    at = month(MONTHS) - (month(MONTHS) - month(MONTHS - 1)) / 2
    began = time.perf_counter()
    for i in range(n):
        conn.execute(row, (base + i, at, "p" * 64, "h" * 64))
        conn.commit()
    return n / (time.perf_counter() - began)


def first_page(conn: psycopg.Connection[Any], table: str) -> float:
    began = time.perf_counter()
    rows = conn.execute(
        f"SELECT * FROM {table} WHERE account_id = 'acc_big' AND action = 'contact.update' "
        "ORDER BY seq DESC LIMIT 50"
    ).fetchall()
    assert len(rows) == 50
    conn.commit()
    return (time.perf_counter() - began) * 1000


def size(conn: psycopg.Connection[Any], table: str) -> str:
    total = conn.execute(
        "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c "
        "WHERE c.relkind = 'r' AND (c.relname = %s OR c.relname LIKE %s)",
        (table, f"{table}\\_%"),
    ).fetchone()
    assert total is not None
    return f"{int(total[0] or 0) / 2**20:,.0f} MiB"


def bench(url: str, args: argparse.Namespace) -> Run:
    run = Run(entries=args.entries)

    def phase(name: str, began: float) -> None:
        run.phases[name] = time.perf_counter() - began
        print(f"  {name}: {run.phases[name]:.1f} s", flush=True)

    with psycopg.connect(url) as conn:
        ddl = index_ddl(conn)
        create(conn)
        conn.commit()
        for table in ("plain", "monthly"):
            began = time.perf_counter()
            fill(conn, table, args.entries, args.accounts)
            conn.commit()
            phase(f"load {table}", began)
            began = time.perf_counter()
            build_indexes(conn, ddl, table)
            conn.commit()
            phase(f"index {table} ({len(ddl)} indexes + primary key)", began)
        with psycopg.connect(url, autocommit=True) as auto:
            auto.execute("VACUUM ANALYZE plain")
            auto.execute("VACUUM ANALYZE monthly")
        for table in ("plain", "monthly"):
            run.sizes[table] = size(conn, table)
        cutoff = month(args.purge)
        for table in ("plain", "monthly"):
            run.purged[table], run.purge_s[table] = purge_rows(conn, table, cutoff)
            print(f"  purge {table}: {run.purged[table]:,} rows in {run.purge_s[table]:.1f} s", flush=True)
            run.vacuum_s[table] = vacuum(url, table)
            print(f"  vacuum {table}: {run.vacuum_s[table]:.1f} s", flush=True)
        # the first month: the big account's part of it went above, the other accounts' is still there
        count = conn.execute(
            "SELECT count(*) FROM monthly WHERE occurred_at >= %s AND occurred_at < %s", (month(0), month(1))
        ).fetchone()
        assert count is not None
        run.dropped = int(count[0])
        conn.commit()
        began = time.perf_counter()
        conn.execute("ALTER TABLE monthly DETACH PARTITION monthly_00")
        conn.execute("DROP TABLE monthly_00")
        conn.commit()
        run.drop_s = time.perf_counter() - began
        print(f"  detach + drop one month ({run.dropped:,} rows): {run.drop_s * 1000:.0f} ms", flush=True)
        base = 10**9
        for r in range(args.rounds):
            for table in ("plain", "monthly") if r % 2 == 0 else ("monthly", "plain"):
                run.appends[table].append(appends(conn, table, args.appends, base))
                base += args.appends
            print(
                f"  appends {r + 1}/{args.rounds}: plain {run.appends['plain'][-1]:,.0f}/s, "
                f"monthly {run.appends['monthly'][-1]:,.0f}/s",
                flush=True,
            )
        for _ in range(args.queries):
            for table in ("plain", "monthly"):
                run.page_ms[table].append(first_page(conn, table))
    return run


def render(run: Run, args: argparse.Namespace, info: dict[str, str], started: datetime) -> str:
    med = statistics.median
    plain_rate = run.purged["plain"] / run.purge_s["plain"]
    monthly_rate = run.purged["monthly"] / run.purge_s["monthly"]
    lines = [
        "# Time partitions and the purge (PostgreSQL)",
        "",
        f"Written by `bench/partitions.py` on {started:%Y-%m-%d %H:%M} UTC "
        f"({' '.join(sys.argv[1:]) or 'defaults'}); {info.get('version', '')}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs, load average at the end {os.getloadavg()[0]:.1f}. One run; do not edit by "
        "hand.",
        "",
        f"{run.entries:,} entries over {MONTHS} months in {args.accounts} accounts (the first holding 20%) "
        "in each of two tables with the log's columns and every B-tree index of the migrations: *plain* (the "
        "product's layout) and *monthly* (partitioned by `occurred_at`, a partition a month). The purge "
        f"removes the big account's entries of its first {args.purge} months, by seq range in pieces of "
        f"{PIECE:,}, a commit each, as `activity_purge()` does.",
        "",
        "| measure | plain | monthly | monthly ÷ plain |",
        "|---|---:|---:|---:|",
        f"| size on disk after loading | {run.sizes['plain']} | {run.sizes['monthly']} | |",
        f"| purge by rows: entries removed | {run.purged['plain']:,} | {run.purged['monthly']:,} | |",
        f"| purge by rows: wall time | {run.purge_s['plain']:.1f} s ({plain_rate:,.0f}/s) | "
        f"{run.purge_s['monthly']:.1f} s ({monthly_rate:,.0f}/s) | "
        f"{run.purge_s['monthly'] / run.purge_s['plain']:.2f} |",
        f"| `VACUUM` after it | {run.vacuum_s['plain']:.1f} s | {run.vacuum_s['monthly']:.1f} s | "
        f"{run.vacuum_s['monthly'] / run.vacuum_s['plain']:.2f} |",
        f"| purge by partition: `DETACH` + `DROP` of one whole month ({run.dropped:,} rows, every account) | "
        f"n/a | {run.drop_s * 1000:.0f} ms | |",
        f"| appends, single-row durable inserts (median of {args.rounds} rounds of {args.appends}) | "
        f"{med(run.appends['plain']):,.0f}/s | {med(run.appends['monthly']):,.0f}/s | "
        f"{med(run.appends['monthly']) / med(run.appends['plain']):.2f} |",
        f"| first page of one action, 50 rows (median of {args.queries}) | "
        f"{med(run.page_ms['plain']):.2f} ms | {med(run.page_ms['monthly']):.2f} ms | "
        f"{med(run.page_ms['monthly']) / med(run.page_ms['plain']):.2f} |",
        "",
        "Phases: " + "; ".join(f"{k} {v:.0f} s" for k, v in run.phases.items()) + ".",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--entries", type=int, default=10_000_000)
    parser.add_argument("--accounts", type=int, default=100)
    parser.add_argument("--purge", type=int, default=12, help="months of the big account to purge")
    parser.add_argument("--appends", type=int, default=500, help="inserts per append round")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    started = datetime.now(UTC)
    with postgres_store(args.pg_url) as store:
        info = describe(store)
        run = bench(store.raw_target, args)
    args.output.write_text(render(run, args, info, started))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
