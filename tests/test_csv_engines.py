"""The database-formatted CSV (COPY on PostgreSQL, one SQL expression per line on SQLite) is byte for byte
the Python reference, for any text — quotes, commas, CR, LF, formula triggers, any script."""

from __future__ import annotations

import csv
import io

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from activitylog.db.base import Database
from activitylog.log import verify_export
from activitylog.log.export import CSV_COLUMNS, stream_csv, stream_csv_reference
from activitylog.log.query import ActivityFilter
from activitylog.log.record import Actor, RequestContext, ResourceRef, record
from conftest import Tenant

tricky = st.text(
    alphabet=st.sampled_from(list("ab ,\"'=+-@\t\r\n;éß漢🙂"))
    | st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1,
    max_size=12,
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.lists(tricky, min_size=1, max_size=6), agent=st.none() | tricky)
def test_fast_csv_equals_the_reference(
    db: Database, tenant: Tenant, names: list[str], agent: str | None
) -> None:
    with db.writer() as session:
        for name in names:
            record(
                session,
                account_id=tenant.account_id,
                actor=Actor("system", "cli", name),
                context=RequestContext(ip="2001:db8::1", user_agent=agent, request_id=name),
                action="list.update",
                resource=ResourceRef("list", "lst_x", name),
                changes={"name": {"from": name, "to": None}},
            )
        session.commit()
    f = ActivityFilter(resource_id=("lst_x",))
    fast = b"".join(stream_csv(db, tenant.account_id, f))
    reference = b"".join(stream_csv_reference(db, tenant.account_id, f))
    assert fast == reference
    rows = list(csv.reader(io.StringIO(fast.decode(), newline="")))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [
        verify_export.unescape(r[CSV_COLUMNS.index("resource_name")]) for r in rows[-len(names) :]
    ] == names
    assert verify_export.verify_rows(verify_export.rows_from_csv(io.StringIO(fast.decode(), newline=""))).ok
