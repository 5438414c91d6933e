"""one index per resource filter: (account, resource_type, seq) and (account, resource_id, seq)

The entries' resource was indexed as (account_id, resource_type, resource_id, seq), which answers a type
and an id together but not a type alone in seq order: for ``resource_type=sending_domain`` SQLite, whose
statistics know only averages, walked the whole account along seq to find a rare type's few entries (found
by ``tests/test_plans.py``). Two indexes, each ending with ``seq`` like every other filter's, answer the
type alone and the id alone (with or without its type) newest first, on both engines.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-02 01:40:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD = "ix_activity_entries_account_id_resource_type_resource_id_seq"


def upgrade() -> None:
    op.create_index(
        op.f("ix_activity_entries_account_id_resource_type_seq"),
        "activity_entries",
        ["account_id", "resource_type", "seq"],
    )
    op.create_index(
        op.f("ix_activity_entries_account_id_resource_id_seq"),
        "activity_entries",
        ["account_id", "resource_id", "seq"],
    )
    op.drop_index(OLD, table_name="activity_entries")


def downgrade() -> None:
    op.create_index(OLD, "activity_entries", ["account_id", "resource_type", "resource_id", "seq"])
    op.drop_index("ix_activity_entries_account_id_resource_id_seq", table_name="activity_entries")
    op.drop_index("ix_activity_entries_account_id_resource_type_seq", table_name="activity_entries")
