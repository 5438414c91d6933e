"""row-level security on every tenant table (PostgreSQL; a no-op on SQLite)

Every query already says ``WHERE account_id = …``; this makes the database say it too. Each table that
holds an account's rows shows a transaction only the rows of the account named in the transaction-local
setting ``activitylog.account_id`` (set by ``activitylog.db.base`` when a transaction begins), and accepts
only rows of that account. The few cross-account lookups — sign-in by email, an API key or session token by
its hash, the scheduler, dispatcher and checkpointer finding due work, the CLI — set ``activitylog.system``
to ``on`` instead, which grants SELECT on every account and nothing more: their writes name the account.

FORCE applies the policies to the tables' owner as well; only superusers and roles with BYPASSRLS are
exempt. Schema changes are not affected. A later data migration that must rewrite every account's rows
runs ``ALTER TABLE … NO FORCE ROW LEVEL SECURITY`` and ``FORCE`` again inside its own transaction.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 10:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TENANT_SETTING = "activitylog.account_id"
SYSTEM_SETTING = "activitylog.system"

# Each tenant table, with the column naming its account (an account is its own tenant).
TENANT_TABLES = {
    "accounts": "id",
    "users": "account_id",
    "api_keys": "account_id",
    "auth_sessions": "account_id",
    "lists": "account_id",
    "contacts": "account_id",
    "segments": "account_id",
    "broadcasts": "account_id",
    "suppressions": "account_id",
    "sending_domains": "account_id",
    "reputation_rules": "account_id",
    "deliveries": "account_id",
    "delivery_events": "account_id",
    "activity_heads": "account_id",
    "activity_entries": "account_id",
    "activity_checkpoints": "account_id",
}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite is one file for one deployment; it has no roles and no row security
    mine = f"current_setting('{TENANT_SETTING}', true)"
    system = f"current_setting('{SYSTEM_SETTING}', true) = 'on'"
    for table, column in TENANT_TABLES.items():
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_rows ON {table} USING ({column} = {mine}) WITH CHECK ({column} = {mine})"
        )
        op.execute(f"CREATE POLICY system_reads ON {table} FOR SELECT USING ({system})")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TENANT_TABLES:
        op.execute(f"DROP POLICY system_reads ON {table}")
        op.execute(f"DROP POLICY tenant_rows ON {table}")
        op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
