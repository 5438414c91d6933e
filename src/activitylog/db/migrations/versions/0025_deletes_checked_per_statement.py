"""PostgreSQL: the log's deletes checked once per statement, not once per row

An entry, or an affected-resource row, may be deleted only once its tombstone exists (a purge; for an
entry, with the same hash) or, for an affected row, once its erasure is recorded (0012, 0014). The check
ran in the row trigger, a PL/pgSQL call and a lookup per deleted row: 405 of the 588 ms a 20,000-seq purge
piece spent deleting. Now the row trigger fires on UPDATE alone (0014's checks, unchanged) and an AFTER
DELETE statement trigger looks at every row the statement deleted at once (its transition table, one
anti-join against the tombstones and erasures) and raises if one had no cause, which undoes the whole
statement: what may be deleted is unchanged. SQLite keeps its per-row ``WHEN`` triggers, which
cost no procedure call.

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-03 01:15:00.000000
"""

from collections.abc import Sequence

from alembic import op

from activitylog.db.migrate import earlier_migration

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("activity_entries", "activity_affected")
_ERASURE = earlier_migration("0014_erasure.py")


def _row_trigger(table: str, events: str) -> None:
    op.execute(f"DROP TRIGGER {table}_no_change ON {table}")
    op.execute(
        f"CREATE TRIGGER {table}_no_change BEFORE {events} ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION {table}_append_only()"
    )


def _statement_check(table: str) -> str:
    hash_check = " AND p.hash = gone.hash" if table == "activity_entries" else ""
    cause = _ERASURE._TOMBSTONED.format(row="gone", hash=hash_check)
    if table == "activity_affected":
        cause = f"({cause} OR {_ERASURE._ERASED.format(row='gone')})"
    return (
        f"CREATE FUNCTION {table}_deletes_checked() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"IF EXISTS (SELECT 1 FROM gone WHERE NOT {cause}) THEN "
        f"RAISE EXCEPTION '{table} is append-only'; END IF; RETURN NULL; END $$"
    )


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.execute(_statement_check(table))
        op.execute(
            f"CREATE TRIGGER {table}_deletes_checked AFTER DELETE ON {table} REFERENCING OLD TABLE AS gone "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {table}_deletes_checked()"
        )
        _row_trigger(table, "UPDATE")  # 0014's guard, now for updates alone


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        _row_trigger(table, "UPDATE OR DELETE")
        op.execute(f"DROP TRIGGER {table}_deletes_checked ON {table}")
        op.execute(f"DROP FUNCTION {table}_deletes_checked()")
