"""The shortcuts of verify's walk give exactly what the product's own functions give, for every input: the
contract's ``occurred_at`` text from what the engine stored, and the derived cells (``summary``, ``ip_key``,
``csv_escapes``) from their memos. (The canonical JSON it writes field by field: tests/test_chain.py.)"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.postgresql import psycopg

from activitylog.log.actions import ALL_ACTIONS
from activitylog.log.chain import format_instant
from activitylog.log.csv_sql import CSV_COLUMNS, csv_escapes
from activitylog.log.record import ip_key
from activitylog.log.verify import _AT, _COLUMNS, _Derived, _Instants
from activitylog.log.verify_export import summarize


def _outcome(read: Any, value: Any) -> tuple[str, Any]:
    try:
        return "text", read(value)
    except Exception as exc:
        return "raises", type(exc)


def _as_sqlalchemy_reads_it(value: Any) -> str:
    """The walk's text before: SQLAlchemy's SQLite DATETIME reads the stored text with ``fromisoformat``,
    ``UTCDateTime`` makes it aware, ``format_instant`` writes it."""
    parsed = datetime.fromisoformat(value)
    return format_instant(parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC))


def _stored(instant: datetime) -> str:
    """How SQLAlchemy stores a naive UTC instant on SQLite."""
    i = instant
    return f"{i.year:04d}-{i.month:02d}-{i.day:02d} {i:%H:%M:%S}.{i.microsecond:06d}"


_ALPHABET = "0123456789-:. TZ+\u0663\uff11"  # with an Arabic-Indic and a full-width digit
_stored_texts = st.datetimes().map(_stored)


@st.composite
def _edited(draw: st.DrawFn) -> str:
    """A stored text with one character replaced, inserted or removed."""
    text = draw(_stored_texts)
    at = draw(st.integers(0, len(text)))
    char = draw(st.sampled_from(_ALPHABET))
    how = draw(st.sampled_from(["replace", "insert", "remove"]))
    if how == "replace":
        return text[:at] + char + text[at + 1 :]
    return text[:at] + char + text[at:] if how == "insert" else text[:at] + text[at + 1 :]


@given(
    _stored_texts
    | _edited()
    | st.text(_ALPHABET, max_size=32)
    | st.sampled_from(["", "2026-02-29 00:00:00.000000"])
)
def test_sqlite_occurred_at_reads_as_sqlalchemy_read_it(value: str) -> None:
    instants = _Instants(sqlite.dialect())
    expected = _outcome(_as_sqlalchemy_reads_it, value)
    assert _outcome(instants.text, value) == expected
    assert _outcome(instants.text, value) == expected  # again, from the memo of days


@given(st.datetimes(timezones=st.timezones()))
@example(datetime(999, 12, 31, 23, 59, 59, tzinfo=UTC))
@example(datetime(1000, 1, 1, tzinfo=UTC))
def test_postgresql_occurred_at_reads_as_sqlalchemy_read_it(value: datetime) -> None:
    dialect = psycopg.dialect()  # type: ignore[no-untyped-call]  # SQLAlchemy's dialects are untyped
    assert _Instants(dialect).text(value) == format_instant(value.astimezone(UTC))


_PLAIN = {"seq", "occurred_at", "prev_hash", "hash"}
_cell = st.none() | st.text() | st.sampled_from(["=1+1", "-", "'", "a,b", 'say "hi"', "\r\n", "@x", "\tx"])


@st.composite
def _rows(draw: st.DrawFn) -> tuple[Any, ...]:
    row: dict[str, Any] = {name: draw(_cell) for name in _COLUMNS}
    row["action"] = draw(st.sampled_from(sorted(ALL_ACTIONS)))
    row["ip"] = draw(st.none() | st.ip_addresses().map(str))
    row["ip_key"] = draw(st.sampled_from([ip_key(row["ip"]), "4c0000201", None]))
    row["summary"] = draw(
        st.sampled_from([summarize(row["action"], row["resource_name"]), "Created list", ""])
    )
    row["changes"] = draw(st.text() | st.sampled_from(['{"a":1}', "-1", "[]", '"x"']))
    row["account_id"] = draw(st.sampled_from(["acc_1", "=acc"]))
    return tuple(row[name] for name in _COLUMNS)


@given(st.lists(_rows(), min_size=1, max_size=6))
def test_derived_cells_are_the_products_own(rows: list[tuple[Any, ...]]) -> None:
    derived = _Derived()
    for row in [*rows, *rows]:  # the second time round, from the memos
        cell = {name: row[_AT[name]] for name in _COLUMNS}
        assert derived.summary_holds(row) == (
            cell["summary"] == summarize(cell["action"], cell["resource_name"])
        )
        assert derived.ip_key_holds(row) == (cell["ip_key"] == ip_key(cell["ip"]))
        expected = csv_escapes([None if name in _PLAIN else cell[name] for name in CSV_COLUMNS])
        assert derived.csv_escapes(row) == expected
