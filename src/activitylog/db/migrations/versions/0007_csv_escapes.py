"""csv_escapes on activity entries

Which cells of an entry's CSV row need a formula guard or quotes, written with the entry so SQLite's export
builds each line in SQL without scanning every cell. Entries already in the log keep NULL, which the export
reads as "check the cells", so nothing needs rewriting (the log is append-only).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 03:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A plain ADD COLUMN on both engines: no table rebuild, so the log's triggers and indexes stay as they are.
    op.add_column("activity_entries", sa.Column("csv_escapes", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    op.drop_column("activity_entries", "csv_escapes")
