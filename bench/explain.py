"""Query plans of the application's own statements, for bench/PLANS.md.

SQLite: ``EXPLAIN QUERY PLAN``. PostgreSQL: ``EXPLAIN (ANALYZE, BUFFERS)`` twice — the custom plan (planned
with the real values, what a fresh statement gets) and the generic plan (``plan_cache_mode =
force_generic_plan``, ``PREPARE``, ``EXPLAIN EXECUTE``: what a statement prepared by psycopg after 5 runs can
switch to, planned without knowing the values). Each PostgreSQL plan carries its own execution time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import psycopg

# isort: split
# Sibling modules of bench/ (run.py runs as a script, so they import as top-level modules).
from appsql import Statement
from stores import Store

OPTIONS = "ANALYZE, BUFFERS, COSTS OFF"


@dataclass(frozen=True)
class Plan:
    custom: str
    generic: str | None = None  # PostgreSQL only
    custom_ms: float | None = None  # "Execution Time" of the plan
    generic_ms: float | None = None


def _execution_ms(text: str) -> float | None:
    found = re.findall(r"Execution Time: ([\d.]+) ms", text)
    return sum(float(ms) for ms in found) if found else None


def _sqlite(conn: Any, statement: Statement) -> str:
    rows = conn.execute("EXPLAIN QUERY PLAN " + statement.sql, statement.params).fetchall()
    depth: dict[int, int] = {0: -1}
    lines = []
    for node, parent, _, detail in rows:
        depth[node] = depth.get(parent, -1) + 1
        lines.append("  " * depth[node] + detail)
    return "\n".join(lines)


def _postgres_custom(conn: Any, statement: Statement) -> str:
    rows = conn.execute(f"EXPLAIN ({OPTIONS}) " + statement.sql, statement.params).fetchall()
    return "\n".join(r[0] for r in rows)


def _postgres_generic(conn: Any, statement: Statement) -> str:
    sql, values = statement.numbered()
    cur = psycopg.ClientCursor(conn)  # interpolates the values into EXECUTE (...) on the client
    try:
        cur.execute("SET plan_cache_mode = force_generic_plan")
        cur.execute(f"PREPARE bench_generic AS {sql}")
        args = ", ".join(["%s"] * len(values))
        rows = cur.execute(f"EXPLAIN ({OPTIONS}) EXECUTE bench_generic ({args})", values).fetchall()
        return "\n".join(r[0] for r in rows)
    finally:
        cur.execute("DEALLOCATE ALL")
        cur.execute("RESET plan_cache_mode")
        cur.close()


def plan(conn: Any, store: Store, statements: list[Statement]) -> Plan:
    """The plans of the statements behind one page (usually one statement)."""
    if store.is_sqlite:
        return Plan("\n\n".join(_sqlite(conn, s) for s in statements))
    custom = "\n\n".join(_postgres_custom(conn, s) for s in statements)
    generic = "\n\n".join(_postgres_generic(conn, s) for s in statements)
    return Plan(custom, generic, _execution_ms(custom), _execution_ms(generic))
