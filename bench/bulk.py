"""Bulk loading into the migrated schema: COPY on PostgreSQL, big executemany transactions on SQLite.

The secondary indexes of ``activity_entries`` are read from the catalog, dropped before the load and
re-created, from their own DDL, after it: building an index once is far cheaper than maintaining it row by
row, and the result is the same index (only more compactly packed than one grown by appends). Whatever a
migration adds — another index, a trigger, an FTS table fed by a trigger — is kept, since only indexes
that the catalog lists are touched and triggers stay in place.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any

# isort: split
# Sibling modules of bench/ (run.py runs as a script, so they import as top-level modules).
from history import COLUMNS
from stores import Store

TABLE = "activity_entries"
SQLITE_TRANSACTION_ROWS = 100_000
POSTGRES_COMMIT_ROWS = 1_000_000


def check_columns(store: Store, conn: Any) -> None:
    """Fail clearly if the schema grew a column the seeder would leave NULL against a constraint."""
    if store.is_sqlite:
        info = conn.execute(f"PRAGMA table_xinfo({TABLE})").fetchall()
        required = {r[1] for r in info if r[3] and r[4] is None and r[6] == 0}
    else:
        info = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s AND is_nullable = 'NO'"
            " AND column_default IS NULL AND is_generated = 'NEVER'",
            (TABLE,),
        ).fetchall()
        required = {r[0] for r in info}
    missing = required - set(COLUMNS)
    if missing:
        raise SystemExit(f"{TABLE} has required columns the seeder does not fill: {sorted(missing)}")


def secondary_indexes(store: Store, conn: Any) -> list[tuple[str, str]]:
    """(name, CREATE INDEX statement) of every index on the table that no constraint owns."""
    if store.is_sqlite:
        rows = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL",
            (TABLE,),
        ).fetchall()
    else:
        rows = conn.execute(
            "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.tablename = %s AND NOT EXISTS"
            " (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)",
            (TABLE,),
        ).fetchall()
    return [(name, ddl) for name, ddl in rows]


def drop_indexes(store: Store, conn: Any, indexes: list[tuple[str, str]]) -> None:
    for name, _ in indexes:
        conn.execute(f'DROP INDEX "{name}"')
    if not store.is_sqlite:
        conn.commit()


def create_indexes(store: Store, conn: Any, indexes: list[tuple[str, str]]) -> None:
    if not store.is_sqlite:
        conn.execute("SET maintenance_work_mem = '512MB'")
    for _, ddl in indexes:
        conn.execute(ddl)
    if not store.is_sqlite:
        conn.commit()


def load(store: Store, conn: Any, batches: Iterable[list[tuple[Any, ...]]]) -> int:
    return _load_sqlite(conn, batches) if store.is_sqlite else _load_postgres(conn, batches)


def _load_sqlite(conn: Any, batches: Iterable[list[tuple[Any, ...]]]) -> int:
    sql = f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
    pending: list[tuple[Any, ...]] = []
    total = 0

    def flush() -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(sql, pending)
        conn.execute("COMMIT")
        pending.clear()

    for batch in batches:
        pending.extend(batch)
        total += len(batch)
        if len(pending) >= SQLITE_TRANSACTION_ROWS:
            flush()
    if pending:
        flush()
    return total


def _load_postgres(conn: Any, batches: Iterable[list[tuple[Any, ...]]]) -> int:
    """CSV COPY, committed every million rows: the csv module formats a whole batch in C, and an
    unquoted empty cell is NULL."""
    statement = f"COPY {TABLE} ({', '.join(COLUMNS)}) FROM STDIN WITH (FORMAT csv)"
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    remaining = iter(batches)
    total = 0
    with conn.cursor() as cur:
        while True:
            copied = 0
            with cur.copy(statement) as copy:
                for batch in remaining:
                    writer.writerows(batch)
                    copy.write(buffer.getvalue())
                    buffer.seek(0)
                    buffer.truncate()
                    copied += len(batch)
                    if copied >= POSTGRES_COMMIT_ROWS:
                        break
            conn.commit()
            total += copied
            if copied < POSTGRES_COMMIT_ROWS:
                return total


def insert_accounts(store: Store, conn: Any, accounts: list[tuple[str, str, Any]]) -> None:
    """Bare ``accounts`` rows (id, name, created_at): the foreign key needs them, nothing else does."""
    _insert(store, conn, "INSERT INTO accounts (id, name, created_at) VALUES (?, ?, ?)", accounts)


def load_tree(store: Store, conn: Any, rows: list[tuple[str, int, bytes]]) -> None:
    """The ``activity_tree`` rows (account, seq, hashes) the seeded entries complete; COPY on PostgreSQL
    (psycopg adapts the bytes to bytea), one executemany transaction on SQLite."""
    if store.is_sqlite:
        _insert(store, conn, "INSERT INTO activity_tree (account_id, seq, hashes) VALUES (?, ?, ?)", rows)
        return
    with conn.cursor() as cur, cur.copy("COPY activity_tree (account_id, seq, hashes) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
    conn.commit()


def load_affected(store: Store, conn: Any, rows: list[tuple[str, str, int, str]]) -> None:
    """The seeded bulk entries' ``activity_affected`` rows: (account, resource id, seq, resource type)."""
    columns = "account_id, resource_id, seq, resource_type"
    if store.is_sqlite:
        _insert(store, conn, f"INSERT INTO activity_affected ({columns}) VALUES (?, ?, ?, ?)", rows)
        return
    with conn.cursor() as cur, cur.copy(f"COPY activity_affected ({columns}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
    conn.commit()


def write_heads(
    store: Store, conn: Any, heads: list[tuple[str, int, str, Any, bytes]], existing: set[str]
) -> None:
    """Each account's ``activity_heads`` row at the end of its seeded chain: (account, seq, hash, at, tree
    frontier)."""
    update = [
        (seq, digest, at, edge, account) for account, seq, digest, at, edge in heads if account in existing
    ]
    insert = [h for h in heads if h[0] not in existing]
    _insert(
        store,
        conn,
        "UPDATE activity_heads SET seq = ?, hash = ?, occurred_at = ?, tree = ? WHERE account_id = ?",
        update,
    )
    _insert(
        store,
        conn,
        "INSERT INTO activity_heads (account_id, seq, hash, occurred_at, tree) VALUES (?, ?, ?, ?, ?)",
        insert,
    )


def _insert(store: Store, conn: Any, sql: str, rows: list[tuple[Any, ...]]) -> None:
    if not rows:
        return
    if store.is_sqlite:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(sql, rows)
        conn.execute("COMMIT")
    else:
        with conn.cursor() as cur:
            cur.executemany(store.sql(sql), rows)
        conn.commit()


def settle(store: Store) -> None:
    """After the load: PostgreSQL gets what autovacuum would soon do (statistics, visibility map); SQLite's
    WAL is checkpointed into the database file. SQLite is not ANALYZEd unless the application does it."""
    conn = store.raw_connect()
    try:
        if store.is_sqlite:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        else:
            conn.autocommit = True
            conn.execute("VACUUM (ANALYZE)")
    finally:
        conn.close()
