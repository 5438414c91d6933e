"""the tombstones' foreign key to accounts dropped: every tombstone is copied from an entry that has one

A purge piece writes 20,000 tombstones, and PostgreSQL checked each one's ``account_id`` against
``accounts`` in a trigger call per row that also share-locks the account's row, which every concurrent
append's entry locks too: a third of ``activity_purge()``'s time at 2M entries. The key proved nothing
the log does not already hold: a tombstone is only ever inserted from the entry it replaces
(``INSERT … SELECT`` from ``activity_entries``, whose own key to ``accounts`` stays), by the purge
function of an account it checked, and an account cannot go while its log has entries (the run's own
``activity_log.purge`` entry is never purged). SQLite rebuilds the table without the key and gets its
append-only triggers back.

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-03 06:40:00.000000
"""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from alembic import op
from sqlalchemy import text

revision: str = "0026"
down_revision: str | None = "0025"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "activity_purged"
KEY = "fk_activity_purged_account_id_accounts"


@contextmanager
def _rebuilt_with_its_triggers() -> Iterator[None]:
    """SQLite's table rebuild drops the table's own triggers, and cannot rename the new table into place
    while other tables' triggers name the old one (the log's delete guards read the tombstones): every
    trigger that names the table is set aside for the rebuild and put back exactly as it was."""
    triggers = op.get_bind().execute(
        text(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND (tbl_name = :t OR sql LIKE :named)"
        ),
        {"t": TABLE, "named": f"%{TABLE}%"},
    )
    saved = list(triggers)
    for name, _sql in saved:
        op.execute(f'DROP TRIGGER "{name}"')
    yield
    for _name, sql in saved:
        op.execute(sql)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint(KEY, TABLE, type_="foreignkey")
        return
    with _rebuilt_with_its_triggers(), op.batch_alter_table(TABLE, recreate="always") as table:
        table.drop_constraint(KEY, type_="foreignkey")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.create_foreign_key(KEY, TABLE, "accounts", ["account_id"], ["id"])
        return
    with _rebuilt_with_its_triggers(), op.batch_alter_table(TABLE, recreate="always") as table:
        table.create_foreign_key(KEY, "accounts", ["account_id"], ["id"])
