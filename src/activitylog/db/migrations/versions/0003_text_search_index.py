"""text search index for the log's q filter: FTS5 trigrams on SQLite, pg_trgm on PostgreSQL

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 19:55:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Keep in step with activitylog.log.query.SEARCH_TEXT: the index is only used for that exact expression.
PG_SEARCH_TEXT = (
    "lower(summary || chr(31) || coalesce(resource_name, '') || chr(31) || coalesce(actor_name, ''))"
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # The index keeps its own copy keyed by (account_id, seq), not by rowid: VACUUM may renumber the
        # rowids of a table without an INTEGER PRIMARY KEY, which would silently detach an external index.
        op.execute(
            "CREATE VIRTUAL TABLE activity_search USING fts5(summary, resource_name, actor_name, "
            "account_id UNINDEXED, seq UNINDEXED, tokenize='trigram')"
        )
        op.execute(
            "CREATE TRIGGER activity_search_add AFTER INSERT ON activity_entries BEGIN "
            "INSERT INTO activity_search(summary, resource_name, actor_name, account_id, seq) "
            "VALUES (new.summary, new.resource_name, new.actor_name, new.account_id, new.seq); END"
        )
        op.execute(
            "INSERT INTO activity_search(summary, resource_name, actor_name, account_id, seq) "
            "SELECT summary, resource_name, actor_name, account_id, seq FROM activity_entries"
        )
        return
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.execute("CREATE EXTENSION IF NOT EXISTS btree_gin")
    op.execute(
        "CREATE INDEX ix_activity_entries_account_id_search ON activity_entries "
        f"USING gin (account_id, ({PG_SEARCH_TEXT}) gin_trgm_ops)"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER activity_search_add")
        op.execute("DROP TABLE activity_search")
        return
    op.execute("DROP INDEX ix_activity_entries_account_id_search")
