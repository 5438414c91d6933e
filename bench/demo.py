"""``activitylog demo --entries N`` timed as a user runs it, against the raw engine writing the same rows.

For each engine: a fresh, migrated store (as ``make run`` migrates before it seeds), then the installed
command ``activitylog demo --entries N --no-migrate`` as a child process, timed by the wall clock from
start to exit (argon2 for the invited team, the onboarding, the whole history, the final commit). Then the
floor, in the same run: the raw driver (``sqlite3`` / ``psycopg``) copies the demo's first rows of the log
(entries, tree nodes, affected resources: what the recorder wrote) into a fresh store with the same schema
and triggers, in durable transactions of the demo's batch size, moving the head once per transaction; once
as multi-row INSERTs and once with the driver's ``executemany`` (each into its own fresh store). The floor
is the faster of the two, and the ratio is demo rate / floor rate.

Adds its run at the top of bench/RESULTS-demo.md (or ``--output``), above the earlier ones.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from psycopg.types.json import Jsonb

from activitylog.cli.demo import BATCH, DEMO_EMAIL

# isort: split
from harness import ACTIVITYLOG, fresh_store
from report import load_average, machine
from stores import Store

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {"sqlite": 180.0, "postgresql": 300.0}  # seconds for a million entries (issue 16)
LOG_TABLES = ("activity_entries", "activity_tree", "activity_affected")
ROWS_PER_STATEMENT = 500  # 500 entries x 22 columns stays under both engines' bind-parameter limits
Rows = list[Sequence[Any]]
Log = dict[str, tuple[list[str], Rows]]  # table -> (column names, rows)
TITLE = "# `activitylog demo`: seeding rate against the raw engine\n\n"
METHODS = ("multi-row", "executemany")


@dataclass(frozen=True)
class Run:
    engine: str
    entries: int
    seconds: float
    floor_rows: int
    floor_seconds: dict[str, float]  # per way of inserting (METHODS)

    @property
    def rate(self) -> float:
        return self.entries / self.seconds

    @property
    def floor_rate(self) -> float:
        return self.floor_rows / min(self.floor_seconds.values())

    def method_rate(self, method: str) -> float:
        return self.floor_rows / self.floor_seconds[method]


def _seed(store: Store, entries: int, workdir: Path) -> float:
    env = {**os.environ, "ACTIVITYLOG_DATABASE_URL": store.url, "ACTIVITYLOG_SECRET_KEY": "bench-demo"}
    started = time.perf_counter()
    subprocess.run(
        [str(ACTIVITYLOG), "demo", "--entries", str(entries), "--no-migrate"],
        env=env,
        cwd=workdir,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def _demo_account(conn: Any, store: Store) -> tuple[Any, ...]:
    row = conn.execute(
        store.sql("SELECT a.* FROM accounts a JOIN users u ON u.account_id = a.id WHERE u.email = ?"),
        (DEMO_EMAIL,),
    ).fetchone()
    return tuple(row)


def _columns(conn: Any, store: Store, table: str) -> list[str]:
    cursor = conn.execute(f"SELECT * FROM {table} WHERE 1 = 0")
    return [d[0] for d in cursor.description]


def _adapt(value: Any) -> Any:
    return Jsonb(value) if isinstance(value, dict | list) else value


def _read_log(store: Store, account_id: str, rows: int) -> Log:
    """The first ``rows`` entries of the account and the tree and affected rows of the same seqs."""
    conn = store.raw_connect()
    try:
        out: Log = {}
        for table in LOG_TABLES:
            names = _columns(conn, store, table)
            found = conn.execute(
                store.sql(f"SELECT * FROM {table} WHERE account_id = ? AND seq <= ? ORDER BY seq"),
                (account_id, rows),
            ).fetchall()
            out[table] = names, [tuple(_adapt(v) for v in row) for row in found]
        return out
    finally:
        conn.close()


def _floor(source: Store, target: Store, rows: int, method: str) -> tuple[int, float]:
    """Copy the demo's first ``rows`` entries with the raw driver; returns (entries, seconds)."""
    conn = source.raw_connect()
    try:
        account = tuple(_adapt(v) for v in _demo_account(conn, source))
        account_names = _columns(conn, source, "accounts")
    finally:
        conn.close()
    log = _read_log(source, account[0], rows)
    entries = log["activity_entries"][1]
    conn = target.raw_connect()
    try:
        marks = ", ".join("?" * len(account_names))
        conn.execute(
            target.sql(f"INSERT INTO accounts ({', '.join(account_names)}) VALUES ({marks})"), account
        )
        conn.execute(
            target.sql("INSERT INTO activity_heads (account_id, seq, hash) VALUES (?, 0, ?)"),
            (account[0], "0" * 64),
        )
        conn.commit()
        pieces = _pieces(log)
        seq_at = log["activity_entries"][0].index("seq")
        hash_at = log["activity_entries"][0].index("hash")
        started = time.perf_counter()
        for piece in pieces:
            if source.is_sqlite:
                conn.execute("BEGIN IMMEDIATE")
            for table in LOG_TABLES:
                _insert(conn, target, table, log[table][0], piece[table], method)
            last = piece["activity_entries"][-1]
            conn.execute(
                target.sql("UPDATE activity_heads SET seq = ?, hash = ? WHERE account_id = ?"),
                (last[seq_at], last[hash_at], account[0]),
            )
            conn.commit()
        return len(entries), time.perf_counter() - started
    finally:
        conn.close()


def _pieces(log: Log) -> list[dict[str, list[Sequence[Any]]]]:
    """The rows of each transaction: ``BATCH`` entries and the tree and affected rows of their seqs."""
    pieces: list[dict[str, list[Sequence[Any]]]] = []
    for table in LOG_TABLES:
        names, rows = log[table]
        seq_at = names.index("seq")
        for row in rows:
            index = (row[seq_at] - 1) // BATCH
            while len(pieces) <= index:
                pieces.append({t: [] for t in LOG_TABLES})
            pieces[index][table].append(row)
    return pieces


def _insert(
    conn: Any, store: Store, table: str, names: list[str], rows: list[Sequence[Any]], method: str
) -> None:
    one = "(" + ", ".join("?" * len(names)) + ")"
    if method == "executemany":
        if rows:
            sql = f"INSERT INTO {table} ({', '.join(names)}) VALUES {one}"
            conn.cursor().executemany(store.sql(sql), rows)
        return
    for start in range(0, len(rows), ROWS_PER_STATEMENT):
        piece = rows[start : start + ROWS_PER_STATEMENT]
        values = ", ".join([one] * len(piece))
        params = [v for row in piece for v in row]
        conn.execute(store.sql(f"INSERT INTO {table} ({', '.join(names)}) VALUES {values}"), params)


def measure(engine: str, entries: int, floor_rows: int, pg_url: str) -> Run:
    with TemporaryDirectory(prefix="activitylog-demo-") as tmp:
        workdir = Path(tmp)
        (workdir / "a").mkdir()
        with fresh_store(engine, pg_url, workdir / "a") as demo_store:
            seconds = _seed(demo_store, entries, workdir)
            conn = demo_store.raw_connect()
            try:
                account_id = _demo_account(conn, demo_store)[0]
                made = conn.execute(
                    demo_store.sql("SELECT seq FROM activity_heads WHERE account_id = ?"), (account_id,)
                ).fetchone()[0]
            finally:
                conn.close()
            floor_seconds = {}
            for method in METHODS:
                (workdir / method).mkdir()
                with fresh_store(engine, pg_url, workdir / method) as floor_store:
                    copied, floor_seconds[method] = _floor(demo_store, floor_store, floor_rows, method)
    return Run(engine, made, seconds, copied, floor_seconds)


def render(runs: list[Run], info: dict[str, str]) -> str:
    lines = [
        f"## {info['when']}",
        "",
        f"`.venv/bin/python bench/demo.py {info['args']}` on {info['host']} ({info['nproc']} CPUs, "
        f"{info['CPU']}), {info['when']}, load average {info['load']}. "
        "The demo runs as the installed command "
        "on a fresh migrated store, timed from start to exit. The raw floor copies the demo's first "
        f"{runs[0].floor_rows:,} entries (with their tree nodes and affected resources) with the driver into "
        f"a fresh store, {BATCH:,} entries per durable transaction, the head moved once per transaction, "
        f"as multi-row INSERTs ({ROWS_PER_STATEMENT} rows each) and with executemany: the same rows, schema "
        "and triggers, with no Python between them. demo / floor is against the faster of the two.",
        "",
        "| engine | entries | demo wall clock | demo entries/s | raw multi-row entries/s | raw executemany "
        "entries/s | demo / floor | a million at the demo's rate | target | met |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for run in runs:
        target = TARGETS[run.engine]
        million = 1_000_000 / run.rate
        lines.append(
            f"| {run.engine} | {run.entries:,} | {run.seconds:.1f} s | {run.rate:,.0f} | "
            f"{run.method_rate('multi-row'):,.0f} | {run.method_rate('executemany'):,.0f} | "
            f"{run.rate / run.floor_rate:.2f} | "
            f"{million / 60:.1f} min | {target / 60:.0f} min | {'yes' if million <= target else 'NO'} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--floor-rows", type=int, default=100_000, help="entries the raw floor copies")
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "RESULTS-demo.md")
    options = parser.parse_args(argv)
    load_before = load_average()
    runs = []
    for engine in options.engines.split(","):
        run = measure(engine, options.entries, min(options.floor_rows, options.entries), options.pg_url)
        print(
            f"{engine}: {run.entries:,} in {run.seconds:.1f} s, floor {run.floor_rate:,.0f}/s",
            file=sys.stderr,
        )
        runs.append(run)
    info = {
        **machine(),
        "args": " ".join(argv if argv is not None else sys.argv[1:]),
        "host": os.uname().nodename,
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load": f"{load_before} before, {load_average()} after",
    }
    earlier = options.output.read_text().removeprefix(TITLE) if options.output.exists() else ""
    options.output.write_text(
        TITLE + render(runs, info) + ("\n" + earlier if earlier else "")
    )  # newest first
    print(options.output, file=sys.stderr)


if __name__ == "__main__":
    main()
