"""Exports of a filtered slice, oldest first, as the contract's CSV or as JSON Lines — streamed in batches
from one query, so memory stays constant whatever the slice's size.

Formula safety: a CSV cell whose text begins with ``= + - @``, tab, CR, LF or ``'`` gets one extra leading
``'`` (a reader removes exactly one to get the value back), so a spreadsheet never evaluates a cell.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Row

from activitylog.db.base import Database
from activitylog.log.chain import format_instant
from activitylog.log.entry import entry_to_api
from activitylog.log.query import ActivityFilter, export_statement

CSV_COLUMNS = (
    "account_id",
    "seq",
    "occurred_at",
    "actor_type",
    "actor_id",
    "actor_name",
    "on_behalf_of",
    "ip",
    "user_agent",
    "action",
    "resource_type",
    "resource_id",
    "resource_name",
    "summary",
    "changes",
    "request_id",
    "prev_hash",
    "hash",
)
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n", "'")
BATCH_ROWS = 2000
FORMATS = ("csv", "jsonl")


def safe_cell(value: Any) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    return "'" + text if text.startswith(FORMULA_TRIGGERS) else text


def csv_row(row: Row[Any]) -> list[str]:
    m = row._mapping
    return [
        safe_cell(format_instant(m["occurred_at"])) if name == "occurred_at" else safe_cell(m[name])
        for name in CSV_COLUMNS
    ]


def _rows(db: Database, account_id: str, f: ActivityFilter) -> Iterator[Row[Any]]:
    with db.reader() as session:
        result = session.execute(
            export_statement(account_id, f).execution_options(yield_per=BATCH_ROWS, stream_results=True)
        )
        yield from result


def stream_csv(db: Database, account_id: str, f: ActivityFilter) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for n, row in enumerate(_rows(db, account_id, f), start=1):
        writer.writerow(csv_row(row))
        if n % BATCH_ROWS == 0:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode("utf-8")


def stream_jsonl(db: Database, account_id: str, f: ActivityFilter) -> Iterator[bytes]:
    lines: list[str] = []
    for row in _rows(db, account_id, f):
        lines.append(json.dumps(entry_to_api(row), ensure_ascii=False, separators=(",", ":")))
        if len(lines) >= BATCH_ROWS:
            yield ("\n".join(lines) + "\n").encode("utf-8")
            lines.clear()
    if lines:
        yield ("\n".join(lines) + "\n").encode("utf-8")


def stream(db: Database, account_id: str, f: ActivityFilter, fmt: str) -> Iterator[bytes]:
    return stream_csv(db, account_id, f) if fmt == "csv" else stream_jsonl(db, account_id, f)


def filename(account_id: str, f: ActivityFilter, fmt: str) -> str:
    """Names the account and the window, e.g. ``activity-acc_01…-20260301-20260401.csv``."""
    since = f.since.strftime("%Y%m%dT%H%M%SZ") if f.since else "start"
    until = f.until.strftime("%Y%m%dT%H%M%SZ") if f.until else "now"
    return f"activity-{account_id}-{since}-{until}.{fmt}"
