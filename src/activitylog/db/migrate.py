"""Apply Alembic migrations programmatically (the CLI's ``migrate``, ``serve`` and the test fixtures)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from activitylog.db.base import Database

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"

# Engine-specific objects that only migrations know: the text-search index (FTS5 tables on SQLite, a
# trigram GIN index on PostgreSQL). Schema comparisons skip them.
MIGRATION_ONLY_PREFIXES = ("activity_search", "ix_activity_entries_account_id_search")


def earlier_migration(filename: str) -> ModuleType:
    """An earlier migration's module, loaded by path as alembic loads it: what a later one replaces, and
    its downgrade restores, is read from there rather than copied."""
    path = MIGRATIONS / "versions" / filename
    spec = importlib.util.spec_from_file_location(f"_activitylog_migration_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def known_to_models(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    """Alembic ``include_object`` hook: leave the migration-only objects out of comparisons."""
    return not (name or "").startswith(MIGRATION_ONLY_PREFIXES)


def alembic_config(db: Database) -> Config:
    from alembic.config import Config  # noqa: PLC0415  (alembic costs every process a third of a second)

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(db: Database, revision: str = "head") -> None:
    from alembic import command  # noqa: PLC0415

    config = alembic_config(db)
    with db.engine.connect().execution_options(sqlite_begin="DEFERRED") as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
        connection.commit()
