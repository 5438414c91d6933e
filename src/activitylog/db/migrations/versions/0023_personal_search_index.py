"""SQLite: the text-search index of entries holding personal data apart, ``activity_search_personal``

FTS5 keeps a deleted row's tokens in its segments until they are merged, so an erasure rewrites the
text-search index it scrubbed ('optimize') to free the old copies of the erased text: with every entry in
one index that rewrote the whole log's (11 s of a 13 s erasure at 2M entries). Entries in canonical form v2,
the only ones holding subscribers' personal values, now go to an index of their own (``log.search_index``),
and an erasure rewrites that one alone. Moving them out of the shared index is followed by one rewrite of
it, so no copy of their text stays there either.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-02 20:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = "summary, resource_name, actor_name, account_id, seq"
PERSONAL_KEY_INDEX = "ix_activity_search_personal_content_account_seq"


def _add_trigger(name: str, table: str, when: str) -> str:
    return (
        f"CREATE TRIGGER {name} AFTER INSERT ON activity_entries WHEN {when} BEGIN "
        f"INSERT INTO {table}({COLUMNS}) "
        "VALUES (new.summary, new.resource_name, new.actor_name, new.account_id, new.seq); END"
    )


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return  # PostgreSQL indexes the entries' own columns
    op.execute(
        "CREATE VIRTUAL TABLE activity_search_personal USING fts5(summary, resource_name, actor_name, "
        "account_id UNINDEXED, seq UNINDEXED, tokenize='trigram')"
    )
    op.execute(f"CREATE INDEX {PERSONAL_KEY_INDEX} ON activity_search_personal_content (c3, c4)")
    op.execute("DROP TRIGGER activity_search_add")
    op.execute(_add_trigger("activity_search_add", "activity_search", "new.salts IS NULL"))
    op.execute(
        _add_trigger("activity_search_personal_add", "activity_search_personal", "new.salts IS NOT NULL")
    )
    op.execute(
        f"INSERT INTO activity_search_personal({COLUMNS}) "
        f"SELECT {COLUMNS} FROM activity_entries WHERE salts IS NOT NULL ORDER BY account_id, seq"
    )
    moved = (
        "SELECT s.id FROM activity_search_content s JOIN activity_entries e "
        "ON e.account_id = s.c3 AND e.seq = s.c4 WHERE e.salts IS NOT NULL"
    )
    op.execute(f"DELETE FROM activity_search WHERE rowid IN ({moved})")
    op.execute("INSERT INTO activity_search(activity_search) VALUES ('optimize')")


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute("DROP TRIGGER activity_search_personal_add")
    op.execute("DROP TRIGGER activity_search_add")
    op.execute("DROP TABLE activity_search_personal")
    op.execute(_add_trigger("activity_search_add", "activity_search", "1"))
    # one index again, its rowids rising with seq within each account (what a text page reads by)
    op.execute("DELETE FROM activity_search")
    op.execute(
        f"INSERT INTO activity_search({COLUMNS}) "
        f"SELECT {COLUMNS} FROM activity_entries ORDER BY account_id, seq"
    )
