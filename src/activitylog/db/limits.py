"""What every engine stores: text without NUL characters that fits its column.

PostgreSQL refuses a NUL in text and a value longer than its ``varchar(n)`` with a driver error (a 500, a
CLI traceback); SQLite stores either without a word. Checked here, before every flush of every session,
both engines accept and refuse exactly the same rows, and the refusal names the field — whichever door
the value came in by (API, dashboard, CLI, a worker).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import String, inspect
from sqlalchemy.orm import Mapper, Session, UOWTransaction

from activitylog.errors import InvalidInput


def check_text(field: str, value: str, max_length: int | None) -> None:
    """Refuse what a text column of at most ``max_length`` characters could not hold on every engine."""
    if "\x00" in value:
        raise InvalidInput(field, "must not contain NUL characters")
    if max_length is not None and len(value) > max_length:
        raise InvalidInput(field, f"too long (at most {max_length} characters, got {len(value)})")


@cache
def _text_columns(mapper: Mapper[Any]) -> tuple[tuple[str, int | None], ...]:
    """(attribute, maximum length) of each text column of a mapped class, found once."""
    out = []
    for attr in mapper.column_attrs:
        column_type = attr.columns[0].type
        if isinstance(column_type, String):
            out.append((attr.key, column_type.length))
    return tuple(out)


def check_row(obj: Any) -> None:
    """Every text value a pending insert or update of ``obj`` would write."""
    state = inspect(obj)
    values = state.dict
    changed = None if state.key is None else state.committed_state  # an update writes only these
    for key, max_length in _text_columns(state.mapper):
        if changed is not None and key not in changed:
            continue
        value = values.get(key)
        if isinstance(value, str):
            check_text(key, value, max_length)


def check_flush(session: Session, _flush: UOWTransaction, _instances: Any) -> None:
    for obj in (*session.new, *session.dirty):
        check_row(obj)
