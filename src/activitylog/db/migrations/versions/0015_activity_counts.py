"""activity_counts: entries per hour and per day by actor, by action and by both (derived data)

The activity page's timeline and facet counts read these instead of counting millions of entries per
request. They are derived from the log by a follower in the worker process (``log/counts.py``), never
written on a mutation's commit path, and rebuilt from the log when lost or after a purge; ``verify``
checks them against the entries. Account rows with row-level security like every tenant table.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02 01:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from activitylog.db.base import UTCDateTime
from activitylog.db.protections import row_security

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("activity_counts", "activity_counts_cursors")


def upgrade() -> None:
    op.create_table(
        "activity_counts",
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("grain", sa.String(length=8), nullable=False),
        sa.Column("unit", sa.String(length=8), nullable=False),
        sa.Column("start", UTCDateTime(timezone=True), nullable=False),
        sa.Column("actor_type", sa.String(length=20), nullable=False),
        sa.Column("actor_id", sa.String(length=60), nullable=False),
        sa.Column("action", sa.String(length=60), nullable=False),
        sa.Column("resource_type", sa.String(length=40), nullable=False),
        sa.Column("entries", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_activity_counts_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint(
            "account_id",
            "grain",
            "unit",
            "start",
            "actor_type",
            "actor_id",
            "action",
            "resource_type",
            name=op.f("pk_activity_counts"),
        ),
        sqlite_with_rowid=False,  # rows in key order: a window is one sequential range
    )
    # covering: a filter on an actor or an action sums from the index alone
    for columns in (
        ["actor_id", "start", "action", "resource_type", "entries"],
        ["action", "start", "actor_id", "actor_type", "entries"],
    ):
        op.create_index(
            op.f(f"ix_activity_counts_account_id_grain_unit_{'_'.join(columns)}"),
            "activity_counts",
            ["account_id", "grain", "unit", *columns],
            unique=False,
        )
    op.create_table(
        "activity_counts_cursors",
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("through_seq", sa.BigInteger(), nullable=False),
        sa.Column("purges_through", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_activity_counts_cursors_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_activity_counts_cursors")),
    )
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            row_security(table)


def downgrade() -> None:
    for table in reversed(TABLES):
        op.drop_table(table)  # policies go with their table
