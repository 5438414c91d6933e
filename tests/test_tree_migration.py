"""Migration 0008 on logs that already exist: it builds each account's tree with the recorder's arithmetic,
so the old entries verify and prove, and appends go on from there; down and up again on both engines."""

from __future__ import annotations

from alembic import command
from sqlalchemy import text

from activitylog.db.base import Database
from activitylog.db.migrate import alembic_config, upgrade
from activitylog.log.tree_store import TreeReader
from activitylog.log.verify import verify_account
from activitylog.log.verify_export import consistency_holds, inclusion_root, leaf_hash
from activitylog.services import lists
from factories import cli_uow, new_account


def _migrate(db: Database, verb: str, revision: str) -> None:
    config = alembic_config(db)
    with db.engine.connect() as conn:
        config.attributes["connection"] = conn
        getattr(command, verb)(config, revision)
        conn.commit()


def _entries_written_before_the_tree(db: Database, n: int) -> str:
    """An account with ``n`` entries as 0007 stored them: the log with no tree (the recorder of today
    writes the tree too, so its rows and the head's edge are taken away again, as 0007 had none)."""
    account_id = new_account(db, "Old", email="old@example.com").account.id
    uow = cli_uow(db, account_id)
    for i in range(n - 2):
        lists.create_list(uow, f"Old list {i}")
    with db.engine.begin() as conn:
        if db.dialect == "postgresql":
            conn.execute(text("ALTER TABLE activity_tree DISABLE TRIGGER USER"))
        else:
            conn.execute(text("DROP TRIGGER activity_tree_no_delete"))
        conn.execute(text("DELETE FROM activity_tree"))
        conn.execute(text("UPDATE activity_heads SET tree = NULL"))
    return account_id


def test_0008_builds_the_trees_of_existing_logs(empty_database: Database) -> None:
    fresh = empty_database
    upgrade(fresh)
    account_id = _entries_written_before_the_tree(fresh, 37)
    _migrate(fresh, "downgrade", "0007")
    _migrate(fresh, "upgrade", "0008")
    upgrade(fresh)  # and whatever follows
    with fresh.for_account(account_id).reader() as session:
        assert verify_account(session, account_id).ok
        reader = TreeReader(session.connection(), account_id)
        head = reader.head()
        assert head.size == 37
        old_root = reader.root(20)
        hashes: dict[int, str] = dict(
            session.execute(
                text("SELECT seq, hash FROM activity_entries WHERE account_id = :a"), {"a": account_id}
            ).all()
        )
        for seq in (1, 20, 37):
            assert inclusion_root(seq - 1, 37, leaf_hash(hashes[seq]), reader.inclusion(seq, 37)) == head.root
        assert consistency_holds(20, 37, old_root, head.root, reader.consistency(20, 37))
    lists.create_list(cli_uow(fresh, account_id), "New")
    with fresh.for_account(account_id).reader() as session:
        assert verify_account(session, account_id).checked == 38
