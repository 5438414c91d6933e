"""Migrations build exactly the schema the models describe, on both engines, and run down and up again."""

from __future__ import annotations

import os
import uuid

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from activitylog.db.base import Base, Database, connect
from activitylog.db.migrate import known_to_models, upgrade
from activitylog.db.models import Audited
from activitylog.db.roles import ERASE_FUNCTION, grant_app_role
from conftest import PG_ENV, fresh_postgres_database


def test_migrated_schema_matches_the_models(db: Database) -> None:
    with db.engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "include_object": known_to_models}
        )
        diff = compare_metadata(context, Base.metadata)
    assert diff == []


def test_the_database_deletes_no_audited_row_by_itself(db: Database) -> None:
    """An ON DELETE CASCADE (or SET NULL) into an audited table would change its rows where the guard
    cannot see them: a change with no entry. The migrated schema has none."""
    audited = {t.name for m in Base.registry.mappers if issubclass(m.class_, Audited) for t in m.tables}
    schema = inspect(db.engine)
    acting = [
        (table, key["name"], key["options"].get("ondelete"))
        for table in sorted(audited)
        for key in schema.get_foreign_keys(table)
        if (key["options"].get("ondelete") or "NO ACTION").upper() not in ("NO ACTION", "RESTRICT")
    ]
    assert acting == []


def test_every_activity_filter_has_an_index_led_by_account_and_ended_by_seq(db: Database) -> None:
    indexes = inspect(db.engine).get_indexes("activity_entries")
    shapes = {tuple(ix["column_names"]) for ix in indexes}
    for column in (
        "actor_id",
        "actor_type",
        "on_behalf_of",
        "action",
        "resource_type",
        "resource_id",
        "ip_key",
    ):
        assert ("account_id", column, "seq") in shapes


def test_downgrade_and_upgrade_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from alembic import command

    from activitylog.db.migrate import alembic_config

    fresh = connect(f"sqlite:///{tmp_path / 'roundtrip.db'}")
    upgrade(fresh)
    config = alembic_config(fresh)
    with fresh.engine.connect() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "base")
        conn.commit()
    assert set(inspect(fresh.engine).get_table_names()) <= {"alembic_version"}
    upgrade(fresh)
    assert "activity_entries" in inspect(fresh.engine).get_table_names()
    fresh.dispose()


def test_row_level_security_comes_off_and_back_on_postgres() -> None:
    """0006 on a real server: its downgrade removes every policy it made, and the upgrade puts them back."""
    server = os.environ.get(PG_ENV)
    if not server:
        pytest.skip(f"PostgreSQL tests skipped: set {PG_ENV}")
    for url in fresh_postgres_database(server):
        fresh = connect(url)
        upgrade(fresh)
        assert _policies(fresh) and _forced(fresh)
        _downgrade(fresh, "0005")
        assert not _policies(fresh) and not _forced(fresh)
        upgrade(fresh)
        assert len(_policies(fresh)) == 2 * len(_forced(fresh))
        fresh.dispose()


ONE_ENTRY_ERASE = "activity_erase(text, bigint, bigint, text, text, text, text, text, bigint, text[])"  # 0014


def test_the_erase_function_keeps_who_may_execute_it_down_and_up_postgres() -> None:
    """0020 replaces 0014's one-entry erase function by the batched one (and its downgrade puts 0014's
    back): the roles that could execute the one may execute the other, and no one else."""
    server = os.environ.get(PG_ENV)
    if not server:
        pytest.skip(f"PostgreSQL tests skipped: set {PG_ENV}")
    for url in fresh_postgres_database(server):
        fresh = connect(url)
        upgrade(fresh)
        app, bystander = (f"al_erase_{uuid.uuid4().hex[:10]}" for _ in range(2))
        with fresh.engine.begin() as conn:
            conn.execute(text(f"CREATE ROLE {app} LOGIN; CREATE ROLE {bystander} LOGIN"))
        try:
            grant_app_role(fresh, app)
            assert _functions(fresh) == {ERASE_FUNCTION: {app}}
            _downgrade(fresh, "0019")
            assert _functions(fresh) == {ONE_ENTRY_ERASE: {app}}
            upgrade(fresh)
            assert _functions(fresh) == {ERASE_FUNCTION: {app}}
        finally:
            with fresh.engine.begin() as conn:
                for role in (app, bystander):
                    conn.execute(text(f"DROP OWNED BY {role}; DROP ROLE {role}"))
            fresh.dispose()


def _functions(db: Database) -> dict[str, set[str]]:
    """Each erase function there is, and the test's roles (``al_erase_…``) that may execute it."""
    with db.engine.connect() as conn:
        found = conn.execute(
            text(
                "SELECT p.oid::regprocedure::text, r.rolname FROM pg_proc p LEFT JOIN pg_roles r "
                "ON r.rolname LIKE 'al\\_erase\\_%' AND has_function_privilege(r.oid, p.oid, 'EXECUTE') "
                "WHERE p.proname = 'activity_erase'"
            )
        ).all()
    functions: dict[str, set[str]] = {}
    for signature, role in found:
        functions.setdefault(signature.replace(",", ", "), set()).update([role] if role else [])
    return functions


def _downgrade(db: Database, revision: str) -> None:
    from alembic import command

    from activitylog.db.migrate import alembic_config

    config = alembic_config(db)
    with db.engine.connect() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, revision)
        conn.commit()


def _policies(db: Database) -> set[str]:
    with db.engine.connect() as conn:
        return set(conn.execute(text("SELECT tablename || '.' || policyname FROM pg_policies")).scalars())


def _forced(db: Database) -> set[str]:
    with db.engine.connect() as conn:
        query = "SELECT relname FROM pg_class WHERE relrowsecurity AND relforcerowsecurity"
        return set(conn.execute(text(query)).scalars())
