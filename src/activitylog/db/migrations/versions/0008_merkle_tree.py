"""each account's log as an RFC 6962 Merkle tree; signed notes replace the old checkpoints

``activity_tree`` holds the hashes of the complete subtrees each entry completes, and ``activity_heads.tree``
the tree's right edge (``activitylog.log.tree``). Existing logs are built here, entry by entry, with the same
arithmetic the recorder uses. The tree is append-only like the log it is derived from.

The old checkpoints (``activity_checkpoints``) were JSON statements checked against public keys kept in
``signing_keys``, a table the application can write: trust read from the database it vouches for. Signed
notes (C2SP checkpoints over the tree's root) replace them, checked with keys pinned outside the database,
and the signer remembers what it signed beside its key; both old tables go.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 21:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import activitylog.db.base
from activitylog.db.protections import append_only, row_security
from activitylog.log import tree

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 5000


def _build_existing_trees(conn: sa.Connection) -> None:
    """Each account's tree from its entries, in seq order, written in batches."""
    nodes = sa.table(
        "activity_tree", sa.column("account_id"), sa.column("seq"), sa.column("hashes", sa.LargeBinary)
    )
    heads = sa.table("activity_heads", sa.column("account_id"), sa.column("tree", sa.LargeBinary))
    accounts = conn.execute(sa.text("SELECT account_id FROM activity_heads ORDER BY account_id")).scalars()
    for account_id in list(accounts):
        frontier: list[bytes] = []
        size = 0
        pending: list[dict[str, object]] = []
        rows = conn.execute(
            sa.text("SELECT seq, hash FROM activity_entries WHERE account_id = :a ORDER BY seq"),
            {"a": account_id},
        )
        for seq, entry_hash in rows:
            if seq != size + 1:
                raise RuntimeError(f"{account_id}: seq {size + 1} is missing; run 'activitylog verify' first")
            frontier, completed = tree.append(frontier, size, entry_hash)
            size = seq
            if completed:
                pending.append({"account_id": account_id, "seq": seq, "hashes": completed})
            if len(pending) >= BATCH:
                conn.execute(nodes.insert(), pending)
                pending = []
        if pending:
            conn.execute(nodes.insert(), pending)
        conn.execute(heads.update().where(heads.c.account_id == account_id).values(tree=b"".join(frontier)))


def upgrade() -> None:
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    op.create_table(
        "activity_tree",
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("hashes", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_activity_tree_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("account_id", "seq", name=op.f("pk_activity_tree")),
    )
    op.add_column("activity_heads", sa.Column("tree", sa.LargeBinary(), nullable=True))
    if postgres:
        # A data migration over every account: row security off for this transaction only.
        for table in ("activity_heads", "activity_entries"):
            op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
    _build_existing_trees(bind)
    if postgres:
        for table in ("activity_heads", "activity_entries"):
            op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        row_security("activity_tree")
        op.execute("DROP TABLE activity_checkpoints")  # its triggers and policies go with it
        op.execute("DROP FUNCTION activity_checkpoints_append_only()")
    else:
        op.drop_table("activity_checkpoints")
    append_only("activity_tree", postgres=postgres)
    op.drop_table("signing_keys")


def _old_checkpoint_tables(postgres: bool) -> None:
    """0002's tables as they were, empty: the checkpoints they held are not coming back."""
    op.create_table(
        "signing_keys",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("public_key", sa.String(length=64), nullable=False),
        sa.Column("created_at", activitylog.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("retired_at", activitylog.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signing_keys")),
    )
    op.create_table(
        "activity_checkpoints",
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("signed_at", sa.String(length=32), nullable=False),
        sa.Column("key_id", sa.String(length=40), nullable=False),
        sa.Column("previous_signature", sa.String(length=100), nullable=True),
        sa.Column("signature", sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_activity_checkpoints_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["key_id"], ["signing_keys.id"], name=op.f("fk_activity_checkpoints_key_id_signing_keys")
        ),
        sa.PrimaryKeyConstraint("account_id", "seq", name=op.f("pk_activity_checkpoints")),
    )
    append_only("activity_checkpoints", postgres=postgres)
    if postgres:
        row_security("activity_checkpoints")


def downgrade() -> None:
    """Back to 0007's schema. The tree is derived data and goes; the old checkpoint tables come back empty."""
    postgres = op.get_bind().dialect.name == "postgresql"
    op.drop_table("activity_tree")  # its triggers and policies go with it
    if postgres:
        op.execute("DROP FUNCTION activity_tree_append_only()")
    op.drop_column("activity_heads", "tree")
    _old_checkpoint_tables(postgres)
