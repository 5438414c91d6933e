"""Every filter is answered through its index, on both engines: a test that fails when a filter's plan
falls back to walking the account's whole log (a dropped or renamed index, a condition the planner can no
longer match to one).

The account holds a few thousand entries in which each filtered value is rare, the statistics are fresh
(``ANALYZE``), and the statements are the application's own, captured at the driver while it answers the
page; each is explained as the engine would run it. bench/PLANS*.md shows the same plans at 1M and 10M
entries, with their timings.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from sqlalchemy import Table, event, insert, text

from activitylog.db.base import Database, connect
from activitylog.db.migrate import upgrade
from activitylog.db.models import Account, ActivityEntry
from activitylog.log.filters import NAMES, parse_filter
from activitylog.log.query import entries_page
from activitylog.log.record import ip_key
from conftest import PG_ENV, fresh_postgres_database, unguarded

ACCOUNT = "acc_plans"
ENTRIES = 4000
RARE = 6  # entries carrying each rare value
START = datetime(2026, 1, 1, tzinfo=UTC)

# filter → (its value in the rare entries, the index its plan must use: SQLite's name, PostgreSQL's name)
CASES: dict[str, tuple[dict[str, str], str, str]] = {
    "actor": ({"actor": "usr_rare"}, "ix_activity_entries_account_id_actor_id_seq", "same"),
    "actor_type": ({"actor_type": "rule"}, "ix_activity_entries_account_id_actor_type_seq", "same"),
    "on_behalf_of": (
        {"on_behalf_of": "api_key:key_rare"},
        "ix_activity_entries_account_id_on_behalf_of_seq",
        "same",
    ),
    "action": (
        {"action": "sending_domain.update"},
        "ix_activity_entries_account_id_action_seq",
        "same",
    ),
    "resource_type": (
        {"resource_type": "sending_domain"},
        "ix_activity_entries_account_id_resource_type_seq",
        "same",
    ),
    "resource_id": ({"resource_id": "dom_rare"}, "ix_activity_entries_account_id_resource_id_seq", "same"),
    "ip": ({"ip": "198.51.100.0/24"}, "ix_activity_entries_account_id_ip_key_seq", "same"),
    "since": ({"since": "2026-03-01T00:00:00Z"}, "ix_activity_entries_account_id_occurred_at_seq", "same"),
    "until": ({"until": "2026-01-01T06:00:00Z"}, "ix_activity_entries_account_id_occurred_at_seq", "same"),
    "q": ({"q": "quokka"}, "activity_search VIRTUAL TABLE", "ix_activity_entries_account_id_search"),
}


COMMON_TYPES = ("list", "contact", "broadcast", "segment", "suppression", "api_key", "user", "stream")
COMMON_VERBS = ("create", "update", "delete", "import", "send", "schedule")


def _rows() -> Iterator[dict[str, Any]]:
    """Varied values as a real account has them (a few actor types, tens of actions and resource types),
    with each filter's rare value in a few old entries."""
    rng = random.Random(7)
    rare = set(rng.sample(range(1, ENTRIES - 3000), RARE))  # older than the recent window some searches scan
    for seq in range(1, ENTRIES + 1):
        odd = seq in rare
        ip = "198.51.100.7" if odd else f"203.0.113.{seq % 200}"
        kind = COMMON_TYPES[seq % len(COMMON_TYPES)]
        yield {
            "account_id": ACCOUNT,
            "seq": seq,
            "occurred_at": START + timedelta(minutes=seq)
            if seq < ENTRIES - 5
            else START + timedelta(days=70),
            "actor_type": "rule" if odd else ("session", "api_key", "system")[seq % 3],
            "actor_id": "usr_rare" if odd else f"usr_{seq % 5}",
            "actor_name": "someone",
            "on_behalf_of": "api_key:key_rare" if odd else None,
            "ip": ip,
            "ip_key": ip_key(ip),
            "user_agent": None,
            "action": "sending_domain.update" if odd else f"{kind}.{COMMON_VERBS[seq % 6]}",
            "resource_type": "sending_domain" if odd else kind,
            "resource_id": "dom_rare" if odd else f"lst_{seq % 50}",
            "resource_name": "a name",
            "summary": "the quokka domain" if odd else f"list {seq % 50} renamed",
            "changes": "{}",
            "request_id": None,
            "prev_hash": "0" * 64,
            "hash": f"{seq:064x}",
            "csv_escapes": 0,
        }


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def planned(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    """A database of its own (fresh statistics, no other test's entries), on each engine."""
    if request.param == "sqlite":
        urls: Iterator[str] = iter([f"sqlite:///{tmp_path_factory.mktemp('plans') / 'plans.db'}"])
    elif server := os.environ.get(PG_ENV):
        urls = fresh_postgres_database(server)
    else:
        pytest.skip(f"PostgreSQL tests skipped: set {PG_ENV}")
    for url in urls:
        db = connect(url)
        upgrade(db)
        with unguarded(db) as conn:
            conn.execute(
                insert(cast(Table, Account.__table__)), {"id": ACCOUNT, "name": "Plans", "created_at": START}
            )
            conn.execute(insert(cast(Table, ActivityEntry.__table__)), list(_rows()))
            conn.execute(text("ANALYZE"))
        yield db
        db.dispose()


def _explain(db: Database, statement: str, parameters: Any) -> str:
    """The statement's plan. PostgreSQL is asked as if the table were large: over a few thousand rows a
    sequential scan, or a walk of the primary key that checks each row, is honestly its cheapest plan, so
    sequential scans are ruled out and checking a row is priced as the rows of a big account add up
    (``cpu_operator_cost`` 200 times its default). With its index gone, a filter's plan falls back to
    another index or to the scan, and the test fails."""
    with db.engine.connect() as conn:
        if db.dialect == "sqlite":
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
            return "\n".join(row[-1] for row in rows)
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        conn.exec_driver_sql("SET LOCAL cpu_operator_cost = 0.5")
        rows = conn.exec_driver_sql("EXPLAIN " + statement, parameters).all()
        return "\n".join(row[0] for row in rows)


def _plans(db: Database, **filters: str) -> str:
    """The plans of every statement the application runs to answer the first page of this filter."""
    sent: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            sent.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", capture)
    try:
        rows, _ = entries_page(
            db.for_account(ACCOUNT), ACCOUNT, parse_filter(**filters), cursor=None, limit=50
        )
    finally:
        event.remove(db.engine, "before_cursor_execute", capture)
    assert rows, f"the rare entries were not found by {filters}"
    return "\n\n".join(_explain(db, statement, parameters) for statement, parameters in sent)


def test_every_filter_has_a_plan_case() -> None:
    assert sorted(CASES) == sorted(NAMES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_filter_is_answered_through_its_index(planned: Database, name: str) -> None:
    filters, sqlite_index, postgres_index = CASES[name]
    expected = sqlite_index if planned.dialect == "sqlite" or postgres_index == "same" else postgres_index
    plans = _plans(planned, **filters)
    assert expected in plans, plans
    walked = "SCAN activity_entries\n" in plans + "\n" or "Seq Scan on activity_entries" in plans
    assert not walked, plans
