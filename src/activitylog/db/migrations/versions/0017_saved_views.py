"""saved views: a user's named activity filters

``saved_views`` holds each user's named filters of the activity page (the filters of ``log/filters.py`` as
given, in a JSON object). They are an account's audited rows like any other (every create, rename and delete
is an entry), under row-level security on PostgreSQL like the other account tables (0006, 0011); a view
belongs to one user (``user_id``), and goes with that user (ON DELETE CASCADE, as their sessions do). A
user's view names are unique.

Revision ID: 0017
Revises: 0015
Create Date: 2026-12-02 01:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from activitylog.db.base import UTCDateTime
from activitylog.db.protections import row_security

revision: str = "0017"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "saved_views",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("filter", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_saved_views_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_saved_views_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_saved_views")),
        sa.UniqueConstraint(
            "account_id", "user_id", "name", name=op.f("uq_saved_views_account_id_user_id_name")
        ),
    )
    op.create_index(
        op.f("ix_saved_views_account_id_user_id_id"), "saved_views", ["account_id", "user_id", "id"]
    )
    if op.get_bind().dialect.name == "postgresql":
        row_security("saved_views")


def downgrade() -> None:
    op.drop_index(op.f("ix_saved_views_account_id_user_id_id"), table_name="saved_views")
    op.drop_table("saved_views")  # its policies go with it
