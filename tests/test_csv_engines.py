"""The fast CSV (COPY on PostgreSQL, lines built in SQL on SQLite) is byte for byte the row-by-row Python
reference, for any text in any column — quotes, commas, CR, LF, formula triggers, any script — and for an
entry with no changes."""

from __future__ import annotations

import csv
import io

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from activitylog.db.base import Database
from activitylog.log import csv_sql, verify_export
from activitylog.log.csv_sql import CSV_COLUMNS
from activitylog.log.export import stream_csv, stream_csv_reference
from activitylog.log.query import ActivityFilter
from activitylog.log.record import Actor, RequestContext, ResourceRef, record
from conftest import Tenant, behind_the_apps_back

tricky = st.text(
    alphabet=st.sampled_from(list("ab ,\"'=+-@\t\r\n;éß漢🙂"))
    | st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
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
                actor=Actor("system", name, name, on_behalf_of=name),
                context=RequestContext(ip="2001:db8::1", user_agent=agent, request_id=name),
                action="list.update",
                resource=ResourceRef("list", name, name),
                changes={"name": {"from": name, "to": None}},
            )
        record(
            session,
            account_id=tenant.account_id,
            actor=Actor("session", "anonymous", names[0]),
            context=RequestContext(),
            action="user.login_failed",
            resource=ResourceRef("user", "anonymous"),
            changes={},
        )
        session.commit()
    f = ActivityFilter(actor_type=("system", "session"))
    fast = b"".join(stream_csv(db, tenant.account_id, f))
    reference = b"".join(stream_csv_reference(db, tenant.account_id, f))
    assert fast == reference
    rows = list(csv.reader(io.StringIO(fast.decode(), newline="")))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [
        verify_export.unescape(r[CSV_COLUMNS.index("resource_name")]) for r in rows[-len(names) - 1 : -1]
    ] == names
    assert rows[-1][CSV_COLUMNS.index("changes")] == "{}"
    assert verify_export.verify_rows(verify_export.rows_from_csv(io.StringIO(fast.decode(), newline=""))).ok


def test_entries_written_before_csv_escapes_existed_export_the_same(db: Database, tenant: Tenant) -> None:
    """An entry whose ``csv_escapes`` is NULL has its cells checked in SQL: same bytes, nothing unguarded."""
    hostile = ['=HYPERLINK("x")', "a,b", "-1", "'quoted'", 'say "hi"', "line\r\nbreak", "@SUM(A1)", "plain"]
    with db.writer() as session:
        for name in hostile:
            record(
                session,
                account_id=tenant.account_id,
                actor=Actor("system", name, name),
                context=RequestContext(ip="192.0.2.1", user_agent=name),
                action="list.update",
                resource=ResourceRef("list", name, name),
                changes={"name": {"from": name, "to": None}},
            )
        session.commit()
    f = ActivityFilter(actor_type=("system",))
    with_escapes = b"".join(stream_csv(db, tenant.account_id, f))
    with behind_the_apps_back(db) as conn:
        conn.execute(
            text("UPDATE activity_entries SET csv_escapes = NULL WHERE account_id = :a"),
            {"a": tenant.account_id},
        )
    assert b"".join(stream_csv(db, tenant.account_id, f)) == with_escapes
    assert with_escapes == b"".join(stream_csv_reference(db, tenant.account_id, f))
    assert b"\n=" not in with_escapes and b",=" not in with_escapes and b",@" not in with_escapes


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(
        st.none() | tricky | st.sampled_from(["lst_01", "2001:db8::1", "a-b", "x=y", ""]), max_size=20
    )
)
def test_csv_escapes_name_exactly_the_cells_the_reference_changes(values: list[str | None]) -> None:
    escapes = csv_sql.csv_escapes(values)
    for position, value in enumerate(values):
        guarded = csv_sql.safe_cell(value)
        needs = (escapes >> (2 * position)) & 3
        assert bool(needs & csv_sql.GUARD) == (guarded != (value or ""))
        assert bool(needs & csv_sql.QUOTE) == (csv_sql.quote(guarded) != guarded)
    assert escapes >> (2 * len(values)) == 0
