"""Time buckets of the log's timeline: UTC hours, UTC days and ISO weeks (from Monday), in Python and in
the SQL of both engines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, func, literal_column

UNITS: dict[str, timedelta] = {
    "hour": timedelta(hours=1),
    "day": timedelta(days=1),
    "week": timedelta(weeks=1),
}


def floor(instant: datetime, unit: str) -> datetime:
    """The start of the UTC hour, day or ISO week (Monday) holding ``instant``."""
    instant = instant.astimezone(UTC)
    if unit == "hour":
        return instant.replace(minute=0, second=0, microsecond=0)
    day = instant.replace(hour=0, minute=0, second=0, microsecond=0)
    return day if unit == "day" else day - timedelta(days=day.weekday())


def ceil(instant: datetime, unit: str) -> datetime:
    start = floor(instant, unit)
    return start if start == instant else start + UNITS[unit]


def truncated(column: Any, unit: str, dialect: str) -> ColumnElement[Any]:
    """The SQL start of the UTC hour, day or ISO week of an instant column (constants inlined, so the same
    expression can be grouped by)."""
    if dialect == "sqlite":
        if unit == "week":
            return func.strftime(
                literal_column("'%Y-%m-%d 00:00:00'"),
                column,
                literal_column("'-6 days'"),
                literal_column("'weekday 1'"),
            )
        shape = "'%Y-%m-%d %H:00:00'" if unit == "hour" else "'%Y-%m-%d 00:00:00'"
        return func.strftime(literal_column(shape), column)
    return func.date_trunc(literal_column(f"'{unit}'"), func.timezone(literal_column("'UTC'"), column))


def as_utc(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return cast(datetime, value).replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def iso_z(instant: datetime) -> str:
    """A bucket's start as the API writes it: ISO 8601 UTC with ``Z``, to the second."""
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
