"""activity counts kept exact through a purge: the counts cursor loses ``purges_through``

A purge used to leave the derived counts holding entries it had removed: the follower, on reaching the
purge's entry, dropped the account's counts and counted its whole log again (minutes at 2M entries, on
SQLite in write transactions that held appends back), and readers counted the log itself meanwhile.
Each purge piece now takes what it removes out of the counts in its own transaction (``log/counts.py``,
``leaving``), so the cursor no longer has to remember which purges the counts reflect.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-02 12:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("activity_counts_cursors") as table:
        table.drop_column("purges_through")


def downgrade() -> None:
    # The counts reflect every purge up to their cursor: what 0015's follower reads as "reflected".
    with op.batch_alter_table("activity_counts_cursors") as table:
        table.add_column(sa.Column("purges_through", sa.BigInteger(), nullable=False, server_default="0"))
    op.execute("UPDATE activity_counts_cursors SET purges_through = through_seq")
