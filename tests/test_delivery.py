"""Automated actors: the scheduler, the dispatcher and reputation rules, against a real SMTP server on
loopback (aiosmtpd) and a real clock. The log must name who acted, and on whose behalf."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import EmailMessage
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from activitylog.config import Settings
from activitylog.db.base import Database
from activitylog.db.models import Broadcast, Delivery
from activitylog.services import dispatcher, feedback, scheduler
from activitylog.services.mailer import SmtpMailer
from activitylog.workers import BroadcastWorker
from conftest import Tenant, free_port


@dataclass
class Inbox:
    """What the SMTP server received: (recipient, broadcast id) per message."""

    messages: list[tuple[str, str]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = message_from_bytes(envelope.content)
        for rcpt in envelope.rcpt_tos:
            self.messages.append((rcpt, parsed["X-Activitylog-Broadcast"]))
        return "250 OK"

    def to(self, broadcast_id: str) -> list[str]:
        return sorted(r for r, b in self.messages if b == broadcast_id)


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, str]]:
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, f"smtp://127.0.0.1:{port}"
    controller.stop()


def _audience(client: httpx.Client, n: int, suppress: int = 0) -> str:
    list_id = client.post("/api/v1/lists", json={"name": "Customers"}).json()["id"]
    rows = [{"email": f"reader{i}@example.com"} for i in range(n)]
    assert client.post(f"/api/v1/lists/{list_id}/contacts/import", json=rows).status_code == 200
    for i in range(suppress):
        client.post("/api/v1/suppressions", json={"email": f"reader{i}@example.com"})
    return list_id  # type: ignore[no-any-return]


def _broadcast(client: httpx.Client, list_id: str, name: str = "Spring picks") -> str:
    body = {
        "name": name,
        "subject": "Hello",
        "from_email": "news@example.com",
        "list_id": list_id,
        "text": "Hi",
    }
    return client.post("/api/v1/broadcasts", json=body).json()["id"]  # type: ignore[no-any-return]


def _entries(client: httpx.Client, broadcast_id: str) -> list[dict[str, Any]]:
    data = client.get("/api/v1/activity", params={"resource_id": broadcast_id, "limit": 100}).json()["data"]
    return list(reversed(data))


def _wait_for(predicate: Any, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_scheduled_send_goes_out_on_time_and_honours_suppressions(
    db: Database, tenant: Tenant, smtp: tuple[Inbox, str]
) -> None:
    inbox, url = smtp
    worker = BroadcastWorker(db, Settings(database_url=db.url, smtp_url=url, worker_interval_seconds=0.2))
    with tenant.key_client() as client:
        list_id = _audience(client, 5, suppress=2)
        contacts = client.get(f"/api/v1/lists/{list_id}/contacts").json()["data"]
        reader4 = next(c["id"] for c in contacts if c["email"] == "reader4@example.com")
        client.patch(f"/api/v1/contacts/{reader4}", json={"status": "unsubscribed"})
        bid = _broadcast(client, list_id)
        send_at = datetime.now(UTC) + timedelta(seconds=1.5)
        assert (
            client.post(
                f"/api/v1/broadcasts/{bid}/schedule", json={"send_at": send_at.isoformat()}
            ).status_code
            == 200
        )
        worker.start()
        try:
            _wait_for(lambda: client.get(f"/api/v1/broadcasts/{bid}").json()["status"] == "sent")
        finally:
            worker.stop()
        final = client.get(f"/api/v1/broadcasts/{bid}").json()
        entries = _entries(client, bid)
    assert inbox.to(bid) == ["reader2@example.com", "reader3@example.com"]  # 0,1 suppressed; 4 unsubscribed
    assert (final["recipients"], final["delivered"], final["failed"], final["suppressed"]) == (2, 2, 0, 2)
    actions = [(e["action"], e["actor"]["type"], e["actor"]["id"]) for e in entries]
    assert actions == [
        ("broadcast.create", "api_key", tenant.key_id),
        ("broadcast.schedule", "api_key", tenant.key_id),
        ("broadcast.send", "system", "scheduler"),
        ("broadcast.update", "system", "dispatcher"),
    ]
    send = entries[2]
    assert send["on_behalf_of"] == f"api_key:{tenant.key_id}"
    started = datetime.fromisoformat(send["occurred_at"])
    assert timedelta(0) <= started - send_at < timedelta(seconds=2), "started within a second or two"
    assert "late_by_seconds" not in send["changes"]
    assert entries[3]["changes"]["status"] == {"from": "sending", "to": "sent"}
    assert entries[3]["changes"]["delivered"] == {"from": None, "to": 2}


def test_a_schedule_missed_while_down_is_sent_late_and_says_so(db: Database, tenant: Tenant) -> None:
    session = tenant.session_client()
    list_id = _audience(session, 1)
    bid = _broadcast(session, list_id)
    send_at = datetime.now(UTC) + timedelta(seconds=1)
    session.post(f"/api/v1/broadcasts/{bid}/schedule", json={"send_at": send_at.isoformat()})
    assert bid not in scheduler.start_due(db, datetime.now(UTC))  # not due yet
    back_up = send_at + timedelta(minutes=30)  # the server was down for half an hour
    assert bid in scheduler.start_due(db, back_up)
    assert bid not in scheduler.start_due(db, back_up)  # never started twice
    send = _entries(session, bid)[-1]
    assert send["action"] == "broadcast.send" and send["on_behalf_of"] == f"session:{tenant.owner_id}"
    assert send["changes"]["late_by_seconds"]["to"] == pytest.approx(1800, abs=1)


def test_rescheduling_from_another_key_is_logged_and_the_send_is_done_for_it(
    db: Database, tenant: Tenant
) -> None:
    """Who scheduled a broadcast decides whom the scheduler sends for, so taking over a schedule is an entry
    even when ``send_at`` stays the same; before, it changed ``scheduled_by`` with no entry, and the send
    then named a key that had never scheduled it."""
    owner = tenant.session_client()
    other = owner.post("/api/v1/api-keys", json={"name": "Takes over"}).json()
    list_id = _audience(owner, 1)
    bid = _broadcast(owner, list_id)
    send_at = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    with tenant.key_client() as first, tenant.key_client(other["key"]) as second:
        assert first.post(f"/api/v1/broadcasts/{bid}/schedule", json={"send_at": send_at}).status_code == 200
        assert second.post(f"/api/v1/broadcasts/{bid}/schedule", json={"send_at": send_at}).status_code == 200
        schedules = [e for e in _entries(first, bid) if e["action"] == "broadcast.schedule"]
        assert [e["actor"]["id"] for e in schedules] == [tenant.key_id, other["id"]]
        assert schedules[0]["changes"]["scheduled_by"] == {"from": None, "to": f"api_key:{tenant.key_id}"}
        assert schedules[1]["changes"] == {
            "scheduled_by": {"from": f"api_key:{tenant.key_id}", "to": f"api_key:{other['id']}"}
        }
        # The same request again changes nothing, so it writes nothing.
        assert second.post(f"/api/v1/broadcasts/{bid}/schedule", json={"send_at": send_at}).status_code == 200
        assert len(_entries(first, bid)) == 3  # create, schedule, schedule
        assert bid in scheduler.start_due(db, datetime.fromisoformat(send_at) + timedelta(seconds=1))
        entries = _entries(first, bid)
    send = entries[-1]
    assert send["action"] == "broadcast.send"
    last_schedule = [e for e in entries if e["action"] == "broadcast.schedule"][-1]
    assert send["on_behalf_of"] == f"{last_schedule['actor']['type']}:{last_schedule['actor']['id']}"


def test_a_segment_broadcast_goes_to_the_contacts_its_conditions_match(
    db: Database, tenant: Tenant, smtp: tuple[Inbox, str]
) -> None:
    """Every condition must hold, on the contact's address, names and status, case-insensitively; the
    suppression list and unsubscribed contacts still leave the audience."""
    inbox, url = smtp
    people = [
        ("ada@example.com", "Ada", "Lovelace"),
        ("ADA.B@Example.org", "ada", "Byron"),
        ("ada.c@example.com", "Ada", None),
        ("grace@example.com", "Grace", "Hopper"),
        ("ada.s@example.com", "Ada", "Suppressed"),
        ("ada.u@example.com", "Ada", "Unsubscribed"),
    ]
    with tenant.key_client() as client:
        list_id = client.post("/api/v1/lists", json={"name": "Customers"}).json()["id"]
        rows = [{"email": e, "first_name": f, "last_name": last} for e, f, last in people]
        assert client.post(f"/api/v1/lists/{list_id}/contacts/import", json=rows).status_code == 200
        contacts = client.get(f"/api/v1/lists/{list_id}/contacts").json()["data"]
        leaving = next(c["id"] for c in contacts if c["email"] == "ada.u@example.com")
        client.patch(f"/api/v1/contacts/{leaving}", json={"status": "unsubscribed"})
        client.post("/api/v1/suppressions", json={"email": "ada.s@example.com"})
        conditions = [
            {"field": "first_name", "op": "equals", "value": "ADA"},
            {"field": "last_name", "op": "not_equals", "value": "byron"},
            {"field": "email", "op": "contains", "value": "@example."},
        ]
        segment = client.post(
            "/api/v1/segments", json={"name": "Adas", "list_id": list_id, "conditions": conditions}
        )
        assert segment.status_code == 201, segment.text
        body = {"name": "Adas only", "subject": "Hi", "from_email": "news@example.com", "text": "Hi"}
        bid = client.post("/api/v1/broadcasts", json={**body, "segment_id": segment.json()["id"]}).json()[
            "id"
        ]
        assert client.post(f"/api/v1/broadcasts/{bid}/send").status_code == 200
        BroadcastWorker(db, Settings(database_url=db.url, smtp_url=url)).run_once()
        final = client.get(f"/api/v1/broadcasts/{bid}").json()
    assert inbox.to(bid) == ["ada.c@example.com", "ada@example.com"]
    assert (final["status"], final["recipients"], final["suppressed"]) == ("sent", 2, 1)


def test_two_workers_never_double_send(db: Database, tenant: Tenant, smtp: tuple[Inbox, str]) -> None:
    inbox, url = smtp
    with tenant.key_client() as client:
        bid = _broadcast(client, _audience(client, 40))
        assert client.post(f"/api/v1/broadcasts/{bid}/send").status_code == 200
    settings = Settings(database_url=db.url, smtp_url=url)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            BroadcastWorker(db, settings).run_once()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    received = inbox.to(bid)
    assert len(received) == 40 and len(set(received)) == 40
    with tenant.key_client() as client:
        assert client.get(f"/api/v1/broadcasts/{bid}").json()["delivered"] == 40
        finished = [e for e in _entries(client, bid) if e["actor"]["id"] == "dispatcher"]
    assert len(finished) == 1


def test_a_resumed_send_claims_only_the_recipients_left(
    db: Database, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A send stopped part way (a pause, a worker restart) resumes with the recipients nobody claimed: it
    does not walk the claimed ones again a batch at a time (a big list took minutes to get going again)."""
    with tenant.key_client() as client:
        bid = _broadcast(client, _audience(client, 4 * dispatcher.BATCH))
        assert client.post(f"/api/v1/broadcasts/{bid}/send").status_code == 200
    with db.reader() as session:
        broadcast = session.get(Broadcast, bid)
    assert broadcast is not None
    stop, delivered = threading.Event(), []

    class Recorded:
        def send(self, message: EmailMessage) -> None:
            delivered.append(message["To"])
            if len(delivered) == dispatcher.BATCH:
                stop.set()  # the worker shutting down: seen before the next batch

        def close(self) -> None: ...

    assert dispatcher.dispatch(db, broadcast, Recorded(), datetime.now(UTC), stop) == dispatcher.BATCH
    claims: list[list[str]] = []
    claim = dispatcher._claim

    def counted(db: Database, broadcast: Broadcast, emails: list[str], now: datetime) -> list[str] | None:
        claims.append(emails)
        return claim(db, broadcast, emails, now)

    monkeypatch.setattr(dispatcher, "_claim", counted)
    assert dispatcher.dispatch(db, broadcast, Recorded(), datetime.now(UTC)) == 3 * dispatcher.BATCH
    assert len(claims) == 3 and not set(delivered[: dispatcher.BATCH]) & {e for c in claims for e in c}
    assert sorted(delivered) == sorted(set(delivered)) and len(delivered) == 4 * dispatcher.BATCH
    with tenant.key_client() as client:
        done = client.get(f"/api/v1/broadcasts/{bid}").json()
    assert (done["status"], done["recipients"], done["delivered"]) == ("sent", 40, 40)


class BouncingMailer(SmtpMailer):
    """Sends for real, and after ``after`` messages the MTA reports a burst of hard bounces."""

    def __init__(self, url: str, after: int, report: Any) -> None:
        super().__init__(url)
        self.after, self.report, self.count = after, report, 0

    def send(self, message: EmailMessage) -> None:
        super().send(message)
        self.count += 1
        if self.count == self.after:
            self.report()


def _rule(client: httpx.Client, name: str, condition: dict[str, Any], action: str) -> str:
    r = client.post(
        "/api/v1/reputation-rules", json={"name": name, "condition": condition, "action": {"type": action}}
    )
    assert r.status_code == 201, r.text
    return r.json()["id"]  # type: ignore[no-any-return]


def test_a_burst_of_bounces_pauses_the_broadcast_with_the_rule_as_actor(
    db: Database, tenant: Tenant, smtp: tuple[Inbox, str]
) -> None:
    inbox, url = smtp
    with tenant.key_client() as client:
        rule_id = _rule(
            client,
            "Pause on bounce spike",
            {"metric": "bounce_rate", "threshold": 0.05, "window_minutes": 60, "min_sends": 10},
            "pause_broadcast",
        )
        bid = _broadcast(client, _audience(client, 40))
        client.post(f"/api/v1/broadcasts/{bid}/send")

        def report() -> None:
            events = [
                {
                    "id": f"evt-{bid}-{i}",
                    "type": "bounce",
                    "bounce_type": "hard",
                    "email": f"reader{i}@example.com",
                    "broadcast_id": bid,
                }
                for i in range(3)
            ]
            r = client.post("/api/v1/delivery-events", json=events)
            assert r.json() == {"accepted": 3, "duplicates": 0, "actions": 1}

        with db.reader() as session:
            broadcast = session.get(Broadcast, bid)
        assert broadcast is not None
        dispatcher.dispatch(db, broadcast, BouncingMailer(url, after=12, report=report), datetime.now(UTC))
        state = client.get(f"/api/v1/broadcasts/{bid}").json()
        pause = _entries(client, bid)[-1]
    assert state["status"] == "paused"
    assert 12 <= len(inbox.to(bid)) < 40  # the pause stopped the rest
    assert pause["action"] == "broadcast.pause"
    assert pause["actor"] == {"type": "rule", "id": rule_id, "name": "Pause on bounce spike"}
    trigger = pause["changes"]["trigger"]["to"]
    # the 12th message is reported on while its batch is still being sent: the batches before it are the
    # settled sends (10), and 3 bounces
    settled = (12 - 1) // dispatcher.BATCH * dispatcher.BATCH
    assert trigger["metric"] == "bounce_rate" and trigger["events"] == 3 and trigger["sends"] == settled
    assert trigger["rate"] == pytest.approx(3 / settled, abs=1e-6)
    assert pause["changes"]["status"] == {"from": "sending", "to": "paused"}


def test_a_complaint_suppresses_the_address_and_a_disabled_rule_does_nothing(tenant: Tenant) -> None:
    with tenant.key_client() as client:
        rule_id = _rule(client, "Suppress complainers", {"event": "complaint"}, "suppress_address")
        event = {"id": "evt-1", "type": "complaint", "email": "Angry@Example.com"}
        posted = client.post("/api/v1/delivery-events", json=[event], headers={"X-Request-ID": "mta-batch-1"})
        assert posted.json() == {"accepted": 1, "duplicates": 0, "actions": 1}
        again = client.post("/api/v1/delivery-events", json=[event]).json()
        assert again == {"accepted": 0, "duplicates": 1, "actions": 0}  # idempotent by id
        suppressed = [s["email"] for s in client.get("/api/v1/suppressions").json()["data"]]
        entry = client.get("/api/v1/activity", params={"actor": rule_id}).json()["data"]

        client.post(f"/api/v1/reputation-rules/{rule_id}/disable")
        other = {"id": "evt-2", "type": "complaint", "email": "calm@example.com"}
        assert client.post("/api/v1/delivery-events", json=[other]).json()["actions"] == 0
        assert "calm@example.com" not in [
            s["email"] for s in client.get("/api/v1/suppressions").json()["data"]
        ]
    assert suppressed == ["angry@example.com"]
    assert len(entry) == 1
    assert entry[0]["action"] == "address.suppress"
    assert entry[0]["actor"] == {"type": "rule", "id": rule_id, "name": "Suppress complainers"}
    assert entry[0]["changes"]["trigger"]["to"]["event_id"] == "evt-1"
    # What set the rule off: the request that posted the event, its id and address.
    assert entry[0]["request_id"] == "mta-batch-1" and entry[0]["ip"] == "127.0.0.1"


def _suppressions(client: httpx.Client) -> dict[str, dict[str, Any]]:
    return {row["email"]: row for row in client.get("/api/v1/suppressions").json()["data"]}


def test_a_rule_named_to_the_limit_still_acts_and_its_reason_fits(tenant: Tenant) -> None:
    """The suppression's reason is derived from the rule's name, which may be as long as the reason column:
    PostgreSQL refused the longer text (a 500) while SQLite stored it. Both now store the same shortened
    reason."""
    name = "R" * 200
    with tenant.key_client() as client:
        _rule(client, name, {"event": "hard_bounce"}, "suppress_address")
        event = {"id": f"evt-long-{uuid.uuid4().hex}", "type": "bounce", "bounce_type": "hard"}
        r = client.post("/api/v1/delivery-events", json=[{**event, "email": "gone@example.com"}])
        assert r.status_code == 200, r.text
        assert r.json() == {"accepted": 1, "duplicates": 0, "actions": 1}
        row = _suppressions(client)["gone@example.com"]
    assert len(row["reason"]) == 200
    assert row["reason"] == ("rule: " + name)[:199] + "…"


def test_events_and_the_actions_they_trigger_commit_together(
    tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An action that fails takes its batch's events with it, so the agent's retry is accepted and acted
    on; before, the events were already stored and the retry counted them as duplicates, the action lost."""
    with tenant.key_client() as client:
        _rule(client, "Suppress hard bounces", {"event": "hard_bounce"}, "suppress_address")
        events = [
            {"id": f"evt-{uuid.uuid4().hex}", "type": "delivered", "email": "fine@example.com"},
            {
                "id": f"evt-{uuid.uuid4().hex}",
                "type": "bounce",
                "bounce_type": "hard",
                "email": "gone@example.com",
            },
        ]

        def failing(*_args: Any) -> int:
            raise RuntimeError("the action failed")

        with monkeypatch.context() as patched, tenant.key_client() as doomed:  # the server runs in-process
            patched.setattr(feedback, "_suppress", failing)
            assert doomed.post("/api/v1/delivery-events", json=events).status_code == 500
        assert _suppressions(client) == {}
        retry = client.post("/api/v1/delivery-events", json=events)
        assert retry.json() == {"accepted": 2, "duplicates": 0, "actions": 1}
        assert list(_suppressions(client)) == ["gone@example.com"]
        assert client.post("/api/v1/delivery-events", json=events).json() == {
            "accepted": 0,
            "duplicates": 2,
            "actions": 0,
        }


def test_delivery_events_are_validated(tenant: Tenant) -> None:
    with tenant.key_client() as client:
        bad = client.post(
            "/api/v1/delivery-events", json=[{"id": "e", "type": "bounce", "email": "a@example.com"}]
        )
        assert bad.status_code == 422 and "bounce_type" in bad.json()["error"]["message"]
        assert client.post("/api/v1/delivery-events", json=[]).status_code == 422
        wrong = client.post(
            "/api/v1/delivery-events", json=[{"id": "e", "type": "opened", "email": "a@example.com"}]
        )
        assert wrong.status_code == 422 and wrong.json()["error"]["field"] == "0.type"


def test_a_complaint_rate_over_threshold_pauses_all_sending(db: Database, tenant: Tenant) -> None:
    with tenant.key_client() as client:
        rule_id = _rule(
            client,
            "Stop everything on complaints",
            {"metric": "complaint_rate", "threshold": 0.001, "window_minutes": 60, "min_sends": 5},
            "pause_sending",
        )
        list_id = _audience(client, 6)
        first, second = _broadcast(client, list_id, "First"), _broadcast(client, list_id, "Second")
        for bid in (first, second):
            client.post(f"/api/v1/broadcasts/{bid}/send")
        with db.reader() as session:
            broadcast = session.get(Broadcast, first)
        assert broadcast is not None

        class Quiet:  # delivers nowhere: only the sends' bookkeeping matters here
            def send(self, message: EmailMessage) -> None: ...

            def close(self) -> None: ...

        dispatcher.dispatch(db, broadcast, Quiet(), datetime.now(UTC))  # first is sent: 6 deliveries
        complaint = {"id": "c-1", "type": "complaint", "email": "reader1@example.com", "broadcast_id": first}
        assert client.post("/api/v1/delivery-events", json=[complaint]).json()["actions"] == 1
        statuses = {bid: client.get(f"/api/v1/broadcasts/{bid}").json()["status"] for bid in (first, second)}
        paused = client.get("/api/v1/activity", params={"actor": rule_id}).json()["data"]
    assert statuses == {first: "sent", second: "paused"}  # every broadcast still sending is paused
    assert [e["resource"]["id"] for e in paused] == [second]
    assert paused[0]["changes"]["trigger"]["to"]["metric"] == "complaint_rate"


def test_a_refused_recipient_is_settled_failed_with_its_error_and_the_rest_sent(
    db: Database, tenant: Tenant
) -> None:
    with tenant.key_client() as client:
        bid = _broadcast(client, _audience(client, 2 * dispatcher.BATCH + 3))
        client.post(f"/api/v1/broadcasts/{bid}/send")
        with db.reader() as session:
            broadcast = session.get(Broadcast, bid)
        assert broadcast is not None

        class Picky:  # refuses two addresses, one in each of the first two batches
            def send(self, message: EmailMessage) -> None:
                if message["To"] in ("reader3@example.com", "reader14@example.com"):
                    raise ValueError(f"mailbox {message['To']} unavailable " + "x" * 600)

            def close(self) -> None: ...

        sent = dispatcher.dispatch(db, broadcast, Picky(), datetime.now(UTC))
        final = client.get(f"/api/v1/broadcasts/{bid}").json()
    with db.for_account(tenant.account_id).reader() as session:
        rows = session.execute(
            select(Delivery.email, Delivery.status, Delivery.error).where(Delivery.broadcast_id == bid)
        ).all()
    failed = {email: error or "" for email, status, error in rows if status == "failed"}
    assert sent == 2 * dispatcher.BATCH + 1
    assert sorted(failed) == ["reader14@example.com", "reader3@example.com"]
    assert all(e.startswith("ValueError: mailbox reader") and len(e) == 500 for e in failed.values())
    assert sorted(status for _, status, _ in rows if status != "failed") == ["sent"] * sent
    assert (final["status"], final["delivered"], final["failed"]) == ("sent", sent, 2)
