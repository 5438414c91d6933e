"""saved views no longer go with their user by ON DELETE CASCADE: deleting a user deletes them, logged

A view is an audited row: its delete must be an entry (or listed in one). The cascade removed a deleted
user's views inside the database, where the guard cannot see them, so ``user.delete`` did not say they
went. ``services.users.delete_user`` now deletes them itself, in the user's entry (``saved_view_ids``);
without the cascade, a path that forgets them fails on the foreign key instead of losing them silently.

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-06 21:45:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0027"
down_revision: str | None = "0026"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "saved_views"
KEY = "fk_saved_views_user_id_users"


def _key(ondelete: str | None) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint(KEY, TABLE, type_="foreignkey")
        op.create_foreign_key(KEY, TABLE, "users", ["user_id"], ["id"], ondelete=ondelete)
        return
    with op.batch_alter_table(TABLE, recreate="always") as table:
        table.drop_constraint(KEY, type_="foreignkey")
        table.create_foreign_key(KEY, "users", ["user_id"], ["id"], ondelete=ondelete)


def upgrade() -> None:
    _key(None)


def downgrade() -> None:
    _key("CASCADE")
