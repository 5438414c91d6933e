"""The fast CSV (COPY on PostgreSQL, column-at-a-time on SQLite) is byte for byte the row-by-row Python
reference, for any text in any column — quotes, commas, CR, LF, formula triggers, any script — and for an
entry with no changes."""

from __future__ import annotations

import csv
import io

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from activitylog.db.base import Database
from activitylog.log import csv_sql, verify_export
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


@settings(max_examples=300, deadline=None)
@given(column=st.lists(tricky | st.sampled_from(["lst_01", "2001:db8::1", "a-b", "x=y", ""]), max_size=8))
def test_a_column_is_formatted_like_its_cells_one_by_one(column: list[str]) -> None:
    assert list(csv_sql.safe_column(tuple(column))) == [csv_sql.quote(csv_sql.safe_cell(v)) for v in column]


def test_a_formula_at_the_start_of_any_cell_is_caught_in_a_column_of_plain_ids() -> None:
    assert list(csv_sql.safe_column(("lst_1", "-2+3", "lst_2"))) == ["lst_1", "'-2+3", "lst_2"]
    assert list(csv_sql.safe_column(("@SUM(A1)",))) == ["'@SUM(A1)"]
    assert list(csv_sql.safe_column(("a-b", "c=d"))) == ["a-b", "c=d"]  # a trigger inside a cell is harmless
