"""Nothing lost on a crash, the quick version of ``bench/crash.py``: 8 clients writing through the REST API of
a real ``activitylog serve`` process, which is SIGKILLed 3 times; afterwards every acknowledged mutation has
exactly one entry, nothing else changed without its entry, the chains verify and seq has no gaps.

The checker itself is proven too: a change made behind the log's back, and an acknowledged request with no
entry, must both be caught.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from activitylog.db.base import Database
from activitylog.ids import new_id

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import crash  # type: ignore[import-not-found]  # bench/, checked on its own
import harness  # type: ignore[import-not-found]

PG_ENV = "ACTIVITYLOG_TEST_DATABASE_URL"
pytestmark = pytest.mark.slow


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_no_mutation_is_lost_or_forged_across_kills(engine: str) -> None:
    pg_url = os.environ.get(PG_ENV, "")
    if engine == "postgresql" and not pg_url:
        pytest.skip(f"PostgreSQL tests skipped: set {PG_ENV}")
    result = crash.run_engine(
        engine,
        pg_url=pg_url,
        kills=3,
        clients=8,
        up_seconds=(0.2, 0.8),
        min_acked=20,
        seed=7,
        log=lambda _: None,
    )
    assert result.violations == []
    assert result.kills == 3
    assert result.outcomes["acked"] >= 3 * 20
    assert result.check.matched >= result.outcomes["acked"]
    assert result.verify_ok, result.verify_output
    assert result.check.entries > result.outcomes["acked"]


def test_the_checker_catches_a_change_without_its_entry_and_a_lost_acknowledgement(db: Database) -> None:
    tenant = harness.make_tenant(db, clients=1)
    with db.writer() as session:  # behind the log's back, as a buggy code path would
        session.execute(
            text(
                "INSERT INTO lists (id, account_id, name, created_at) VALUES (:id, :account, 'ghost', :now)"
            ),
            {"id": new_id("lst"), "account": tenant.account_id, "now": "2026-01-01 00:00:00"},
        )
        session.commit()
    acked = crash.Attempt("crash-0-0", tenant.keys[0].id, "list.create", "lst_never", "name", "List x")
    acked.outcome = "acked"
    refused = crash.Attempt("crash-0-1", tenant.keys[0].id, "list.create", None, "name", "List y")
    refused.outcome = "refused"

    check = crash.check_store(db, tenant.account_id, [acked, refused])

    assert any("change without entry" in v for v in check.violations), check.violations
    assert any("crash-0-0" in v and "acknowledged but has 0 entries" in v for v in check.violations)
    assert not any("crash-0-1" in v for v in check.violations)
    assert check.unacked == {"refused, no trace": 1}
