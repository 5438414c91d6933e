"""The two protections every log-side table gets, written once for the migrations that create such tables.

- :func:`append_only`: no UPDATE or DELETE (and on PostgreSQL no TRUNCATE), by trigger — the owner's
  mistake and the attacker's edit both stop at the database.
- :func:`row_security`: migration 0006's policies — a transaction sees and writes only the rows of the
  account it names (``activitylog.account_id``); the system view (``activitylog.system = on``) only reads.

The names they create (``<table>_append_only()``, ``<table>_no_change``, ``<table>_no_truncate``,
``<table>_no_update``, ``<table>_no_delete``, policies ``tenant_rows`` and ``system_reads``) are the ones the
earlier migrations wrote by hand and the tests check, so a migration using these builds the same schema.
"""

from __future__ import annotations

from alembic import op

TENANT_SETTING = "activitylog.account_id"
SYSTEM_SETTING = "activitylog.system"


def append_only(table: str, *, postgres: bool) -> None:
    if not postgres:
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{event.lower()} BEFORE {event} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
            )
        return
    op.execute(
        f"CREATE FUNCTION {table}_append_only() RETURNS trigger LANGUAGE plpgsql AS "
        f"$$ BEGIN RAISE EXCEPTION '{table} is append-only'; END $$"
    )
    op.execute(
        f"CREATE TRIGGER {table}_no_change BEFORE UPDATE OR DELETE ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION {table}_append_only()"
    )
    op.execute(
        f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION {table}_append_only()"
    )


def row_security(table: str) -> None:
    """PostgreSQL only (SQLite is one file for one deployment, with no roles)."""
    mine = f"current_setting('{TENANT_SETTING}', true)"
    system = f"current_setting('{SYSTEM_SETTING}', true) = 'on'"
    op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY tenant_rows ON {table} USING (account_id = {mine}) WITH CHECK (account_id = {mine})"
    )
    op.execute(f"CREATE POLICY system_reads ON {table} FOR SELECT USING ({system})")
