"""The contract's CSV rows at close to the engine's own export speed, and the cell rules they follow.

Both engines are guided by each entry's ``csv_escapes``: which of its cells need a formula guard or quotes,
worked out once when the entry is written (an entry never changes), so the export does no per-cell scan; an
entry without it (written before it existed) has its cells checked in SQL instead. PostgreSQL streams
``COPY (SELECT <formula-safe text>) TO STDOUT WITH (FORMAT csv)`` straight through (COPY quotes); on SQLite
each whole line is built in SQL and Python only joins a batch of them. Both produce exactly what the
row-by-row reference (``safe_cell`` + ``quote``, RFC 4180 minimal quoting, ``\\n`` line ends) does; the
tests hold them to it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from functools import reduce
from typing import Any

from sqlalchemy import ColumnElement, Integer, Select, String, case, cast, func, literal, literal_column, or_

from activitylog import metrics
from activitylog.db.base import Database
from activitylog.db.models import ActivityEntry
from activitylog.log.chain import CHAINED_FIELDS
from activitylog.log.verify_export import TRIGGERS  # the contract's guard rule, as the auditor checks it

_E = ActivityEntry
# The contract's header: the chained fields, with the summary before the changes, then the two hashes,
# then a v2 entry's salts (empty for v1).
CSV_COLUMNS = (*CHAINED_FIELDS[:-2], "summary", "changes", "request_id", "prev_hash", "hash", "salts")
QUOTE_MARKS = ('"', ",", "\r", "\n")  # RFC 4180: a cell holding one of these is quoted
# What a cell needs, two bits per column of CSV_COLUMNS in ``csv_escapes``.
GUARD, QUOTE = 1, 2


def safe_cell(value: Any) -> str:
    """Formula safety: one extra leading ``'`` on a cell that starts with a trigger (None is empty)."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    return "'" + text if text.startswith(TRIGGERS) else text


_needs_quotes = re.compile("[" + "".join(QUOTE_MARKS) + "]").search  # one scan of the text, not four


def quote(cell: str) -> str:
    """RFC 4180 minimal quoting: only a cell holding a quote, comma, CR or LF is quoted."""
    return '"' + cell.replace('"', '""') + '"' if _needs_quotes(cell) else cell


def csv_escapes(values: Sequence[Any]) -> int:
    """The ``csv_escapes`` of an entry whose values (in CSV_COLUMNS order) are ``values``: bit ``2i`` set if
    cell ``i`` needs a formula guard, bit ``2i + 1`` if it needs quotes (a leading ``'`` never decides
    whether to quote)."""
    escapes = 0
    for position, value in enumerate(values):
        text = value if isinstance(value, str) else "" if value is None else str(value)
        if text:
            needs = (GUARD if text.startswith(TRIGGERS) else 0) | (QUOTE if _needs_quotes(text) else 0)
            escapes |= needs << (2 * position)
    return escapes


def _needs(position: int, bits: int) -> ColumnElement[Any]:
    """The ``bits`` of a cell's escapes (NULL if not known); constants inline, so both engines type them."""
    shift, mask = (literal_column(str(n), Integer) for n in (2 * position, bits))
    return _E.csv_escapes.op(">>")(shift).op("&")(mask)


def _formula_safe(text: ColumnElement[Any]) -> ColumnElement[Any]:
    return case((func.substr(text, 1, 1).in_(TRIGGERS), literal("'") + text), else_=text)


def _pg_cells() -> list[ColumnElement[Any]]:
    """Text cells; COPY's CSV format then quotes exactly as RFC 4180 (and leaves NULL as an empty cell)."""
    cells: list[ColumnElement[Any]] = []
    for position, name in enumerate(CSV_COLUMNS):
        column = getattr(_E, name)
        text: ColumnElement[Any]
        if name == "occurred_at":  # never needs a guard
            text = func.to_char(func.timezone("UTC", column), 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
        elif name == "seq":
            text = cast(column, String)
        else:
            guarded = _needs(position, GUARD) == GUARD
            text = case(
                (_E.csv_escapes.is_(None), _formula_safe(column)),
                (guarded, literal("'").concat(column)),
                else_=column,
            )
        cells.append(text.label(name))
    return cells


def stream_postgres(db: Database, statement: Select[Any]) -> Iterator[bytes]:
    query = statement.with_only_columns(*_pg_cells())
    compiled = query.compile(dialect=db.engine.dialect, compile_kwargs={"render_postcompile": True})
    sql = f"COPY ({compiled}) TO STDOUT WITH (FORMAT csv)"
    with db.connection() as conn:  # in the caller's scope (row-level security)
        raw = conn.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cursor, cursor.copy(sql, compiled.params) as copy:
            yield from _coalesce(copy)
        raw.rollback()


CHUNK_BYTES = 256 * 1024


def _coalesce(blocks: Iterable[memoryview]) -> Iterator[bytes]:
    """COPY hands over one block per row; the response wants few large chunks (each costs a thread hop)."""
    pending: list[bytes] = []
    size = 0
    rows = metrics.EXPORT_ROWS.labels("csv")
    for block in blocks:
        pending.append(bytes(block))
        size += len(block)
        if size >= CHUNK_BYTES:
            rows.inc(len(pending))
            yield b"".join(pending)
            pending, size = [], 0
    if pending:
        rows.inc(len(pending))
        yield b"".join(pending)


def _quoted(text: ColumnElement[Any]) -> ColumnElement[Any]:
    return literal('"').concat(func.replace(text, '"', '""')).concat('"')


def _escaped_in_sql(text: ColumnElement[Any]) -> ColumnElement[Any]:
    """The cell rules checked in SQL, for an entry whose ``csv_escapes`` is not known (or says both)."""
    guarded = _formula_safe(text)
    needs_quotes = or_(*(func.instr(text, mark) > 0 for mark in QUOTE_MARKS))
    return case((needs_quotes, _quoted(guarded)), else_=guarded)


def _sqlite_cell(name: str, position: int) -> ColumnElement[Any]:
    column = getattr(_E, name)
    if name == "occurred_at":  # stored as 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC); never needs escaping
        return func.substr(column, 1, 10).concat("T").concat(func.substr(column, 12)).concat("Z")
    if name == "seq":
        return cast(column, String)
    text = func.coalesce(column, "")
    return case(
        {0: text, GUARD: literal("'").concat(text), QUOTE: _quoted(text)},
        value=_needs(position, GUARD | QUOTE),
        else_=_escaped_in_sql(text),
    )


def _sqlite_line() -> ColumnElement[Any]:
    """One entry's whole CSV line (without its line end) as one SQL expression."""
    cells = [_sqlite_cell(name, position) for position, name in enumerate(CSV_COLUMNS)]
    return reduce(lambda line, cell: line.concat(",").concat(cell), cells[1:], cells[0])


def stream_sqlite(db: Database, statement: Select[Any], batch: int) -> Iterator[bytes]:
    """SQLite builds each line; Python only joins a batch of them (one text value per row is the cheapest
    thing to fetch)."""
    query = statement.with_only_columns(_sqlite_line())
    with db.reader() as session, session.connection().execute(query) as result:
        cursor = result.cursor  # plain tuples: making a Row per row costs more than the line itself
        counted = metrics.EXPORT_ROWS.labels("csv")
        while rows := cursor.fetchmany(batch):
            counted.inc(len(rows))
            yield ("\n".join([line for (line,) in rows]) + "\n").encode("utf-8")
