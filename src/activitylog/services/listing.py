"""Keyset pages over an account's resources, ordered by id (ULIDs, so creation order)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import InstrumentedAttribute

from activitylog import cursors
from activitylog.db.base import Database
from activitylog.errors import InvalidInput, NotFound

MAX_KEY = 320  # the longest key a resource list pages by: a suppressed address


def encode_after(key: str) -> str:
    return cursors.encode("after", key)


def decode_after(cursor: str | None) -> str | None:
    if not cursor:
        return None
    value = cursors.decode("after", cursor)
    if not isinstance(value, str) or not value.isprintable() or len(value) > MAX_KEY:
        # every key this API pages by is printable and fits its column; anything else (a NUL, which
        # PostgreSQL cannot even compare) was not issued here
        raise InvalidInput("cursor", cursors.REFUSED)
    return value


def page(
    db: Database,
    model: type[Any],
    account_id: str,
    *,
    limit: int,
    cursor: str | None,
    key: InstrumentedAttribute[Any] | None = None,
    where: Sequence[ColumnElement[bool]] = (),
) -> tuple[list[Any], str | None]:
    key = key if key is not None else model.id
    after = decode_after(cursor)
    stmt = select(model).where(model.account_id == account_id, *where)
    if after is not None:
        stmt = stmt.where(key > after)
    with db.reader() as session:
        rows = list(session.scalars(stmt.order_by(key).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, encode_after(getattr(rows[-1], key.key)) if more else None


def one(db: Database, model: type[Any], account_id: str, id_: str, what: str) -> Any:
    with db.reader() as session:
        row = session.execute(
            select(model).where(model.id == id_, model.account_id == account_id)
        ).scalar_one_or_none()
    if row is None:
        raise NotFound(f"{what} {id_} not found")
    return row
