"""An export streams: memory does not grow with the slice (three times the rows, about the same peak)."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import cast

import pytest
from sqlalchemy import Table, insert

from activitylog.db.base import Database
from activitylog.db.models import ActivityEntry
from activitylog.log.export import stream
from activitylog.log.query import ActivityFilter
from conftest import Tenant

pytestmark = pytest.mark.slow


def _add_rows(db: Database, account_id: str, first_seq: int, count: int) -> None:
    """Rows written straight to the table (no chain: this test measures memory, not integrity)."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [
        {
            "account_id": account_id, "seq": seq, "occurred_at": start + timedelta(seconds=seq),
            "actor_type": "api_key", "actor_id": "key_bulk", "actor_name": "Bulk", "on_behalf_of": None,
            "ip": "203.0.113.5", "ip_key": "4cb007105", "user_agent": "bench/1.0", "action": "list.update",
            "resource_type": "list", "resource_id": f"lst_{seq % 500}", "resource_name": f"List, \"{seq}\"",
            "summary": f'Updated list "List {seq}"', "changes": '{"name":{"from":"a","to":"b"}}',
            "request_id": f"req-{seq}", "prev_hash": "0" * 64, "hash": f"{seq:064x}",
        }
        for seq in range(first_seq, first_seq + count)
    ]  # fmt: skip
    with db.engine.begin() as conn:
        for i in range(0, len(rows), 5000):
            conn.execute(insert(cast(Table, ActivityEntry.__table__)), rows[i : i + 5000])


def _peak_while_exporting(chunks: Iterator[bytes]) -> tuple[int, int]:
    tracemalloc.start()
    try:
        size = sum(len(chunk) for chunk in chunks)
        return tracemalloc.get_traced_memory()[1], size
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_export_memory_does_not_grow_with_the_slice(db: Database, tenant: Tenant, fmt: str) -> None:
    small_rows = 10_000
    _add_rows(db, tenant.account_id, 1000, small_rows)
    small_peak, small_size = _peak_while_exporting(stream(db, tenant.account_id, ActivityFilter(), fmt))
    _add_rows(db, tenant.account_id, 1000 + small_rows, 2 * small_rows)
    large_peak, large_size = _peak_while_exporting(stream(db, tenant.account_id, ActivityFilter(), fmt))
    assert large_size > 2.5 * small_size  # three times the rows went out...
    assert large_peak < 1.5 * small_peak + 256 * 1024, (small_peak, large_peak)  # ...in about the same memory
