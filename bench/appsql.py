"""The SQL the application runs for a page of the log, captured at the driver, so the raw engine can run
exactly the same statements (same text, same parameters) with nothing of the application on top.

The statements are made by the product's own ``log.query`` (``parse_filter``, ``page_rows``) and
executed once through the product's own engine; a ``before_cursor_execute`` hook records what reaches the
DB-API cursor. If the query layer changes, the captured SQL changes with it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from activitylog.db.base import Database
from activitylog.log.query import decode_cursor, page_rows, page_statement, parse_filter

FILTER_PARAMS = ("actor", "actor_type", "action", "resource_type", "resource_id", "ip", "since", "until", "q")


@dataclass(frozen=True)
class Statement:
    sql: str
    params: Any  # a tuple (SQLite, qmark) or a dict (psycopg, pyformat), as the driver received them

    def numbered(self) -> tuple[str, list[Any]]:
        """PostgreSQL's own ``$n`` form (for ``PREPARE``), and the values in that order."""
        if isinstance(self.params, dict):
            names: list[str] = []

            def number(match: re.Match[str]) -> str:
                if match.group(1) not in names:
                    names.append(match.group(1))
                return f"${names.index(match.group(1)) + 1}"

            sql = re.sub(r"%\((\w+)\)s", number, self.sql)
            values = [self.params[n] for n in names]
        else:
            counter = iter(range(1, 10_000))
            sql = re.sub(r"%s", lambda _: f"${next(counter)}", self.sql)
            values = list(self.params)
        return sql.replace("%%", "%"), values


def _capture(db: Database, work: Callable[[Session], Any]) -> list[Statement]:
    seen: list[Statement] = []

    def hook(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        if "set_config(" in statement:
            return  # the transaction's row-security scope (db/base.py), not the query being measured
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            seen.append(Statement(statement, parameters))

    event.listen(db.engine, "before_cursor_execute", hook)
    try:
        with db.reader() as session:
            work(session)
    finally:
        event.remove(db.engine, "before_cursor_execute", hook)
    return seen


def page(db: Database, account_id: str, params: dict[str, str], limit: int) -> list[Statement]:
    """The statements behind ``GET /api/v1/activity?<params>&limit=<limit>``: everything ``page_rows`` runs
    (a time window's seq lookup, a recent window before an index, a text index walked newest first)."""
    f = parse_filter(**{k: v for k, v in params.items() if k in FILTER_PARAMS})
    before_seq = decode_cursor(params.get("cursor"))
    return _capture(
        db,
        lambda session: page_rows(
            session, account_id, f, dialect=db.dialect, before_seq=before_seq, limit=limit
        ),
    )


def matching(db: Database, account_id: str, params: dict[str, str]) -> int:
    """How many entries of the account the filter matches (the page statement without its limit)."""
    f = parse_filter(**{k: v for k, v in params.items() if k in FILTER_PARAMS})
    statement = page_statement(
        account_id, f, dialect=db.dialect, before_seq=decode_cursor(params.get("cursor")), limit=1
    )
    counted = select(func.count()).select_from(statement.limit(None).order_by(None).subquery())
    with db.reader() as session:
        return int(session.execute(counted).scalar_one())
