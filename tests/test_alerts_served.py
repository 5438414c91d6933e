"""The seed's story end to end, as it is deployed: ``activitylog serve`` (its worker process runs the
detectors) on each engine, a real SMTP server (aiosmtpd) and Debian's Chromium.

A key is used from one network for weeks (the history written with the recorder's clock), falls silent for
45 days, then sends a broadcast from another network over the real API: exactly one ``credential.new_ip``
and one ``credential.dormant`` alert are raised by the worker (polled with a generous deadline, never
timed), the owner gets an email naming the key, the address and the last use with links to the entries,
and the alert is on the dashboard's Alerts page, with the badge, and can be acknowledged there. Also the
alerts API: its filters, paging, acknowledging, the policy's validation and who may do what."""

from __future__ import annotations

import email
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import Message
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from playwright.sync_api import sync_playwright

from activitylog.db.base import Database
from activitylog.log.record import Actor, RequestContext
from activitylog.services import accounts, api_keys, broadcasts, lists, users
from activitylog.services.uow import SYSTEM_CLI, UnitOfWork
from conftest import PASSWORD, free_port
from test_saved_views import csrf_of

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
NOW = datetime.now(UTC).replace(microsecond=0)
DAY = timedelta(days=1)
NEW_NETWORK_IP = "198.51.100.77"


@dataclass
class Inbox:
    messages: list[Message] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"

    def alerts_to(self, address: str) -> list[Message]:
        return [m for m in self.messages if m["X-Activitylog-Alert"] and m["To"] == address]


@dataclass
class Served:
    url: str
    inbox: Inbox


@pytest.fixture(scope="module")
def served(db: Database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """``activitylog serve`` as ``make run`` starts it, mailing through a local SMTP server."""
    inbox = Inbox()
    smtp_port, port = free_port(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "ACTIVITYLOG_DATABASE_URL": db.url,
        "ACTIVITYLOG_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
        "ACTIVITYLOG_TRUSTED_PROXIES": "127.0.0.1",
        "ACTIVITYLOG_PUBLIC_URL": url,
        "ACTIVITYLOG_WORKER_INTERVAL_SECONDS": "0.2",
    }
    log = tmp_path_factory.mktemp("served") / "server.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "activitylog", "serve", "--no-migrate", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, log.read_text()
            try:
                httpx.get(f"{url}/healthz", timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)
        yield Served(url, inbox)
    finally:
        server.terminate()
        server.wait(timeout=60)
        controller.stop()


def until(check: Any, what: str, timeout: float = 60) -> Any:
    """Wait for the worker, with a generous deadline (what is measured is in bench/, not here)."""
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, what
        time.sleep(0.1)
    return found


@dataclass
class Story:
    account_id: str
    owner_email: str
    admin_email: str
    member_email: str
    key_id: str
    key: str
    broadcast_id: str
    last_use: str


def stale_key_history(db: Database) -> Story:
    """Weeks of a key's use from 203.0.113.0/24 (recorder's clock), then 45 days of silence."""
    clock_at = [NOW - 120 * DAY]
    created = accounts.create_account(
        db,
        name="Seed Co",
        owner_email=f"owner-{uuid.uuid4().hex[:10]}@example.com",
        password=PASSWORD,
        actor=SYSTEM_CLI,
        context=RequestContext(),
        clock=lambda: clock_at[0],
    )
    account_id = created.account.id

    def uow(actor: Actor = SYSTEM_CLI, ip: str | None = None) -> UnitOfWork:
        return UnitOfWork(
            db, account_id=account_id, actor=actor, context=RequestContext(ip=ip), clock=lambda: clock_at[0]
        )

    admin = users.create_user(
        uow(), email=f"admin-{uuid.uuid4().hex[:8]}@example.com", password=PASSWORD, role="admin"
    )
    member = users.create_user(
        uow(), email=f"member-{uuid.uuid4().hex[:8]}@example.com", password=PASSWORD, role="member"
    )
    issued = api_keys.create_api_key(uow(), name="Newsletter sync", scopes=["write"])
    key = Actor(type="api_key", id=issued.key.id, name="Newsletter sync")
    target = lists.create_list(uow(key, "203.0.113.10"), "Subscribers")
    lists.import_contacts(
        uow(key, "203.0.113.10"), target.id, [{"email": f"reader-{uuid.uuid4().hex[:6]}@example.com"}]
    )
    for day in range(0, 60, 3):
        clock_at[0] = NOW - (110 - day) * DAY
        lists.update_list(uow(key, f"203.0.113.{10 + day % 5}"), target.id, {"name": f"Subscribers {day}"})
    clock_at[0] = NOW - 45 * DAY
    draft = broadcasts.create_broadcast(
        uow(key, "203.0.113.12"),
        {
            "name": "Spring picks",
            "subject": "Spring",
            "from_email": "news@example.com",
            "list_id": target.id,
            "text": "Hi",
        },
    )
    return Story(
        account_id,
        created.owner.email,
        admin.email,
        member.email,
        issued.key.id,
        issued.secret,
        draft.id,
        clock_at[0].isoformat().replace("+00:00", "Z"),
    )


def sign_in(url: str, address: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=30)
    answer = client.post("/api/v1/session", json={"email": address, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    client.headers["X-CSRF-Token"] = answer.json()["csrf_token"]
    return client


def test_the_stale_key_story_alerts_by_email_and_on_the_dashboard(served: Served, db: Database) -> None:
    story = stale_key_history(db)
    headers = {"Authorization": f"Bearer {story.key}", "X-Forwarded-For": NEW_NETWORK_IP}
    with httpx.Client(base_url=served.url, headers=headers, timeout=30) as key_client:
        sent = key_client.post(f"/api/v1/broadcasts/{story.broadcast_id}/send")
    assert sent.status_code == 200, sent.text

    owner = sign_in(served.url, story.owner_email)

    def raised() -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = owner.get("/api/v1/alerts").json()["data"]
        return data if len(data) >= 2 else []

    found = until(raised, "the worker raised no alerts")
    assert sorted(a["kind"] for a in found) == ["credential.dormant", "credential.new_ip"]
    send_seq = owner.get("/api/v1/activity", params={"action": "broadcast.send"}).json()["data"][0]["seq"]
    for alert in found:
        assert alert["actor"]["id"] == story.key_id and alert["ip"] == NEW_NETWORK_IP
        assert alert["seqs"] == [send_seq]
    dormant = next(a for a in found if a["kind"] == "credential.dormant")
    assert dormant["figures"]["last_use"] == story.last_use
    raise_entries = owner.get("/api/v1/activity", params={"action": "alert.raise"}).json()["data"]
    assert {e["resource"]["id"] for e in raise_entries} == {a["id"] for a in found}
    assert {e["actor"]["id"] for e in raise_entries} == {"alerts"}

    # Email: to the owner and the admin, never the member, naming the key, the address, the last use.
    mails = until(
        lambda: (
            served.inbox.alerts_to(story.owner_email)
            if len(served.inbox.alerts_to(story.owner_email)) >= 2
            else []
        ),
        "no alert email",
    )
    assert len(until(lambda: served.inbox.alerts_to(story.admin_email), "no email to the admin")) >= 1
    assert served.inbox.alerts_to(story.member_email) == []
    body = next(m for m in mails if "dormant" in m["Subject"]).get_payload(decode=True).decode()
    assert "Newsletter sync" in body and story.key_id in body and NEW_NETWORK_IP in body
    assert story.last_use in body and f"{served.url}/activity/{send_seq}" in body

    # The dashboard: the badge on every page, the alert with links to its entries, acknowledged there.
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page()
        page.goto(served.url + "/activity")
        page.fill("#email", story.owner_email)
        page.fill("#password", PASSWORD)
        page.click("main button[type=submit]")
        page.wait_for_url("**/activity*")
        assert page.locator("[data-open-alerts]").inner_text() == "2"
        page.click("nav >> text=Alerts")
        page.wait_for_url("**/alerts")
        rows = page.locator("table.alerts tbody tr")
        assert rows.count() == 2
        page.click("tr[data-kind='credential.dormant'] th a")
        page.wait_for_url("**/alerts/alr_*")
        assert "Newsletter sync" in page.locator("h1").inner_text()
        assert page.locator(f"a[data-seq='{send_seq}']").get_attribute("href") == f"/activity/{send_seq}"
        page.click("text=Acknowledge")
        page.wait_for_url("**/alerts/alr_*")
        assert page.locator("[data-status]").inner_text() == "acknowledged"
        assert page.locator("[data-open-alerts]").inner_text() == "1"
        page.click(f"a[data-seq='{send_seq}']")
        page.wait_for_url(f"**/activity/{send_seq}")
        browser.close()
    acknowledged = owner.get("/api/v1/alerts", params={"status": "acknowledged"}).json()["data"]
    assert [a["kind"] for a in acknowledged] == ["credential.dormant"]
    assert acknowledged[0]["acknowledged_by"] == f"session:{_user_id(owner)}"
    entry = owner.get("/api/v1/activity", params={"action": "alert.acknowledge"}).json()["data"][0]
    assert entry["actor"]["name"] == story.owner_email and entry["resource"]["id"] == acknowledged[0]["id"]
    # The dashboard's form needs its CSRF token.
    refused = httpx.post(
        f"{served.url}/alerts/{found[0]['id']}/acknowledge", cookies=owner.cookies, data={}, timeout=30
    )
    assert refused.status_code == 403


def _user_id(client: httpx.Client) -> str:
    user_id: str = client.get("/api/v1/session").json()["user"]["id"]
    return user_id


def test_the_alerts_api_filters_pages_and_refuses_what_it_must(served: Served, db: Database) -> None:
    story = stale_key_history(db)
    owner = sign_in(served.url, story.owner_email)
    member = sign_in(served.url, story.member_email)
    headers = {"Authorization": f"Bearer {story.key}", "X-Forwarded-For": NEW_NETWORK_IP}
    with httpx.Client(base_url=served.url, headers=headers, timeout=30) as key_client:
        assert key_client.post("/api/v1/lists", json={"name": "From afar"}).status_code == 201
        assert key_client.get("/api/v1/alerts").status_code == 403  # scope write: not an alert reader
        assert key_client.get("/api/v1/alert-policy").status_code == 403
    until(lambda: len(owner.get("/api/v1/alerts").json()["data"]) >= 2, "no alerts")
    first = owner.get("/api/v1/alerts", params={"limit": 1}).json()
    second = owner.get("/api/v1/alerts", params={"limit": 1, "cursor": first["next_cursor"]}).json()
    assert first["data"][0]["id"] > second["data"][0]["id"]  # newest first
    assert second["next_cursor"] is None
    one = owner.get(f"/api/v1/alerts/{first['data'][0]['id']}").json()
    assert one == first["data"][0]  # the same shape in lists and alone
    kind = owner.get("/api/v1/alerts", params={"kind": "credential.new_ip"}).json()["data"]
    assert [a["kind"] for a in kind] == ["credential.new_ip"]
    for params, name in (
        ({"status": "closed"}, "status"),
        ({"kind": "nope"}, "kind"),
        ({"cursor": "x"}, "cursor"),
    ):
        bad = owner.get("/api/v1/alerts", params=params)
        assert bad.status_code == 422 and name in bad.text, bad.text
    assert owner.get("/api/v1/alerts/alr_nope").status_code == 404
    assert member.get("/api/v1/alerts").status_code == 403
    assert member.post(f"/api/v1/alerts/{one['id']}/acknowledge").status_code == 403
    acked = owner.post(f"/api/v1/alerts/{one['id']}/acknowledge")
    assert acked.status_code == 200 and acked.json()["status"] == "acknowledged"
    assert owner.post(f"/api/v1/alerts/{one['id']}/acknowledge").status_code == 409

    policy = owner.get("/api/v1/alert-policy").json()
    assert policy["burst.delete"] == {"enabled": True, "count": 25, "minutes": 10, "ratio": 5.0}
    assert (
        policy["signin.failures"] == {"enabled": True, "count": 10, "minutes": 15} and policy["email"] is True
    )
    for body, name in (
        ({"burst.delete": {"count": 0}}, "burst.delete.count"),
        ({"burst.delete": {"count": "50"}}, "burst.delete.count"),
        ({"burst.delete": {"colour": 1}}, "burst.delete.colour"),
        ({"signin.spray": {"enabled": False}}, "signin.spray"),
        ({"credential.new_ip": {"enabled": "no"}}, "credential.new_ip.enabled"),
        ({"email": 1}, "email"),
        ({"credential.dormant": 3}, "credential.dormant"),
    ):
        bad = owner.patch("/api/v1/alert-policy", json=body)
        assert bad.status_code == 422 and name in bad.json()["error"]["message"], (body, bad.text)
    assert member.patch("/api/v1/alert-policy", json={"email": False}).status_code == 403
    changed = owner.patch("/api/v1/alert-policy", json={"burst.delete": {"count": 50}, "email": False})
    assert changed.status_code == 200, changed.text
    assert changed.json()["burst.delete"]["count"] == 50 and changed.json()["burst.export"]["count"] == 10
    entry = owner.get("/api/v1/activity", params={"action": "account.update"}).json()["data"][0]
    diff = entry["changes"]["alert_policy"]
    assert diff["from"]["burst.delete"]["count"] == 25 and diff["to"]["burst.delete"]["count"] == 50
    before = owner.get("/api/v1/activity", params={"action": "account.update"}).json()["data"]
    assert owner.patch("/api/v1/alert-policy", json={"email": False}).status_code == 200  # no change...
    assert (
        owner.get("/api/v1/activity", params={"action": "account.update"}).json()["data"] == before
    )  # no entry


@pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="Debian's chromium is not installed")
def test_the_alert_policy_page_changes_the_policy(served: Served, db: Database, tmp_path: Path) -> None:
    story = stale_key_history(db)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page()
        page.goto(served.url + "/alert-policy")
        page.fill("#email", story.admin_email)
        page.fill("#password", PASSWORD)
        page.click("main button[type=submit]")
        page.wait_for_url("**/alert-policy")
        page.fill("#burst\\.export-count", "zero")
        page.click("form.card button[type=submit]")
        assert "burst.export.count" in page.locator("[role=alert]").inner_text()
        page.fill("#burst\\.export-count", "20")
        page.uncheck("input[name='credential.new_ip.enabled']")
        page.click("form.card button[type=submit]")
        assert page.locator("[role=status]").inner_text() == "Saved."
        assert page.input_value("#burst\\.export-count") == "20"
        browser.close()
    owner = sign_in(served.url, story.owner_email)
    policy = owner.get("/api/v1/alert-policy").json()
    assert policy["burst.export"]["count"] == 20 and policy["credential.new_ip"]["enabled"] is False
    assert policy["burst.delete"]["count"] == 25


def test_the_alert_policy_form_takes_only_what_a_browser_sends(served: Served, db: Database) -> None:
    """A checkbox is ticked (``on``) or left out; a number is ASCII digits (``int`` and ``float`` would also
    take ``١٢``, ``1_0`` and ``nan``). Anything else is a 422 naming the field, and nothing changes."""
    story = stale_key_history(db)
    owner = sign_in(served.url, story.owner_email)
    token = csrf_of(owner.get("/alert-policy").text)
    before = owner.get("/api/v1/alert-policy").json()
    form = {"csrf_token": token, "email": "on" if before["email"] else ""}
    for kind, settings in before.items():
        for name, value in settings.items() if isinstance(settings, dict) else ():
            form[f"{kind}.{name}"] = ("on" if value else "") if name == "enabled" else str(value)
    for named, bad in (
        ("burst.delete.count", "\u0661\u0662"),
        ("burst.delete.count", "1_0"),
        ("burst.delete.count", "12.5"),
        ("burst.delete.ratio", "nan"),
        ("burst.delete.enabled", "true"),
        ("email", "yes"),
    ):
        answer = owner.post("/alert-policy", data={**form, named: bad})
        assert answer.status_code == 422 and named in answer.text, (named, bad, answer.status_code)
    assert owner.get("/api/v1/alert-policy").json() == before
    saved = owner.post("/alert-policy", data={**form, "burst.delete.count": "30"})
    assert saved.status_code == 303
    assert owner.get("/api/v1/alert-policy").json()["burst.delete"]["count"] == 30
