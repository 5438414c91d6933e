"""the affected resources indexed by seq: (account_id, seq)

A purge piece removes the affected-resource rows of its seq range, and the rows are keyed by
(account_id, resource_id, seq) for the resource filter: with no index led by the account and the seq, each
piece on either engine walked every affected row of the account (565k at 2M entries; two thirds of a
purge's time on SQLite). This index answers a seq range directly.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-02 19:30:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(op.f("ix_activity_affected_account_id_seq"), "activity_affected", ["account_id", "seq"])


def downgrade() -> None:
    op.drop_index(op.f("ix_activity_affected_account_id_seq"), table_name="activity_affected")
