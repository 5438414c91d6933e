"""sign_in_failures: failed sign-ins per address, known or not

The sign-in lockout counted a user's failures from the log, so an address with no user was never locked and
answered differently from one with a user; and the count was read, then acted on, so parallel attempts
all passed it. This table counts attempts per address (a SHA-256 of the lower-cased address, whether or
not a user has it) with one atomic upsert before the password is checked. It holds no account's rows,
so it has no row-level security; it is operational state, not the log.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from activitylog.db.base import UTCDateTime

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sign_in_failures",
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("window_started_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("address", name=op.f("pk_sign_in_failures")),
    )


def downgrade() -> None:
    op.drop_table("sign_in_failures")
