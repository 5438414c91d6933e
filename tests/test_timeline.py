"""The timeline and facet counts (GET /api/v1/activity/histogram and /facets), on both engines, through the
real HTTP app: every bucket of the window with its zeros, counts per actor type that match the entries the
listing returns for the same filter, whether they come from the log, from the derived counts
(``log/counts.py``), or from both with a tail the follower has not reached; purged entries drop out;
facets in a deterministic order; bad parameters refused by name; one account never sees another's."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import httpx
import pytest
from sqlalchemy import Table, delete, event, insert, text

from activitylog.db.models import ActivityCount
from activitylog.log import counts
from activitylog.log.buckets import floor
from activitylog.log.query import parse_filter
from activitylog.log.record import Actor, RequestContext
from activitylog.log.timeline import summarize
from activitylog.log.verify import verify_account
from activitylog.services import accounts, api_keys, lists, retention
from activitylog.services.uow import SYSTEM_CLI, UnitOfWork
from activitylog.web.app import create_app
from conftest import PASSWORD, Server, run_cli

V1 = "/api/v1/activity"
ALICE = Actor("session", "usr_alice0000000000000000000", "alice@example.com")
BOB = Actor("session", "usr_bob00000000000000000000", "bob@example.com")
ZAPIER = Actor("api_key", "key_zapier000000000000000000", "Zapier")
RULE = Actor("rule", "rul_bounce000000000000000000", "Bounce rule")


@dataclass
class History:
    account_id: str
    client: httpx.Client
    start: datetime
    server: Server
    owner_email: str

    def uow(self, actor: Actor, at: datetime) -> UnitOfWork:
        return UnitOfWork(
            self.server.db,
            account_id=self.account_id,
            actor=actor,
            context=RequestContext(),
            clock=lambda: at,
        )

    def entries(self, **params: str) -> list[dict[str, Any]]:
        response = self.client.get(V1, params={**params, "limit": "1000"})
        assert response.status_code == 200, response.text
        return list(response.json()["data"])


def make_history(server: Server, start: datetime) -> History:
    """An account made at ``start`` (a key and its owner), then lists made, renamed and deleted by four
    actors over three days, with quiet hours between."""
    email = f"owner-{uuid.uuid4().hex[:10]}@example.com"
    created = accounts.create_account(
        server.db,
        name="Timeline Co",
        owner_email=email,
        password=PASSWORD,
        actor=SYSTEM_CLI,
        context=RequestContext(),
        clock=lambda: start,
    )
    account_id = created.account.id
    uow = UnitOfWork(
        server.db, account_id=account_id, actor=SYSTEM_CLI, context=RequestContext(), clock=lambda: start
    )
    key = api_keys.create_api_key(uow, name="reader", scopes=["full"]).secret
    client = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    h = History(account_id, client, start, server, email)
    plan = [  # (hours after start, actor, how many lists, renamed?, deleted?)
        (1.25, ALICE, 3, True, False),
        (1.5, ZAPIER, 2, False, False),
        (5.0, RULE, 1, True, True),
        (26.5, ALICE, 2, False, True),
        (27.0, BOB, 4, True, False),
        (50.75, ZAPIER, 3, True, True),
        (70.1, BOB, 1, False, False),
    ]
    for hours, actor, n, rename, remove in plan:
        at = start + timedelta(hours=hours)
        for i in range(n):
            made = lists.create_list(h.uow(actor, at + timedelta(seconds=i)), f"List {hours}-{i}")
            if rename:
                lists.update_list(
                    h.uow(actor, at + timedelta(seconds=i, milliseconds=500)), made.id, {"name": "x"}
                )
            if remove:
                lists.delete_list(h.uow(actor, at + timedelta(seconds=i, milliseconds=700)), made.id)
    return h


@pytest.fixture
def history(server: Server) -> History:
    # A fresh, distinct past per test: the log's times only move forward within an account.
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = today - timedelta(days=330 - uuid.uuid4().int % 300)
    return make_history(server, start)


def expected_buckets(
    entries: list[dict[str, Any]], unit: str, since: datetime, until: datetime
) -> dict[str, Any]:
    counted: Counter[tuple[datetime, str]] = Counter()
    for e in entries:
        counted[
            (floor(datetime.fromisoformat(e["occurred_at"].replace("Z", "+00:00")), unit), e["actor"]["type"])
        ] += 1
    step = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(weeks=1)}[unit]
    out, at = [], floor(since, unit)
    while True:
        by_type = {t: counted.get((at, t), 0) for t in ("session", "api_key", "rule", "system")}
        out.append(
            {
                "start": at.isoformat().replace("+00:00", "Z"),
                "count": sum(by_type.values()),
                "by_actor_type": by_type,
            }
        )
        at += step
        if at >= until:
            return {"bucket": unit, "buckets": out}


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


FILTERS: list[dict[str, str]] = [
    {},
    {"actor_type": "session"},
    {"actor": ZAPIER.id},
    {"action": "list.update,list.delete"},
    {"action": "create", "actor_type": "api_key,rule"},
    {"resource_type": "list"},
    {"q": "List 27"},  # not a column of the counts: counted in the log
]


def check_all(h: History) -> None:
    since, until = h.start + timedelta(minutes=20), h.start + timedelta(hours=71, minutes=10)
    window = {"since": iso(since), "until": iso(until)}
    for f in FILTERS:
        entries = h.entries(**f, **window)
        for unit in ("hour", "day", "week"):
            got = h.client.get(f"{V1}/histogram", params={**f, **window, "bucket": unit})
            assert got.status_code == 200, got.text
            assert got.json() == expected_buckets(entries, unit, since, until), (f, unit)
        facets = h.client.get(f"{V1}/facets", params={**f, **window}).json()
        assert facets == expected_facets(entries), f


def expected_facets(entries: list[dict[str, Any]]) -> dict[str, Any]:
    def top(counter: Counter[str]) -> list[tuple[str, int]]:
        return sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:10]

    actors = Counter(e["actor"]["id"] for e in entries)
    names = {e["actor"]["id"]: e["actor"]["name"] for e in reversed(entries)}  # newest first: last wins
    return {
        "actor": [{"id": a, "name": names[a], "count": n} for a, n in top(actors)],
        "action": [{"value": v, "count": n} for v, n in top(Counter(e["action"] for e in entries))],
        "resource_type": [
            {"value": v, "count": n} for v, n in top(Counter(e["resource"]["type"] for e in entries))
        ],
    }


def test_counts_match_the_entries_from_the_log_the_derived_counts_and_both(history: History) -> None:
    check_all(history)  # nothing counted yet: every count from the log
    assert counts.catch_up(history.server.db, history.account_id) > 0
    check_all(history)  # whole hours from the derived counts, the window's ends from the log
    # a tail the follower has not reached, inside the window
    at = history.start + timedelta(hours=71)
    for i in range(3):
        lists.create_list(history.uow(RULE, at + timedelta(seconds=i)), f"Late {i}")
    check_all(history)
    counts.catch_up(history.server.db, history.account_id)
    check_all(history)
    with history.server.db.reader() as session:
        assert counts.mismatch(session, history.account_id) is None
        assert verify_account(session, history.account_id).ok


class StopAfter(threading.Event):
    """A worker's stop event that is set once the follower has asked ``n`` times."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.asked, self.n = 0, n

    def is_set(self) -> bool:
        self.asked += 1
        return self.asked > self.n or super().is_set()


def test_a_recount_stops_between_batches_when_its_worker_stops(history: History) -> None:
    db, account_id = history.server.db, history.account_id
    assert counts.catch_up(db, account_id, stop=StopAfter(0)) == 0  # stopped before the first batch
    assert counts.catch_up(db, account_id, batch=5, stop=StopAfter(2)) == 10  # two batches, then stopped
    with db.reader() as session:
        assert counts.mismatch(session, account_id) is None  # what it counted so far is exact
    head = len(history.entries())
    assert 10 + counts.catch_up(db, account_id) == head  # and the next run goes on from there
    check_all(history)


@pytest.mark.parametrize(
    "filters",
    [{}, {"action": "list.update"}, {"actor": ALICE.id}, {"action": "list.update", "actor": BOB.id}],
)
def test_no_count_query_reads_a_whole_grain_on_sqlite_without_statistics(
    history: History, filters: dict[str, str]
) -> None:
    """SQLite plans without statistics here, as a product database has them unless ANALYZE ran: each
    counts query must still read only the window's range of the grain (with the filtered value first)."""
    db = history.server.db
    if db.dialect != "sqlite":
        pytest.skip("a SQLite planner case: PostgreSQL keeps its statistics itself (autovacuum)")
    counts.catch_up(db, history.account_id)
    with db.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS sqlite_stat1")
    sent: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "sum(activity_counts.entries)" in statement:
            sent.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", capture)
    try:
        summarize(db, history.account_id, parse_filter(**filters), None, datetime.now(UTC))
    finally:
        event.remove(db.engine, "before_cursor_execute", capture)
    assert sent, "the summary read no counts"
    with db.engine.connect() as conn:
        for statement, parameters in sent:
            plan = " ".join(
                row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
            )
            assert "start>?" in plan, f"{plan}\n{statement}"  # a range of the window, not the whole grain
            filtered = [f"{column}=?" for column in ("action", "actor_id") if f"{column} IN" in statement]
            assert not filtered or any(term in plan for term in filtered), plan  # the filter leads the range


def test_every_bucket_of_the_window_is_listed_with_its_zeros(history: History) -> None:
    since, until = history.start, history.start + timedelta(hours=6)
    body = history.client.get(f"{V1}/histogram", params={"since": iso(since), "until": iso(until)}).json()
    assert body["bucket"] == "hour"  # chosen from a six-hour window
    assert [b["start"] for b in body["buckets"]] == [iso(since + timedelta(hours=i)) for i in range(6)]
    assert body == expected_buckets(history.entries(since=iso(since), until=iso(until)), "hour", since, until)
    assert [b["count"] for b in body["buckets"]][1:] == [
        8,
        0,
        0,
        0,
        3,
    ]  # alice's and zapier's, none, the rule's
    assert body["buckets"][2]["by_actor_type"] == {"session": 0, "api_key": 0, "rule": 0, "system": 0}
    # without since: from the account's first entry; a long window gets days
    whole = history.client.get(
        f"{V1}/histogram", params={"until": iso(history.start + timedelta(days=30))}
    ).json()
    assert whole["bucket"] == "day" and len(whole["buckets"]) == 30
    assert sum(b["count"] for b in whole["buckets"]) == len(history.entries())


def test_facets_are_largest_first_and_ties_go_by_value(history: History) -> None:
    body = history.client.get(f"{V1}/facets", params={"action": "list.create"}).json()
    # lists made: alice 5, zapier 5, bob 5, the rule 1: the three equal ones by id
    assert [(a["id"], a["count"]) for a in body["actor"]] == [
        (ZAPIER.id, 5),
        (ALICE.id, 5),
        (BOB.id, 5),
        (RULE.id, 1),
    ]
    assert body["action"] == [{"value": "list.create", "count": 16}]
    assert body["resource_type"] == [{"value": "list", "count": 16}]
    assert {a["id"]: a["name"] for a in body["actor"]}[ZAPIER.id] == "Zapier"


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"bucket": "month"}, "bucket"),
        ({"bucket": ""}, "bucket"),
        ({"bucket": "hour", "since": "2020-01-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "bucket"),
        ({"since": "0001-01-01T00:00:00Z", "until": "9999-01-01T00:00:00Z"}, "since"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "since"),
        ({"actor_type": "robot"}, "actor_type"),
        ({"buckets": "day"}, "buckets"),
        ({"since": "9999-12-31T00:00:00Z", "bucket": "day"}, "until"),
    ],
)
def test_bad_parameters_are_refused_by_name(history: History, params: dict[str, str], name: str) -> None:
    response = history.client.get(f"{V1}/histogram", params=params)
    assert 400 <= response.status_code < 500, response.text
    assert name in response.text
    if "bucket" not in params:
        facets = history.client.get(f"{V1}/facets", params=params)
        assert 400 <= facets.status_code < 500 and name in facets.text, facets.text


def test_facets_refuse_a_bucket(history: History) -> None:
    response = history.client.get(f"{V1}/facets", params={"bucket": "day"})
    assert 400 <= response.status_code < 500 and "bucket" in response.text


def test_an_account_counts_only_its_own_entries(server: Server) -> None:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = today - timedelta(days=330 - uuid.uuid4().int % 300)
    first, second = make_history(server, start), make_history(server, start)
    counts.catch_up(server.db, first.account_id)
    for h in (first, second):
        body = h.client.get(f"{V1}/histogram", params={"until": iso(start + timedelta(days=4))}).json()
        assert sum(b["count"] for b in body["buckets"]) == len(h.entries())
        facets = h.client.get(f"{V1}/facets").json()
        assert sum(a["count"] for a in facets["resource_type"]) == len(h.entries())
    # the other account's actor id as a filter: nothing of it shows
    other = second.client.get(f"{V1}/facets", params={"actor": first.entries()[0]["actor"]["id"]}).json()
    assert all(a["id"] == first.entries()[0]["actor"]["id"] for a in other["actor"])
    assert sum(a["count"] for a in other["actor"]) == len(
        second.entries(actor=first.entries()[0]["actor"]["id"])
    )


def test_purged_entries_drop_out_of_the_counts(server: Server) -> None:
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=500)
    h = make_history(server, start)
    young = datetime.now(UTC) - timedelta(days=3)
    for i in range(4):
        lists.create_list(h.uow(BOB, young + timedelta(minutes=i)), f"Young {i}")
    counts.catch_up(server.db, h.account_id)
    before = len(h.entries())
    result = retention.purge_account(server.db, h.account_id)
    assert result.entry_seq is not None
    kept = h.entries()
    assert len(kept) < before
    # before the follower has counted the purge's own entry: the counts no longer hold what went
    with server.db.reader() as session:
        assert counts.mismatch(session, h.account_id) is None
    whole = h.client.get(f"{V1}/histogram", params={"bucket": "week"}).json()
    assert sum(b["count"] for b in whole["buckets"]) == len(kept)
    counts.catch_up(server.db, h.account_id)
    whole = h.client.get(f"{V1}/histogram", params={"bucket": "week"}).json()
    assert sum(b["count"] for b in whole["buckets"]) == len(kept)
    facets = h.client.get(f"{V1}/facets").json()
    assert sum(a["count"] for a in facets["resource_type"]) == len(kept)
    with server.db.reader() as session:
        assert counts.mismatch(session, h.account_id) is None


def _counted_window(server: Server, account_id: str) -> counts.Plan:
    now = datetime.now(UTC)
    with server.db.for_account(account_id).read_connection() as reads:
        return counts.plan(reads, account_id, parse_filter(), now - timedelta(days=600), now)


@pytest.mark.parametrize("hold", ["none", "before", "during"])
@pytest.mark.parametrize("batch", [4, 16])
def test_the_counts_stay_exact_through_every_piece_of_a_purge_with_the_follower_between(
    server: Server, hold: str, batch: int
) -> None:
    """Each piece takes what it removes out of the counts, so after every piece — the follower counting in
    between, or not; whole hours and days gone, or some of a piece's entries kept by a legal hold placed
    before the run or while it goes — the counts match the log and readers keep reading them (nothing is
    counted again)."""
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=500)
    h = make_history(server, start)

    def place_hold(since: timedelta, until: timedelta) -> None:
        uow = h.uow(ALICE, start)
        retention.create_hold(uow, reason="audit", since=start + since, until=start + until)

    if hold == "before":  # the first afternoon stays: the plan goes around it
        place_hold(timedelta(hours=1, minutes=20), timedelta(hours=6))
    counts.catch_up(server.db, h.account_id)
    pieces: list[int] = []

    def follow(n: int) -> None:  # the worker's follower, between two pieces (every other one)
        pieces.append(n)
        with server.db.reader() as session:
            assert counts.mismatch(session, h.account_id) is None
        assert _counted_window(server, h.account_id).covered is not None
        if len(pieces) % 2:
            counts.catch_up(server.db, h.account_id)
        if hold == "during" and len(pieces) == 1:  # one hour of the second day, inside later pieces
            place_hold(timedelta(hours=27), timedelta(hours=27, minutes=59))

    result = retention.purge_account(server.db, h.account_id, batch=batch, progress=follow)
    assert result.entry_seq is not None and len(pieces) > 2
    assert (len(result.plan.ranges) > 1) == (hold == "before")
    assert (sum(pieces) < result.plan.count) == (hold == "during")
    kept = h.entries()
    whole = h.client.get(f"{V1}/histogram", params={"bucket": "week"}).json()
    assert sum(b["count"] for b in whole["buckets"]) == len(kept)
    counts.catch_up(server.db, h.account_id)
    with server.db.reader() as session:
        assert counts.mismatch(session, h.account_id) is None
        assert verify_account(session, h.account_id).ok
        rows = session.execute(
            text("SELECT count(*) FROM activity_counts WHERE account_id = :a AND entries <= 0"),
            {"a": h.account_id},
        ).scalar_one()
    assert rows == 0  # a key whose entries all went leaves no row behind


def test_a_piece_that_removed_other_entries_than_counted_has_the_counts_rebuilt(server: Server) -> None:
    """Had the database kept entries back from a piece (a hold placed in between), the counts cannot know
    which: the cursor is dropped, readers count the log, and the follower counts it again."""
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=500)
    h = make_history(server, start)
    counts.catch_up(server.db, h.account_id)
    with server.db.for_account(h.account_id).writer() as session:
        leaving = counts.leaving(session, h.account_id, 1, 3, [])
        assert leaving.total == 3
        leaving.gone(session, 2)
        session.commit()
    assert _counted_window(server, h.account_id).covered is None  # readers count the log
    counts.catch_up(server.db, h.account_id)
    assert _counted_window(server, h.account_id).covered is not None
    with server.db.reader() as session:
        assert counts.mismatch(session, h.account_id) is None


def test_verify_finds_counts_that_disagree_with_the_log(history: History) -> None:
    db = history.server.db
    counts.catch_up(db, history.account_id)
    with db.engine.begin() as conn:
        conn.execute(
            text("UPDATE activity_counts SET entries = entries + 1 WHERE account_id = :a AND unit = 'hour'"),
            {"a": history.account_id},
        )
    with db.reader() as session:
        verdict = verify_account(session, history.account_id)
    assert not verdict.ok and "derived activity counts" in (verdict.reason or "")
    rebuilt = run_cli("counts", "--account", history.account_id, "--rebuild", db_url=db.url)
    assert rebuilt.returncode == 0, rebuilt.stderr
    with db.reader() as session:
        assert verify_account(session, history.account_id).ok


@pytest.mark.parametrize("tamper", ["an hour of the last day lost", "an hour counted that has no entries"])
def test_verify_names_the_first_hour_whose_counts_are_wrong(history: History, tamper: str) -> None:
    """The counts are compared a day at a time: a wrong hour on a later day, or a day the entries never
    reach, is found all the same, and named."""
    db = history.server.db
    counts.catch_up(db, history.account_id)
    table = cast(Table, ActivityCount.__table__)
    c = table.c
    hour = history.start + timedelta(hours=70)  # the last day's only busy hour
    with db.engine.begin() as conn:
        if tamper.startswith("an hour of the last day"):
            conn.execute(delete(table).where(c.account_id == history.account_id, c.start == hour))
        else:
            hour = history.start + timedelta(days=9, hours=3)
            conn.execute(
                insert(table).values(
                    account_id=history.account_id, grain="type", unit="hour", start=hour,
                    actor_type="system", actor_id="", action="", resource_type="", entries=1,
                )
            )  # fmt: skip
    with db.reader() as session:
        verdict = verify_account(session, history.account_id)
    assert not verdict.ok and f"hour from {hour.isoformat().replace('+00:00', 'Z')}" in (verdict.reason or "")
    if tamper.startswith("an hour of the last day"):
        first_then = [e["seq"] for e in history.entries() if e["occurred_at"] >= hour.strftime("%Y-%m-%dT%H")]
        assert verdict.first_bad_seq == min(first_then)


def test_openapi_documents_both_endpoints() -> None:
    schema = create_app().openapi()
    for path, model in ((f"{V1}/histogram", "HistogramOut"), (f"{V1}/facets", "FacetsOut")):
        operation = schema["paths"][path]["get"]
        names = {p["name"] for p in operation["parameters"]}
        assert {"actor", "action", "since", "until", "q"} <= names
        assert ("bucket" in names) == path.endswith("histogram")
        ref = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
        assert ref.endswith(model)
    assert set(schema["components"]["schemas"]["BucketOut"]["properties"]) == {
        "start",
        "count",
        "by_actor_type",
    }
    assert set(schema["components"]["schemas"]["ActorFacetOut"]["properties"]) == {"id", "name", "count"}
