"""streams: destinations the log is delivered to, their cursors and their recent delivery attempts

``streams`` is an account's configuration (audited: every change is an entry). ``stream_cursors`` is where
each stream's delivery stands (the last seq it handled, the retry in progress, the worker holding its
lease) and ``stream_deliveries`` the recent attempts: operational state the relay moves, with row-level
security like every tenant table. Both go with their stream (ON DELETE CASCADE).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 14:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from activitylog.db.base import UTCDateTime
from activitylog.db.protections import row_security

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("streams", "stream_cursors", "stream_deliveries")


def _stream_key(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["account_id", "stream_id"],
        ["streams.account_id", "streams.id"],
        name=op.f(f"fk_{table}_account_id_stream_id_streams"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "streams",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("type", sa.String(length=20), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=True),
        sa.Column("subject", sa.String(length=200), nullable=True),
        sa.Column("format", sa.String(length=20), nullable=False),
        sa.Column("filter", sa.JSON(), nullable=False),
        sa.Column("signing", sa.String(length=20), nullable=True),
        sa.Column("secret", sa.Text(), nullable=True),
        sa.Column("public_key", sa.String(length=100), nullable=True),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_streams_account_id_accounts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_streams")),
        sa.UniqueConstraint("account_id", "id", name=op.f("uq_streams_account_id_id")),
    )
    op.create_table(
        "stream_cursors",
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("stream_id", sa.String(length=40), nullable=False),
        sa.Column("delivered_seq", sa.BigInteger(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("delivered_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("pending_checkpoint", sa.BigInteger(), nullable=True),
        sa.Column("checkpoint_seq", sa.BigInteger(), nullable=False),
        sa.Column("checkpoint_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("lease_owner", sa.String(length=80), nullable=True),
        sa.Column("lease_until", UTCDateTime(timezone=True), nullable=True),
        _stream_key("stream_cursors"),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_stream_cursors_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("account_id", "stream_id", name=op.f("pk_stream_cursors")),
    )
    op.create_table(
        "stream_deliveries",
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("stream_id", sa.String(length=40), nullable=False),
        sa.Column("event_id", sa.String(length=120), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("at", UTCDateTime(timezone=True), nullable=False),
        _stream_key("stream_deliveries"),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_stream_deliveries_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("account_id", "id", name=op.f("pk_stream_deliveries")),
    )
    op.create_index(
        op.f("ix_stream_deliveries_account_id_stream_id_id"),
        "stream_deliveries",
        ["account_id", "stream_id", "id"],
        unique=False,
    )
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            row_security(table)


def downgrade() -> None:
    for table in reversed(TABLES):
        op.drop_table(table)  # policies go with their table
