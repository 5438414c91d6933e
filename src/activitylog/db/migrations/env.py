"""Alembic environment: migrations run against the connection handed in by ``activitylog.db.migrate``."""

from __future__ import annotations

from alembic import context

import activitylog.db.models  # noqa: F401  (registers the tables)
from activitylog.db.base import Base
from activitylog.db.migrate import known_to_models

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    include_object=known_to_models,
)
with context.begin_transaction():
    context.run_migrations()
