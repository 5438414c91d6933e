"""The dashboard in a real browser (Debian's Chromium driven by Playwright) against a real server.

One story per engine: sign in, edit a sending domain, send a broadcast and suppress an address through the
pages; then answer "who changed this" on the Activity page with a combined filter, open the diff, export the
slice, and share the URL. Set ``ACTIVITYLOG_SCREENSHOTS_DIR`` (``make screenshots``) to keep the pictures
shown in the README.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from activitylog.db.models import Broadcast
from activitylog.services import dispatcher
from conftest import PASSWORD, Server, Tenant, make_tenant

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
XSS_NAME = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'

pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None, reason="Debian's chromium is not installed (.ci/run installs it)"
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


def sign_in(page: Page, tenant: Tenant) -> None:
    page.fill("#email", tenant.owner_email)
    page.fill("#password", PASSWORD)
    page.click("main button[type=submit]")


def shown_seqs(page: Page) -> list[int]:
    return [int(s) for s in page.locator("#log-rows tr").evaluate_all("rows => rows.map(r => r.dataset.seq)")]


def screenshot(page: Page, name: str, engine: str) -> None:
    target = os.environ.get("ACTIVITYLOG_SCREENSHOTS_DIR")
    if target and engine == "sqlite":
        page.screenshot(path=str(Path(target) / name), full_page=True)


def test_who_changed_this_in_the_browser(browser: Browser, server: Server, tmp_path: Path) -> None:
    tenant = make_tenant(server, name="Outfitters")
    engine = server.db.dialect
    api = tenant.key_client()
    listing = api.post("/api/v1/lists", json={"name": "Customers"}).json()
    api.post(f"/api/v1/lists/{listing['id']}/contacts", json={"email": "ada@example.com"})
    spring = api.post(
        "/api/v1/broadcasts",
        json={
            "name": "Spring picks",
            "subject": "Hi",
            "from_email": "news@example.com",
            "list_id": listing["id"],
        },
    ).json()
    api.post(
        "/api/v1/broadcasts",
        json={"name": XSS_NAME, "subject": "x", "from_email": "news@example.com", "list_id": listing["id"]},
    )
    by_key = api.post("/api/v1/sending-domains", json={"domain": "keyed.example.com"}).json()
    api.patch(f"/api/v1/sending-domains/{by_key['id']}", json={"return_path": "bounce.keyed.example.com"})

    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(server.url + "/activity")
    assert "/sign-in" in page.url
    page.fill("#email", tenant.owner_email)
    page.fill("#password", "not the password")
    page.click("main button[type=submit]")
    assert page.locator("[role=alert]").inner_text() == "Wrong email or password."
    sign_in(page, tenant)
    page.wait_for_url("**/activity")

    # Edit a sending domain through the pages.
    page.goto(server.url + "/sending-domains")
    page.fill("#new-domain", "mail.outfitters.example")
    page.click("text=Create sending domain")
    page.wait_for_url("**/sending-domains/dom_*")
    domain_id = urlsplit(page.url).path.rsplit("/", 1)[1]
    page.fill("#edit-return_path", "bounce.outfitters.example")
    page.click("text=Save changes")
    assert page.locator("[role=status]").inner_text() == "Saved."

    # Send a broadcast, suppress an address.
    page.goto(f"{server.url}/broadcasts/{spring['id']}")
    page.click("text=Send now")
    assert "sending" in page.locator(".facts").inner_text()
    page.goto(server.url + "/suppressions")
    page.fill("#new-email", "complainer@example.com")
    page.fill("#new-reason", "asked by phone")
    page.click("text=Create suppressed address")
    page.wait_for_url("**/suppressions/complainer*")

    # Filter by actor + action + window: exactly the two domain changes made in the browser.
    page.goto(server.url + "/activity")
    page.select_option("#f-actor", tenant.owner_id)
    page.select_option("#f-action", "sending_domain.*")
    page.select_option("#f-window", "24h")
    page.click("text=Apply filters")
    page.wait_for_url("**/activity?*")
    query = parse_qs(urlsplit(page.url).query)
    assert query == {"actor": [tenant.owner_id], "action": ["sending_domain.*"], "window": ["24h"]}
    rows = page.locator("#log-rows tr")
    assert rows.count() == 2
    assert (
        rows.nth(0).locator(".summary a").inner_text() == 'Updated sending domain "mail.outfitters.example"'
    )
    assert (
        rows.nth(1).locator(".summary a").inner_text() == 'Created sending domain "mail.outfitters.example"'
    )
    assert rows.nth(0).locator(".summary .changed").inner_text() == "return_path → bounce.outfitters.example"
    assert rows.nth(0).locator(".badge").inner_text() == "User"
    assert rows.nth(0).locator(".ip").inner_text() == "127.0.0.1"
    title = rows.nth(0).locator("time").get_attribute("title")
    assert title is not None and title.endswith("Z (UTC)")
    seqs = shown_seqs(page)
    shared_url = page.url
    screenshot(page, "activity-filtered.png", engine)

    # Export exactly that slice.
    with page.expect_download() as download_info:
        page.click("[data-export]")
    download = download_info.value
    assert download.suggested_filename.endswith(".csv")
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    exported = list(csv.DictReader(io.StringIO(saved.read_text(encoding="utf-8"))))
    assert sorted(int(r["seq"]) for r in exported) == sorted(seqs)
    assert {r["resource_id"] for r in exported} == {domain_id}
    assert all(r["actor_id"] == tenant.owner_id for r in exported)

    # Open the diff.
    rows.nth(0).locator(".summary a").click()
    page.wait_for_url(f"**/activity/{seqs[0]}?*")  # the entry's page keeps the filter
    diff = page.locator("table.diff tbody tr", has_text="return_path")
    assert diff.locator(".before").inner_text() == "(empty)"
    assert diff.locator(".after").inner_text() == "bounce.outfitters.example"
    assert len(page.locator("[data-hash]").inner_text()) == 64
    screenshot(page, "entry-diff.png", engine)

    # The shared URL shows the same view in a fresh browser, after signing in.
    fresh = browser.new_context(viewport={"width": 1280, "height": 900})
    other = fresh.new_page()
    other.goto(shared_url)
    sign_in(other, tenant)
    other.wait_for_url("**/activity?*")
    assert shown_seqs(other) == seqs
    fresh.close()

    # An API-key mutation shows the key's name; a <script> in a name is only text.
    page.goto(server.url + "/activity?actor_type=api_key&action=broadcast.create")
    names = page.locator("#log-rows .actor-name").all_inner_texts()
    assert names and set(names) == {"Test key"}
    assert page.locator("#log-rows .summary", has_text="<script>").count() == 1
    assert page.evaluate("window.__pwned") is None
    page.goto(server.url + "/broadcasts")
    assert page.locator("table.resources", has_text="<script>").count() == 1
    assert page.evaluate("window.__pwned") is None
    context.close()


def test_load_more_and_phone_width(browser: Browser, server: Server) -> None:
    tenant = make_tenant(server, name="Paged")
    api = tenant.key_client()
    for i in range(55):
        api.post("/api/v1/lists", json={"name": f"List {i:02d}"})
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    page.goto(server.url + "/activity?action=list.create")
    sign_in(page, tenant)
    page.wait_for_url("**/activity?*")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    assert len(shown_seqs(page)) == 50
    page.click("[data-load-more]")
    # Keyboard users land on the first appended entry.
    page.locator("#log-rows tr").nth(54).wait_for()
    assert page.evaluate("document.activeElement.textContent") == 'Created list "List 04"'
    seqs = shown_seqs(page)
    assert len(seqs) == len(set(seqs)) == 55 and seqs == sorted(seqs, reverse=True)
    assert page.locator("[data-load-more]").count() == 0
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page scrolls sideways by {overflow}px at phone width"
    context.close()


def test_custom_range_is_read_in_the_viewers_time_zone(browser: Browser, server: Server) -> None:
    tenant = make_tenant(server, name="Zoned")
    with tenant.key_client() as api:
        api.post("/api/v1/lists", json={"name": "Inside the range"})
    context = browser.new_context(timezone_id="America/New_York", locale="en-US")
    page = context.new_page()
    page.goto(server.url + "/activity")
    sign_in(page, tenant)
    page.wait_for_url("**/activity")
    page.select_option("#f-window", "custom")
    assert page.locator("#f-since").is_visible()
    # 2000-01-15 07:00 in New York is 12:00 UTC (EST, UTC-5).
    page.fill("#f-since", "2000-01-15T07:00")
    page.fill("#f-q", "Inside")
    page.click("text=Apply filters")
    page.wait_for_url("**/activity?*")
    query = parse_qs(urlsplit(page.url).query)
    assert query == {"since": ["2000-01-15T12:00:00Z"], "q": ["Inside"]}
    assert page.locator("#log-rows .summary a").all_inner_texts() == ['Created list "Inside the range"']
    assert page.locator("#f-since").input_value() == "2000-01-15T07:00"  # shown back in local time
    page.fill("#f-since", "2999-01-01T00:00")
    page.click("text=Apply filters")
    page.wait_for_url("**/activity?*2999*")
    assert page.locator(".empty h2").inner_text() == "No entries match these filters"
    context.close()


class Quiet:
    def send(self, message: EmailMessage) -> None: ...

    def close(self) -> None: ...


ZONED = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (EST|EDT|GMT-5|GMT-4)$")


def test_screens_on_a_phone_in_new_york(browser: Browser, server: Server) -> None:
    """Times in the viewer's zone, named; the audience by name; the filters folded; a sent broadcast offers
    only what its lifecycle allows; the diff does not break words."""
    tenant = make_tenant(server, name="Phone")
    engine = server.db.dialect
    api = tenant.key_client()
    listing = api.post("/api/v1/lists", json={"name": "Customers"}).json()
    api.post(f"/api/v1/lists/{listing['id']}/contacts", json={"email": "ada@example.com"})
    body = {
        "name": "Weekly digest",
        "subject": "Hi",
        "from_email": "news@example.com",
        "list_id": listing["id"],
    }
    later = api.post("/api/v1/broadcasts", json=body).json()["id"]
    api.post(f"/api/v1/broadcasts/{later}/schedule", json={"send_at": "2099-01-02T08:30:00Z"})
    api.patch(
        f"/api/v1/broadcasts/{later}", json={"subject": "Everything that happened this week, in one email"}
    )
    sent = api.post("/api/v1/broadcasts", json={**body, "name": "Spring picks"}).json()["id"]
    api.post(f"/api/v1/broadcasts/{sent}/send")
    db = server.db.for_account(tenant.account_id)
    with db.reader() as session:
        row = session.get(Broadcast, sent)
    assert row is not None
    dispatcher.dispatch(db, row, Quiet(), datetime.now(UTC))

    context = browser.new_context(
        viewport={"width": 390, "height": 844}, timezone_id="America/New_York", locale="en-US"
    )
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(server.url + "/broadcasts")
    sign_in(page, tenant)
    page.wait_for_url("**/broadcasts")
    scheduled = page.locator("tr", has_text="Weekly digest").locator("time")
    assert scheduled.inner_text() == "2099-01-02 03:30:00 EST"  # 08:30 UTC, in New York
    assert scheduled.get_attribute("title") == "2099-01-02T08:30:00.000000Z (UTC)"
    audience = page.locator("tr", has_text="Weekly digest").locator("a", has_text="Customers")
    assert audience.get_attribute("href") == f"/lists/{listing['id']}"

    # The activity page: the filters fold behind a button, so the first entry is on the first screen.
    page.goto(server.url + "/activity")
    toggle = page.locator("button.filters-toggle")
    assert toggle.inner_text() == "Filters" and toggle.get_attribute("aria-expanded") == "false"
    assert not page.locator("[data-filters]").is_visible()
    first = page.locator("#log-rows tr").first.bounding_box()
    assert first is not None and first["y"] < 844
    assert ZONED.match(page.locator("#log-rows time").first.inner_text())
    changed = page.locator("#log-rows tr", has_text="Updated broadcast").first.locator(".changed")
    assert changed.inner_text().startswith("status → sent · delivered → 1")
    screenshot(page, "activity-phone.png", engine)
    toggle.click()
    assert page.locator("[data-filters]").is_visible() and toggle.get_attribute("aria-expanded") == "true"
    page.goto(server.url + "/activity?action=broadcast.update")
    assert page.locator("button.filters-toggle").inner_text() == "Filters (1 in use)"

    # The diff, one field after another: words stay whole.
    page.locator("#log-rows tr", has_text="Everything that happened").first.locator(".summary a").click()
    page.wait_for_url("**/activity/*")
    after = page.locator("table.diff tr", has_text="subject").locator("ins")
    assert after.evaluate("el => getComputedStyle(el).overflowWrap") == "break-word"
    broken = after.evaluate(
        """el => { const r = document.createRange(); const t = el.firstChild; const tops = [];
        for (let i = 0; i < t.length; i++) { r.setStart(t, i); r.setEnd(t, i + 1);
          tops.push(r.getBoundingClientRect().top); }
        const words = []; let start = 0;
        for (let i = 0; i <= t.length; i++) { if (i === t.length || t.data[i] === " ") {
          if (new Set(tops.slice(start, i)).size > 1) words.push(t.data.slice(start, i)); start = i + 1; } }
        return words; }"""
    )
    assert broken == [], f"words broken across lines: {broken}"
    assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
    screenshot(page, "entry-phone.png", engine)

    # A sent broadcast offers Archive only, says why, and then its list can go.
    page.goto(f"{server.url}/broadcasts/{sent}")
    buttons = page.locator("main button").all_inner_texts()
    assert buttons == ["Archive"], buttons
    assert "cannot be deleted: its delivery records" in page.locator(".lifecycle-note").all_inner_texts()[1]
    page.click("main button:text-is('Archive')")
    page.wait_for_url(f"**/broadcasts/{sent}?saved=action:archive")
    assert "archived" in page.locator(".facts").inner_text()
    assert page.locator("main button").count() == 0
    page.goto(f"{server.url}/broadcasts/{later}")
    page.click("main button:text-is('Delete broadcast')")
    page.wait_for_url("**/broadcasts")
    page.goto(f"{server.url}/lists/{listing['id']}")
    page.click("main button:text-is('Delete list')")
    page.wait_for_url("**/lists")
    assert page.locator("[role=alert]").count() == 0
    context.close()
