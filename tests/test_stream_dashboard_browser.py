"""The Streams page in a real browser (Debian's Chromium driven by Playwright) against a real server and a
real webhook receiver, on both engines: create (a bad filter named, then the secret shown once), test,
pause, resume, replay, the state badge, lag and last error of a failing stream, its deliveries, delete —
every change an entry by the signed-in user, every form refused without its CSRF token."""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from activitylog.config import Settings
from activitylog.db.base import Database
from activitylog.relay.relay import StreamRelay
from conftest import PASSWORD, Server, Tenant, make_tenant, serving
from stream_receiver import receiving

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
XSS_NAME = '<img src=x onerror="window.__pwned = 1">SIEM'

pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None, reason="Debian's chromium is not installed (.ci/run installs it)"
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def open_server(db: Database) -> Iterator[Server]:
    with serving(db, stream_allow_private=True) as running:
        yield running


def _deliver(db: Database, until: object, timeout: float = 30.0) -> None:
    relay = StreamRelay(
        db, Settings(database_url=db.url, stream_allow_private=True, stream_timeout_seconds=2.0)
    )
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            relay.run_once()
            relay.drain()
            if until():  # type: ignore[operator]
                return
            time.sleep(0.05)
        raise AssertionError("not delivered in time")
    finally:
        relay.close()


def _create(page: Page, name: str, url: str, filter_text: str = "") -> None:
    page.fill("#new-name", name)
    page.select_option("#new-type", "webhook")
    page.fill("#new-url", url)
    page.fill("#new-filter", filter_text)
    page.click("text=Create stream")


def _entries(tenant: Tenant) -> list[dict[str, object]]:
    with tenant.key_client() as client:
        data = client.get("/api/v1/activity", params={"resource_type": "stream", "limit": 100}).json()["data"]
    return list(reversed(data))


def test_streams_in_the_browser(browser: Browser, open_server: Server, db: Database) -> None:
    tenant = make_tenant(open_server, name="Streamers")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(open_server.url + "/streams")
    page.fill("#email", tenant.owner_email)
    page.fill("#password", PASSWORD)
    page.click("main button[type=submit]")
    page.wait_for_url("**/streams")
    assert page.locator("nav a[aria-current=page]").inner_text() == "Streams"
    assert page.locator(".empty").inner_text() == "No streams yet."

    with receiving() as good, receiving() as bad:
        bad.answer = lambda _r: 503
        # A bad filter is named, and the form keeps what was typed.
        _create(page, XSS_NAME, good.url, "action=nope.nope")
        assert "filter.action" in page.locator("[role=alert]").inner_text()
        assert page.input_value("#new-name") == XSS_NAME
        _create(page, XSS_NAME, good.url, "")
        secret = page.input_value("#secret")
        assert secret.startswith("whsec_")
        page.click("text=I have stored it")
        page.wait_for_url("**/streams/stm_*")
        stream_id = page.url.rsplit("/", 1)[1]
        assert page.locator("h1").inner_text().startswith(XSS_NAME)  # shown as text, not run
        assert page.evaluate("window.__pwned") is None
        assert page.locator("h1 [data-state]").inner_text() == "Active"
        assert secret not in page.content()  # shown once, never again

        page.click("text=Send a test event")
        assert "delivered in" in page.locator("[data-test-result=ok]").inner_text()
        assert good.received[-1].json["type"] == "activity.test"
        assert "activity.test" not in str(_entries(tenant))  # a test changes nothing: not an entry
        assert f"{tenant.account_id}:test:" in page.locator("table.deliveries").inner_text()

        page.click("text=Pause")
        assert page.locator("[role=status]").inner_text() == "Paused."
        assert page.locator("h1 [data-state]").inner_text() == "Paused"
        page.click("text=Resume")
        assert page.locator("h1 [data-state]").inner_text() == "Active"
        page.fill("#replay-from", "0")
        page.click("main button:text('Replay')")
        assert "from_seq" in page.locator("[role=alert]").inner_text()
        page.fill("#replay-from", "1")
        page.click("main button:text('Replay')")
        assert page.locator("[role=status]").inner_text().startswith("Replaying")

        # A second stream whose destination fails: the list shows its state, lag and last error.
        page.goto(open_server.url + "/streams")
        _create(page, "Broken SIEM", bad.url, "action=stream.*")
        page.click("text=I have stored it")
        broken_id = page.url.rsplit("/", 1)[1]
        _deliver(db, lambda: len(good.entries()) >= 3 and len(bad.received) >= 1)
        page.goto(open_server.url + "/streams")
        good_row, bad_row = (
            page.locator(f"tr[data-stream={stream_id}]"),
            page.locator(f"tr[data-stream={broken_id}]"),
        )
        assert good_row.locator("[data-state]").inner_text() == "Active"
        assert bad_row.locator("[data-state]").inner_text() == "Failing"
        assert "HTTP 503" in bad_row.inner_text() and "retry" in bad_row.inner_text()
        assert re.search(r"\d+ s|caught up|min", bad_row.locator("td.num").nth(1).inner_text())
        screenshot = os.environ.get("ACTIVITYLOG_SCREENSHOTS_DIR")
        if screenshot and db.dialect == "sqlite":
            page.screenshot(path=str(Path(screenshot) / "streams.png"), full_page=True)
        page.click("text=Broken SIEM")
        assert "HTTP 503" in page.locator("table.deliveries").inner_text()
        assert page.locator("table.deliveries .badge-failed").count() >= 1
        page.goto(f"{open_server.url}/streams/{stream_id}")
        assert page.locator("table.deliveries .badge-ok").count() >= 3
        assert int(page.locator("[data-delivered-seq]").inner_text()) >= 1

        page.click("text=Delete stream")
        page.wait_for_url("**/streams")
        assert page.locator(f"tr[data-stream={stream_id}]").count() == 0

    actions = [(e["action"], e["actor"]["id"]) for e in _entries(tenant)]  # type: ignore[index]
    mine = tenant.owner_id
    assert actions == [
        ("stream.create", mine), ("stream.pause", mine), ("stream.resume", mine), ("stream.replay", mine),
        ("stream.create", mine), ("stream.delete", mine),
    ]  # fmt: skip

    # Every form needs the session's CSRF token.
    client = tenant.session_client()
    try:
        for path in ("/streams", f"/streams/{broken_id}/pause", f"/streams/{broken_id}/delete"):
            refused = client.post(path, data={"name": "x", "type": "webhook", "url": good.url})
            assert refused.status_code == 403, (path, refused.status_code)
    finally:
        client.close()
    assert httpx.get(f"{open_server.url}/streams", follow_redirects=False).status_code == 303
    context.close()
