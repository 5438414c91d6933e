"""SQLite's text-search index of the log (FTS5 trigrams, migrations 0003 and 0023), in two tables: one for
entries in canonical form v1 and one for v2 entries, the only ones holding subscribers' personal values.

Each keeps its own copy of an entry's searchable text, keyed by (account_id, seq); within one account its
rowids rise with seq. FTS5 keeps a deleted row's tokens in its segments until they are merged, so an
erasure rewrites the index it scrubbed to free the old copies of the text: kept apart, that is the personal
entries' index, not the whole log's (11 s of a 13 s erasure at 2M entries). PostgreSQL indexes the entries'
own columns and has neither table.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import TextClause, bindparam, text
from sqlalchemy.orm import Session

SHARED = "activity_search"
PERSONAL = "activity_search_personal"
TABLES = (SHARED, PERSONAL)
MATCHING_SEQS = text(
    " UNION ALL ".join(
        f"SELECT seq FROM {t} WHERE {t} MATCH :phrase AND account_id = :search_account" for t in TABLES
    )
)
"""The seqs of the account's entries whose text holds the phrase ``:phrase``, in either table."""

COPIES_AFTER = text(
    " UNION ALL ".join(
        f"SELECT seq, summary, resource_name, actor_name, '{t}' AS held_in FROM {t} "
        "WHERE account_id = :a AND seq > :after"
        for t in TABLES
    )
    + " ORDER BY seq"
)
"""Every copy of the account's entries after seq ``:after``, in seq order, each with the table holding it
(``verify`` checks each entry's copy, and that it is where its form belongs)."""


def holding(salts: object) -> str:
    """The table that holds an entry's text, by its ``salts`` (v2 entries have them)."""
    return SHARED if salts is None else PERSONAL


def delete_seqs(table: str) -> TextClause:
    """Delete the copies of the account's entries at the seqs ``:seqs`` (a list)."""
    return text(
        f"DELETE FROM {table} WHERE rowid IN "
        f"(SELECT id FROM {table}_content WHERE c3 = :account AND c4 IN :seqs)"
    ).bindparams(bindparam("seqs", expanding=True))


def delete_purged(table: str) -> TextClause:
    """Delete the copies of the entries tombstoned in ``:lo``..``:hi`` (a purge piece), found through the
    content table's (account_id, seq) index."""
    return text(
        f"DELETE FROM {table} WHERE rowid IN (SELECT id FROM {table}_content "
        "WHERE c3 = :account AND c4 BETWEEN :lo AND :hi AND EXISTS (SELECT 1 FROM activity_purged "
        "WHERE activity_purged.account_id = :account AND activity_purged.seq = c4))"
    )


AUTOMERGE = 4
"""FTS5's own ``automerge`` (the migrations never change it): what a table goes back to after a piece."""
MERGE_PAGES = 64
"""One of FTS5's own units of merge work (leaf pages): what a purge piece merges after its deletes."""


def set_automerge(table: str) -> TextClause:
    """Set the table's ``automerge`` to ``:segments`` (0: no merging when pending changes are written out)."""
    return text(f"INSERT INTO {table}({table}, rank) VALUES ('automerge', :segments)")


def merge_step(table: str) -> TextClause:
    """Write out the table's pending changes, then merge at most about ``:pages`` leaf pages of segments."""
    return text(f"INSERT INTO {table}({table}, rank) VALUES ('merge', :pages)")


@contextmanager
def bounded_merges(session: Session, table: str) -> Iterator[None]:
    """Within the block, deletes from ``table`` never start an unbounded merge; after it, one bounded step.

    A delete writes its rows' tokens out again as delete markers, and FTS5 merges segments whenever pending
    changes are written out, at times far more than the change itself: the longest purge pieces were
    those merges (0.5-1.2 s against ~0.1 s). With ``automerge`` off during a piece's deletes and a
    ``merge`` step of ``MERGE_PAGES`` after them, each piece does a bounded share of the merging; the
    setting is set and restored in the piece's own transaction, so no crash can leave it off."""
    session.execute(set_automerge(table), {"segments": 0})
    yield
    session.execute(merge_step(table), {"pages": MERGE_PAGES})
    session.execute(set_automerge(table), {"segments": AUTOMERGE})


def copy_entries(table: str) -> TextClause:
    """Copy the account's entries at ``:seqs`` into ``table``, in seq order."""
    return text(
        f"INSERT INTO {table}(summary, resource_name, actor_name, account_id, seq) "
        "SELECT summary, resource_name, actor_name, account_id, seq FROM activity_entries "
        "WHERE account_id = :account AND seq IN :seqs ORDER BY seq"
    ).bindparams(bindparam("seqs", expanding=True))


def optimize(table: str) -> TextClause:
    """Merge the table's segments into one: what frees (and, with ``secure_delete``, zeroes) the old
    copies of deleted rows' tokens."""
    return text(f"INSERT INTO {table}({table}) VALUES ('optimize')")
