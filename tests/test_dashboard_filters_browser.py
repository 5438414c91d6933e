"""The Activity page's filter form and "what did this key do" in Chromium (issue 14, items 6 and 12).

A value the log refuses keeps the form as typed with the reason beside its field; labels read as the
messages do (Since, Until); inputs are bounded and an over-long address is a 414 that says so; Export CSV
exports the form as it stands. A key's page leads to what it did and to what the scheduler did for it, and
an entry names whom it was done for and links the schedule behind a send.
"""

from __future__ import annotations

import csv
import io
import socket
from contextlib import closing
from pathlib import Path

import httpx
from playwright.sync_api import Browser

from conftest import Server, make_tenant
from test_dashboard_browser import browser, sign_in  # noqa: F401  (the module's Chromium fixture)
from test_on_behalf_of import scheduled_send


def test_a_refused_filter_keeps_the_form_and_says_why_beside_the_field(
    browser: Browser,  # noqa: F811
    server: Server,
) -> None:
    tenant = make_tenant(server, name="Typos")
    with tenant.key_client() as api:
        api.post("/api/v1/lists", json={"name": "Seen"})
    context = browser.new_context()
    page = context.new_page()
    page.goto(server.url + "/activity")
    sign_in(page, tenant)
    page.wait_for_url("**/activity")
    assert page.locator("label[for=f-since]").inner_text() == "Since"
    assert page.locator("label[for=f-until]").inner_text() == "Until"
    page.select_option("#f-action", "list.create")
    page.fill("#f-ip", "203.0.113.999")
    page.fill("#f-q", "Seen")
    with page.expect_response(lambda r: "/activity?" in r.url) as answer:
        page.click("text=Apply filters")
    assert answer.value.status == 422
    assert page.locator("#f-ip").input_value() == "203.0.113.999"
    assert page.locator("#f-q").input_value() == "Seen"
    assert page.locator("#f-action").input_value() == "list.create"
    assert page.locator("#f-ip").get_attribute("aria-invalid") == "true"
    beside = page.locator("#f-ip-error")
    assert "not an IP address or CIDR block" in beside.inner_text()
    assert page.locator("#f-ip").get_attribute("aria-describedby") == "f-ip-error"
    assert page.locator("#log-rows").count() == 0
    # Fixed in place, the same form applies.
    page.fill("#f-ip", "")
    page.click("text=Apply filters")
    page.wait_for_url("**/activity?*")
    assert page.locator("#log-rows .summary a").all_inner_texts() == ['Created list "Seen"']
    # since after until: the message beside Since names since and until, as the labels do.
    page.goto(server.url + "/activity?since=2030-01-02T00:00:00Z&until=2030-01-01T00:00:00Z")
    assert page.locator("#f-since-error").inner_text() == "since: must not be after until"
    context.close()


def test_inputs_are_bounded_and_an_over_long_address_is_a_clear_414(
    browser: Browser,  # noqa: F811
    server: Server,
) -> None:
    tenant = make_tenant(server, name="Long")
    context = browser.new_context()
    page = context.new_page()
    page.goto(server.url + "/activity")
    sign_in(page, tenant)
    page.wait_for_url("**/activity")
    page.fill("#f-q", "x" * 100_000)
    assert len(page.locator("#f-q").input_value()) == int(
        page.locator("#f-q").get_attribute("maxlength") or 0
    )
    with page.expect_response(lambda r: "/activity?" in r.url) as answer:
        page.click("text=Apply filters")
    assert answer.value.status == 200
    context.close()
    # 100,000 characters, sent as a browser would send a hand-edited address (longer than httpx allows)
    for path in ("/activity", "/api/v1/activity"):
        status, body = raw_get(server, f"{path}?q={'x' * 100_000}")
        assert status == 414, (path, status, body[:200])
        assert "too long" in body and "Invalid HTTP request" not in body


def raw_get(server: Server, target: str) -> tuple[int, str]:
    url = httpx.URL(server.url)
    with socket.create_connection((url.host, url.port), timeout=30) as conn:
        conn.sendall(f"GET {target} HTTP/1.1\r\nHost: {url.host}\r\nConnection: close\r\n\r\n".encode())
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body.decode("utf-8", "replace")


def test_export_csv_exports_the_form_as_it_stands(
    browser: Browser,  # noqa: F811
    server: Server,
    tmp_path: Path,
) -> None:
    tenant = make_tenant(server, name="Exporter")
    with tenant.key_client() as api:
        for name in ("One", "Two"):
            made = api.post("/api/v1/lists", json={"name": name}).json()
            api.patch(f"/api/v1/lists/{made['id']}", json={"name": name + " renamed"})
    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    page.goto(server.url + "/activity")
    sign_in(page, tenant)
    page.wait_for_url("**/activity")
    page.select_option("#f-action", "list.update")  # chosen, not applied
    with page.expect_download() as download_info:
        page.click("[data-export]")
    saved = tmp_path / "slice.csv"
    download_info.value.save_as(saved)
    rows = list(csv.DictReader(io.StringIO(saved.read_text(encoding="utf-8"))))
    assert [r["action"] for r in rows] == ["list.update", "list.update"]
    # The page stays as it was, and the form still applies what it shows.
    assert page.locator("#f-action").input_value() == "list.update"
    page.click("text=Apply filters")
    page.wait_for_url("**/activity?action=list.update")
    assert len(page.locator("#log-rows tr").all()) == 2
    context.close()
    client = tenant.session_client()  # without script: the empty fields and window go too
    with closing(client):
        sent = client.get("/activity/export", params={"actor": "", "action": "list.update", "window": "24h"})
        assert sent.status_code == 303
        target = httpx.URL(sent.headers["location"])
        assert target.path == "/activity/export" and "actor" not in target.params
        followed = client.get(sent.headers["location"])
        assert followed.status_code == 303 and followed.headers["location"].startswith(
            "/api/v1/activity/export?"
        )
        assert "since=" in followed.headers["location"] and "window" not in followed.headers["location"]


def test_a_keys_page_leads_to_what_it_did_and_what_was_done_for_it(
    browser: Browser,  # noqa: F811
    server: Server,
) -> None:
    tenant = make_tenant(server, name="Behalf")
    with tenant.key_client() as api:
        _, schedule_seq, send_seq = scheduled_send(server.db, tenant, api)
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{server.url}/api-keys/{tenant.key_id}")
    sign_in(page, tenant)
    page.wait_for_url(f"**/api-keys/{tenant.key_id}")
    page.click("text=Activity by this key")
    page.wait_for_url(f"**/activity?actor={tenant.key_id}")
    assert schedule_seq in [
        int(s) for s in page.locator("#log-rows tr").evaluate_all("r => r.map(x => x.dataset.seq)")
    ]
    page.goto(f"{server.url}/api-keys/{tenant.key_id}")
    page.click("text=Done on this key's behalf")
    page.wait_for_url("**/activity?on_behalf_of=*")
    row = page.locator(f"#log-rows tr[data-seq='{send_seq}']")
    assert row.locator(".actor-name").inner_text() == "activitylog scheduler"
    behalf = row.locator(".behalf a")
    assert behalf.inner_text() == "Test key" and behalf.get_attribute("href") == f"/api-keys/{tenant.key_id}"
    assert page.locator("#f-on-behalf-of").input_value() == f"api_key:{tenant.key_id}"
    row.locator(".summary a").click()
    page.wait_for_url(f"**/activity/{send_seq}?on_behalf_of=*")  # the entry's page keeps the filter
    who = page.locator("[data-behalf]")
    assert who.locator("a.actor-name").inner_text() == "Test key"
    page.click("[data-scheduled-in]")
    page.wait_for_url(f"**/activity/{schedule_seq}")
    assert "broadcast.schedule" in page.locator(".facts").first.inner_text()
    page.goto(f"{server.url}/users/{tenant.owner_id}")
    page.click("text=Activity by this user")
    page.wait_for_url(f"**/activity?actor={tenant.owner_id}")
    context.close()
