"""The contract's CSV rows at close to the engine's own export speed, and the cell rules they follow.

PostgreSQL streams ``COPY (SELECT <formula-safe text>) TO STDOUT WITH (FORMAT csv)`` straight through; SQLite
returns text cells and Python finishes each batch a column at a time (``safe_column``). Both produce exactly
what the row-by-row reference (``safe_cell`` + ``quote``, RFC 4180 minimal quoting, ``\\n`` line ends)
does; the tests hold them to it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, String, case, cast, func, literal

from activitylog.db.base import Database
from activitylog.db.models import ActivityEntry

_E = ActivityEntry
TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n", "'")


def _formula_safe(text: ColumnElement[Any]) -> ColumnElement[Any]:
    return case((func.substr(text, 1, 1).in_(TRIGGERS), literal("'") + text), else_=text)


def _pg_cells(columns: tuple[str, ...]) -> list[ColumnElement[Any]]:
    """Text cells; COPY's CSV format then quotes exactly as RFC 4180 (and leaves NULL as an empty cell)."""
    cells: list[ColumnElement[Any]] = []
    for name in columns:
        column = getattr(_E, name)
        text: ColumnElement[Any]
        if name == "occurred_at":
            text = func.to_char(func.timezone("UTC", column), 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
        elif name == "seq":
            text = cast(column, String)
        else:
            text = column
        cells.append(_formula_safe(text).label(name))
    return cells


def stream_postgres(db: Database, statement: Select[Any], columns: tuple[str, ...]) -> Iterator[bytes]:
    query = statement.with_only_columns(*_pg_cells(columns))
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
    for block in blocks:
        pending.append(bytes(block))
        size += len(block)
        if size >= CHUNK_BYTES:
            yield b"".join(pending)
            pending, size = [], 0
    if pending:
        yield b"".join(pending)


def _sqlite_text(name: str) -> ColumnElement[Any]:
    column = getattr(_E, name)
    if name == "occurred_at":  # stored as 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC)
        return func.substr(column, 1, 10) + "T" + func.substr(column, 12) + "Z"
    if name == "seq":
        return cast(column, String)
    if name == "changes":
        # Canonical JSON of an object: it starts with "{" (never a formula trigger), and it needs quotes
        # exactly when it holds a '"' (every comma is between quoted keys; CR/LF are escaped).
        quoted = literal('"') + func.replace(column, '"', '""') + literal('"')
        return case((func.instr(column, '"') > 0, quoted), else_=column)
    return func.coalesce(column, "")


def stream_sqlite(
    db: Database, statement: Select[Any], columns: tuple[str, ...], batch: int
) -> Iterator[bytes]:
    """SQLite's per-cell SQL functions cost more than Python's string scans, so the database hands over
    text (NULL as "", ``changes`` already a cell) and Python finishes a batch column by column."""
    query = statement.with_only_columns(*(_sqlite_text(name).label(name) for name in columns))
    finished = columns.index("changes")
    with db.reader() as session, session.connection().execute(query) as result:
        cursor = result.cursor  # plain tuples: making a Row per row costs more than the CSV itself
        while rows := cursor.fetchmany(batch):
            by_column = zip(*rows, strict=True)
            cells = [values if i == finished else safe_column(values) for i, values in enumerate(by_column)]
            yield ("\n".join(map(",".join, zip(*cells, strict=True))) + "\n").encode("utf-8")


def safe_cell(value: Any) -> str:
    """Formula safety: one extra leading ``'`` on a cell that starts with a trigger (None is empty)."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    return "'" + text if text.startswith(TRIGGERS) else text


def quote(cell: str) -> str:
    """RFC 4180 minimal quoting: only a cell holding a quote, comma, CR or LF is quoted."""
    if '"' in cell or "," in cell or "\r" in cell or "\n" in cell:
        return '"' + cell.replace('"', '""') + '"'
    return cell


_SEPARATOR = "\x00"
_AT_A_CELL_START = tuple(_SEPARATOR + trigger for trigger in TRIGGERS)


def safe_column(values: tuple[str, ...]) -> Sequence[str]:
    """One column of a batch as CSV cells, by the same rules as ``quote(safe_cell(v))``. Most columns (ids,
    hashes, actions, times) need nothing, which a few scans of the joined column prove at C speed; the
    others are fixed in one pass with no call per cell (a leading ``'`` never decides whether to quote)."""
    joined = _SEPARATOR + _SEPARATOR.join(values)
    if any(mark in joined for mark in _AT_A_CELL_START):
        values = tuple("'" + v if v.startswith(TRIGGERS) else v for v in values)
    if '"' in joined or "," in joined or "\r" in joined or "\n" in joined:
        return [
            '"' + v.replace('"', '""') + '"' if '"' in v or "," in v or "\r" in v or "\n" in v else v
            for v in values
        ]
    return values
