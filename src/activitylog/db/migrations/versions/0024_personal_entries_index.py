"""the entries holding personal data indexed apart: (account_id, seq) WHERE salts IS NOT NULL

An erasure looks for the address in every v2 entry of the account (its resource, its name, anywhere in its
changes), which no index can answer, and only v2 entries hold personal values: the search read the
account's whole log (2M entries at the benchmark's size) to find a thousand. A partial index of the v2
entries lets it read those alone, on both engines; appends of v1 entries do not touch it.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-02 20:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = "ix_activity_entries_personal"
V2 = sa.text("salts IS NOT NULL")


def upgrade() -> None:
    op.create_index(NAME, "activity_entries", ["account_id", "seq"], sqlite_where=V2, postgresql_where=V2)


def downgrade() -> None:
    op.drop_index(NAME, table_name="activity_entries")
