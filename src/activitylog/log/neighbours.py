"""The entries either side of one within a slice of the log: what "older" and "newer" lead to on an entry's
page, in the whole log or within the filter it was opened from (a purged or filtered-out seq is skipped)."""

from __future__ import annotations

from activitylog.db.base import Database
from activitylog.db.models import ActivityEntry
from activitylog.log.query import ActivityFilter, encode_cursor, entries_page, export_statement


def neighbours(db: Database, account_id: str, seq: int, f: ActivityFilter) -> tuple[int | None, int | None]:
    """The seqs of the entries of ``f``'s slice just before and just after ``seq`` (None at either end)."""
    older, _ = entries_page(db, account_id, f, cursor=encode_cursor(seq), limit=1)
    after = export_statement(account_id, f, dialect=db.dialect, after_seq=seq)  # oldest first
    first_after = after.with_only_columns(ActivityEntry.seq).limit(1)
    with db.read_connection() as connection:
        newer = connection.execute(first_after).scalar()
    return (older[0]["seq"] if older else None), (int(newer) if newer is not None else None)
