"""verify runs: the latest verify of each account and mode, shared by every web process

``serve --processes N`` answers from several processes, so a verify started by one request must be seen —
joined, its progress shown, its verdict read — by a request that another process answers. The run itself
stays in the process that started it; this row is where it says how far it got (``checked`` of ``total``,
``heartbeat_at``), and what it found (``result``, the API's verdict). A run whose heartbeat stops (its
process died) is started afresh by the next request. Operational state, not an account resource: not
audited, row-secured like every tenant table.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-02 01:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from activitylog.db.base import UTCDateTime
from activitylog.db.protections import row_security

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "verify_runs",
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("mode", sa.String(length=20), nullable=False),
        sa.Column("runner", sa.String(length=80), nullable=False),
        sa.Column("started_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("checked", sa.BigInteger(), nullable=False),
        sa.Column("signed_size", sa.BigInteger(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_verify_runs_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("account_id", "mode", name=op.f("pk_verify_runs")),
    )
    if op.get_bind().dialect.name == "postgresql":
        row_security("verify_runs")


def downgrade() -> None:
    op.drop_table("verify_runs")
