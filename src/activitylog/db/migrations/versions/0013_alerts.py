"""alerts: what the detectors raised, each account's alert policy, and the detectors' own state

``alerts`` are audited rows (raising and acknowledging are entries) with row-level security like every
account table; ``dedup_key`` is unique per account so a detector replaying the log raises nothing twice.
``alert_policies`` holds an account's detector settings (no row: the defaults). ``alert_cursors`` and
``alert_credentials`` are the detectors' state — how far they read each account's log, and what they
remember of each credential (last use, the networks it used in the last 30 days): derived data, rebuilt
from the log when lost, row-secured like the stream cursors.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from activitylog.db.base import UTCDateTime
from activitylog.db.protections import row_security

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("alerts", "alert_policies", "alert_cursors", "alert_credentials")


def _account(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["account_id"], ["accounts.id"], name=op.f(f"fk_{table}_account_id_accounts")
    )


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("raised_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("trigger_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("actor_type", sa.String(length=20), nullable=True),
        sa.Column("actor_id", sa.String(length=60), nullable=True),
        sa.Column("actor_name", sa.String(length=320), nullable=True),
        sa.Column("ip", sa.String(length=45), nullable=True),
        sa.Column("summary", sa.String(length=500), nullable=False),
        sa.Column("figures", sa.JSON(), nullable=False),
        sa.Column("seqs", sa.JSON(), nullable=False),
        sa.Column("dedup_key", sa.String(length=200), nullable=True),
        sa.Column("acknowledged_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_by", sa.String(length=60), nullable=True),
        _account("alerts"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
        sa.UniqueConstraint("account_id", "dedup_key", name=op.f("uq_alerts_account_id_dedup_key")),
    )
    op.create_index(
        op.f("ix_alerts_account_id_status_id"), "alerts", ["account_id", "status", "id"], unique=False
    )
    op.create_index(
        op.f("ix_alerts_account_id_kind_actor_id_trigger_at"),
        "alerts",
        ["account_id", "kind", "actor_id", "trigger_at"],
        unique=False,
    )
    op.create_table(
        "alert_policies",
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("alert_policy", sa.JSON(), nullable=False),
        _account("alert_policies"),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_alert_policies")),
    )
    op.create_table(
        "alert_cursors",
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        _account("alert_cursors"),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_alert_cursors")),
    )
    op.create_table(
        "alert_credentials",
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("actor_type", sa.String(length=20), nullable=False),
        sa.Column("actor_id", sa.String(length=60), nullable=False),
        sa.Column("uses", sa.BigInteger(), nullable=False),
        sa.Column("last_seen_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_ip", sa.String(length=45), nullable=True),
        sa.Column("networks", sa.JSON(), nullable=False),
        _account("alert_credentials"),
        sa.PrimaryKeyConstraint("account_id", "actor_type", "actor_id", name=op.f("pk_alert_credentials")),
    )
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            row_security(table)


def downgrade() -> None:
    for table in reversed(TABLES):
        op.drop_table(table)  # indexes and policies go with their table
