"""activity_affected: the resources each entry changed besides its own, so resource_id finds them all;
an index for the on_behalf_of filter

A bulk entry (a list's import, a list's delete with its contacts) is one entry for many rows; its
``changes`` list their ids under ``<type>_ids`` (``log.affected``). This table indexes them by
``(account_id, resource_id, seq)``, so ``?resource_id=con_…`` finds the import that created a contact and the
delete that took it, from an index, in seq order. It is derived from the entries (``verify`` re-derives it)
and append-only like them. Existing entries whose changes already list ids (imports) are indexed here;
deletes written before this revision kept only a count, so no id can be recovered for them.

``on_behalf_of`` becomes a filter ("what did the scheduler send for this key?"), with its index led by the
account and ended by seq like every other filter's.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 12:00:00.000000
"""

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from activitylog.db.protections import append_only, row_security
from activitylog.log.affected import affected

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 5000


def _index_existing(conn: sa.Connection) -> None:
    """Only entries whose changes text names a ``…_ids`` key are read: the rest list no ids."""
    rows = sa.table(
        "activity_affected",
        sa.column("account_id"),
        sa.column("resource_id"),
        sa.column("seq"),
        sa.column("resource_type"),
    )
    found = conn.execute(
        sa.text(
            "SELECT account_id, seq, resource_type, resource_id, changes FROM activity_entries "
            "WHERE changes LIKE '%\\_ids\"%' ESCAPE '\\' ORDER BY account_id, seq"
        )
    )
    pending: list[dict[str, object]] = []
    for account_id, seq, resource_type, resource_id, changes in found:
        for rtype, rid in affected(json.loads(changes), (resource_type, resource_id)):
            pending.append({"account_id": account_id, "resource_id": rid, "seq": seq, "resource_type": rtype})
        if len(pending) >= BATCH:
            conn.execute(rows.insert(), pending)
            pending = []
    if pending:
        conn.execute(rows.insert(), pending)


def upgrade() -> None:
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    op.create_table(
        "activity_affected",
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("resource_id", sa.String(length=320), nullable=False),
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("resource_type", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_activity_affected_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("account_id", "resource_id", "seq", name=op.f("pk_activity_affected")),
    )
    op.create_index(
        op.f("ix_activity_entries_account_id_on_behalf_of_seq"),
        "activity_entries",
        ["account_id", "on_behalf_of", "seq"],
        unique=False,
    )
    if postgres:
        # A data migration over every account: row security off for this transaction only.
        op.execute("ALTER TABLE activity_entries NO FORCE ROW LEVEL SECURITY")
    _index_existing(bind)
    append_only("activity_affected", postgres=postgres)
    if postgres:
        op.execute("ALTER TABLE activity_entries FORCE ROW LEVEL SECURITY")
        row_security("activity_affected")


def downgrade() -> None:
    """Derived data: the table goes (its triggers and policies with it) and 0009 never had it."""
    op.drop_table("activity_affected")
    op.drop_index("ix_activity_entries_account_id_on_behalf_of_seq", table_name="activity_entries")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION activity_affected_append_only()")
