"""Exports of a filtered slice, oldest first, as the contract's CSV or as JSON Lines — streamed in batches
from one query, so memory stays constant whatever the slice's size.

Formula safety: a CSV cell whose text begins with ``= + - @``, tab, CR, LF or ``'`` gets one extra leading
``'`` (a reader removes exactly one to get the value back), so a spreadsheet never evaluates a cell.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Row
from sqlalchemy.orm import Session

from activitylog import metrics
from activitylog.db.base import Database
from activitylog.db.models import ActivityEntry
from activitylog.errors import InvalidInput
from activitylog.log import csv_sql, purge
from activitylog.log.chain import canonical_json, format_instant
from activitylog.log.checkpoints import CheckpointSigner
from activitylog.log.csv_sql import CSV_COLUMNS, quote, safe_cell
from activitylog.log.entry import entry_to_api
from activitylog.log.query import ActivityFilter, export_statement
from activitylog.log.tree_store import TreeReader

BATCH_ROWS = 500
"""Rows an export reads and yields at a time: about 400 KiB of CSV, so the process streaming it holds little
more than that (at 2,000 a web process peaked ~13 MB higher, and streamed no faster)."""
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
    counted = metrics.EXPORT_ROWS.labels("jsonl")
    for row in _rows(db, account_id, f, as_of):
        lines.append(json.dumps(entry_to_api(row), ensure_ascii=False, separators=(",", ":")))
        if len(lines) >= BATCH_ROWS:
            counted.inc(len(lines))
            yield ("\n".join(lines) + "\n").encode("utf-8")
            lines.clear()
    if lines:
        counted.inc(len(lines))
        yield ("\n".join(lines) + "\n").encode("utf-8")


def stream(
    db: Database, account_id: str, f: ActivityFilter, fmt: str, as_of: int | None = None
) -> Iterator[bytes]:
    """The slice as it stood at seq ``as_of`` (entries appended while streaming are not part of it)."""
    return stream_csv(db, account_id, f, as_of) if fmt == "csv" else stream_jsonl(db, account_id, f, as_of)


def manifest(
    db: Database, signer: CheckpointSigner, account_id: str, f: ActivityFilter, fmt: str, as_of: int
) -> dict[str, Any]:
    """A signed statement of exactly which rows the export of this slice at ``as_of`` holds, with the signed
    checkpoint of the tree of ``as_of`` entries: with it, a removed or added row is provable, not only a
    changed one. The rows are hashed as they stream, so memory stays constant whatever the slice's size."""
    try:  # a manifest for a seq the log does not have yet would be a second, contradictory statement
        checkpoint = signer.sign(db, account_id, as_of)  # also refuses a rewritten tree
    except InvalidInput as exc:
        raise InvalidInput("as_of_seq", exc.message.split(": ", 1)[-1]) from None
    statement = export_statement(account_id, f, dialect=db.dialect, through_seq=as_of).with_only_columns(
        ActivityEntry.seq, ActivityEntry.hash
    )
    digest, rows, first, last = hashlib.sha256(), 0, None, None
    with db.reader() as session:
        for seq, entry_hash in session.execute(statement.execution_options(yield_per=BATCH_ROWS)):
            digest.update(f"{seq}:{entry_hash}\n".encode())
            rows, first, last = rows + 1, first or seq, seq
        purged = _purged(session, account_id, as_of)
    body = {
        "account_id": account_id,
        "filter": dict(sorted(f.raw.items())),
        "format": fmt,
        "as_of_seq": as_of,
        "rows": rows,
        "first_seq": first,
        "last_seq": last,
        "slice_digest": digest.hexdigest(),
        "checkpoint": checkpoint,
        **purged,
    }
    signature = signer.signer.private_key.sign(canonical_json(body).encode("utf-8"))
    return {**body, "signature": base64.b64encode(signature).decode()}


def stream_proofs(
    db: Database, signer: CheckpointSigner, account_id: str, f: ActivityFilter, size: int
) -> Iterator[bytes]:
    """The proof file of the slice's export as of tree ``size`` (API.md "Exports carry proofs"): the signed
    checkpoint, then each row's audit path in that tree, oldest first, read in one snapshot."""
    checkpoint = signer.sign(db, account_id, size)
    statement = export_statement(account_id, f, dialect=db.dialect, through_seq=size).with_only_columns(
        ActivityEntry.seq
    )
    with db.reader() as session:
        head = {"checkpoint": checkpoint, "tree_size": size, **_purged(session, account_id, size)}
        yield (json.dumps(head) + "\n").encode()
        seqs = session.execute(statement.execution_options(yield_per=BATCH_ROWS)).scalars()
        lines: list[str] = []
        for seq, path in TreeReader(session.connection(), account_id).audit_paths(seqs, size):
            hashes = ",".join(f'"{base64.b64encode(h).decode()}"' for h in path)
            lines.append(f'{{"seq":{seq},"hashes":[{hashes}]}}')
            if len(lines) >= BATCH_ROWS:
                yield ("\n".join(lines) + "\n").encode()
                lines.clear()
        if lines:
            yield ("\n".join(lines) + "\n").encode()


def _purged(session: Session, account_id: str, through: int) -> dict[str, Any]:
    """What a manifest and a proof file say of the seqs up to ``through`` that were purged: nothing when none
    were, else ``purged`` (the ranges) and ``purges`` (each run's ranges with its policy), so a gap the
    retention made is told apart from one the filter made."""
    ranges = purge.purged_ranges(session, account_id, through)
    return purge.summary(ranges) if ranges else {}


def filename(account_id: str, f: ActivityFilter, fmt: str) -> str:
    """Names the account and the window, e.g. ``activity-acc_01…-20260301-20260401.csv``."""
    since = f.since.strftime("%Y%m%dT%H%M%SZ") if f.since else "start"
    until = f.until.strftime("%Y%m%dT%H%M%SZ") if f.until else "now"
    return f"activity-{account_id}-{since}-{until}.{fmt}"
