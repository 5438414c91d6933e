"""Apply Alembic migrations programmatically (the CLI's ``migrate``, ``serve`` and the test fixtures)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from activitylog.db.base import Database

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(db: Database) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(db: Database, revision: str = "head") -> None:
    config = alembic_config(db)
    with db.engine.connect().execution_options(sqlite_begin="DEFERRED") as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
        connection.commit()
