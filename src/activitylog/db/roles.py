"""The PostgreSQL application role: it may change the account's tables but only read and append the log.

Run migrations as the owner, then ``activitylog migrate --app-role NAME`` (again after each upgrade), and
serve as NAME: even with the application's own credentials, an UPDATE, DELETE or TRUNCATE of the log is
refused by privileges before the append-only triggers are reached — and only the owner could drop those.

Purging entries past retention is the one exception, and it is not a privilege on the log: the role may
EXECUTE ``activity_purge()`` (migration 0012), which checks the retention and legal holds itself and leaves a
tombstone for every entry it removes. Erasure likewise: ``activity_erase()`` (migrations 0014, 0020) scrubs
v2 entries' personal values, a batch of entries a call, and nothing else, leaving a record of each.

Row-level security (migration 0006) then limits every statement of that role to the account its transaction
names. Superusers and BYPASSRLS roles skip row security whatever the policies say, so such a role is refused
here: serving as it would quietly turn tenant isolation back into a WHERE clause.
"""

from __future__ import annotations

import re

from sqlalchemy import text

import activitylog.db.models  # noqa: F401  (registers every table on Base.metadata)
from activitylog.db.base import Base, Database

APPEND_ONLY = ("activity_entries", "activity_tree", "activity_affected")
APPEND_AND_ADVANCE = ("activity_heads",)
# Tombstones of purged entries: written only by the purge function below, which runs as the tables' owner.
# Records of erased entries: written only by the erasure function, likewise.
READ_ONLY = ("activity_purged", "activity_erased")
PURGE_FUNCTION = "activity_purge(text, bigint, bigint, timestamptz, bigint)"
ERASE_FUNCTION = (  # migration 0020: one array per column, a batch of entries a call
    "activity_erase(text, bigint, bigint[], text[], text[], text[], text[], text[], bigint[], text[])"
)
_ROLE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def grant_app_role(db: Database, role: str) -> None:
    if db.dialect != "postgresql":
        raise ValueError("application roles are a PostgreSQL feature; SQLite relies on its triggers")
    if not _ROLE.match(role):
        raise ValueError(f"role name {role!r}: lower-case letters, digits and _ only")
    _refuse_bypass(db, role)
    special = set(APPEND_ONLY) | set(APPEND_AND_ADVANCE) | set(READ_ONLY)
    domain = sorted(name for name in Base.metadata.tables if name not in special)
    statements = [
        f"REVOKE ALL ON {', '.join(APPEND_ONLY)} FROM PUBLIC, {role}",
        f"REVOKE ALL ON {', '.join(APPEND_AND_ADVANCE)} FROM {role}",
        f"REVOKE ALL ON {', '.join(READ_ONLY)} FROM PUBLIC, {role}",
        f"GRANT USAGE ON SCHEMA public TO {role}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON {', '.join(domain)} TO {role}",
        f"GRANT SELECT, INSERT, UPDATE ON {', '.join(APPEND_AND_ADVANCE)} TO {role}",
        f"GRANT SELECT, INSERT ON {', '.join(APPEND_ONLY)} TO {role}",
        f"GRANT SELECT ON {', '.join(READ_ONLY)} TO {role}",
        # the one way the app may remove entries: past retention, under no hold, each leaving a tombstone
        f"GRANT EXECUTE ON FUNCTION {PURGE_FUNCTION} TO {role}",
        # and the one way it may change them: an erasure's scrub of v2 entries' personal values, recorded
        f"GRANT EXECUTE ON FUNCTION {ERASE_FUNCTION} TO {role}",
        f"GRANT SELECT ON alembic_version TO {role}",
    ]
    with db.engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement))


def _refuse_bypass(db: Database, role: str) -> None:
    with db.engine.connect() as conn:
        bypass = conn.execute(
            text("SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = :role"), {"role": role}
        ).scalar_one_or_none()
    if bypass:
        raise ValueError(f"role {role} bypasses row-level security (superuser or BYPASSRLS); use another")
