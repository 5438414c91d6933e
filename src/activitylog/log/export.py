"""Exports of a filtered slice, oldest first, as the contract's CSV or as JSON Lines — streamed in batches
from one query, so memory stays constant whatever the slice's size.

Formula safety: a CSV cell whose text begins with ``= + - @``, tab, CR, LF or ``'`` gets one extra leading
``'`` (a reader removes exactly one to get the value back), so a spreadsheet never evaluates a cell.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Row

from activitylog.db.base import Database
from activitylog.db.models import ActivityEntry
from activitylog.log import csv_sql
from activitylog.log.chain import format_instant
from activitylog.log.checkpoints import checkpoint_account, checkpoint_to_api, sign_manifest, slice_digest
from activitylog.log.csv_sql import CSV_COLUMNS, quote, safe_cell
from activitylog.log.entry import entry_to_api
from activitylog.log.query import ActivityFilter, export_statement
from activitylog.log.signing import Signer

BATCH_ROWS = 2000
FORMATS = ("csv", "jsonl")


def csv_row(row: Row[Any]) -> list[str]:
    m = row._mapping
    return [
        safe_cell(format_instant(m["occurred_at"])) if name == "occurred_at" else safe_cell(m[name])
        for name in CSV_COLUMNS
    ]


def _rows(db: Database, account_id: str, f: ActivityFilter, as_of: int | None) -> Iterator[Row[Any]]:
    statement = export_statement(account_id, f, dialect=db.dialect, through_seq=as_of)
    with db.reader() as session:
        yield from session.execute(statement.execution_options(yield_per=BATCH_ROWS, stream_results=True))


def stream_csv(db: Database, account_id: str, f: ActivityFilter, as_of: int | None = None) -> Iterator[bytes]:
    """The header, then the rows at close to the engine's own speed (see ``csv_sql``)."""
    yield (",".join(CSV_COLUMNS) + "\n").encode()
    statement = export_statement(account_id, f, dialect=db.dialect, through_seq=as_of)
    if db.dialect == "postgresql":
        yield from csv_sql.stream_postgres(db, statement)
    else:
        yield from csv_sql.stream_sqlite(db, statement, BATCH_ROWS)


def csv_line(row: Row[Any]) -> str:
    return ",".join(quote(cell) for cell in csv_row(row))


def stream_csv_reference(
    db: Database, account_id: str, f: ActivityFilter, as_of: int | None = None
) -> Iterator[bytes]:
    """The same CSV formatted in Python, row by row: slower, and the yardstick the fast paths are held to."""
    lines = [",".join(CSV_COLUMNS)]
    for row in _rows(db, account_id, f, as_of):
        lines.append(csv_line(row))
        if len(lines) >= BATCH_ROWS:
            yield ("\n".join(lines) + "\n").encode("utf-8")
            lines.clear()
    if lines:
        yield ("\n".join(lines) + "\n").encode("utf-8")


def stream_jsonl(
    db: Database, account_id: str, f: ActivityFilter, as_of: int | None = None
) -> Iterator[bytes]:
    lines: list[str] = []
    for row in _rows(db, account_id, f, as_of):
        lines.append(json.dumps(entry_to_api(row), ensure_ascii=False, separators=(",", ":")))
        if len(lines) >= BATCH_ROWS:
            yield ("\n".join(lines) + "\n").encode("utf-8")
            lines.clear()
    if lines:
        yield ("\n".join(lines) + "\n").encode("utf-8")


def stream(
    db: Database, account_id: str, f: ActivityFilter, fmt: str, as_of: int | None = None
) -> Iterator[bytes]:
    """The slice as it stood at seq ``as_of`` (entries appended while streaming are not part of it)."""
    return stream_csv(db, account_id, f, as_of) if fmt == "csv" else stream_jsonl(db, account_id, f, as_of)


def manifest(
    db: Database, signer: Signer, account_id: str, f: ActivityFilter, fmt: str, as_of: int
) -> dict[str, Any]:
    """A signed statement of exactly which rows the export of this slice at ``as_of`` holds, with a fresh
    checkpoint of the account's head: with it, a removed or added row is provable, not only a changed one."""
    statement = export_statement(account_id, f, dialect=db.dialect, through_seq=as_of).with_only_columns(
        ActivityEntry.seq, ActivityEntry.hash
    )
    with db.reader() as session:
        pairs = [(seq, digest) for seq, digest in session.execute(statement)]
    checkpoint = checkpoint_account(db, account_id, signer)
    body = {
        "account_id": account_id,
        "filter": dict(sorted(f.raw.items())),
        "format": fmt,
        "as_of_seq": as_of,
        "rows": len(pairs),
        "first_seq": pairs[0][0] if pairs else None,
        "last_seq": pairs[-1][0] if pairs else None,
        "slice_digest": slice_digest(pairs),
        "checkpoint": checkpoint_to_api(checkpoint) if checkpoint else None,
    }
    return sign_manifest(body, signer)


def filename(account_id: str, f: ActivityFilter, fmt: str) -> str:
    """Names the account and the window, e.g. ``activity-acc_01…-20260301-20260401.csv``."""
    since = f.since.strftime("%Y%m%dT%H%M%SZ") if f.since else "start"
    until = f.until.strftime("%Y%m%dT%H%M%SZ") if f.until else "now"
    return f"activity-{account_id}-{since}-{until}.{fmt}"
