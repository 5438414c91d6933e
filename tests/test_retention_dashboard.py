"""The dashboard's Retention page: owners and admins only, the retention and legal holds changed through the
same services as the API (logged with the session as actor), the purge history, and an erasure that needs
the address typed twice and leaves it on no page."""

from __future__ import annotations

import html
import json
import re
import secrets
import shutil
import uuid
from contextlib import closing
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Dialog

from activitylog.services import retention
from conftest import PASSWORD, Server, Tenant, make_tenant
from test_dashboard import browser_client, entries, signed_in
from test_dashboard_browser import CHROMIUM, browser, screenshot, sign_in  # noqa: F401  (the module's Chromium fixture)
from test_erasure import contact_life
from test_retention import aged_tenant


def _user(tenant: Tenant, role: str) -> str:
    email = f"{role}-{uuid.uuid4().hex[:8]}@example.com"
    with closing(tenant.session_client()) as owner:
        made = owner.post("/api/v1/users", json={"email": email, "password": PASSWORD, "role": role})
        assert made.status_code == 201, made.text
    return email


def test_the_page_is_for_owners_and_admins_and_only_owners_set_the_retention(tenant: Tenant) -> None:
    owner, _ = signed_in(tenant)
    page = owner.get("/retention")
    assert page.status_code == 200 and 'href="/retention"' in page.text
    assert 'name="log_retention_days"' in page.text and "data-retention-days>400<" in page.text
    history = re.search(r'href="(/activity\?action=[^"]+)">History<', page.text)
    assert history and owner.get(html.unescape(history.group(1))).status_code == 200
    admin, admin_token = signed_in(tenant, _user(tenant, "admin"))
    page = admin.get("/retention")
    assert page.status_code == 200 and 'name="log_retention_days"' not in page.text
    assert "Only the account's owner changes the retention" in page.text
    refused = admin.post("/retention", data={"log_retention_days": "500", "csrf_token": admin_token})
    assert refused.status_code == 403 and "text/html" in refused.headers["content-type"]
    member, member_token = signed_in(tenant, _user(tenant, "member"))
    assert member.get("/retention").status_code == 403
    assert 'href="/retention"' not in member.get("/lists").text
    for path, data in (
        ("/retention/holds", {"reason": "mine"}),
        ("/retention/erasures", {"email": "a@b.example", "confirm": "a@b.example"}),
    ):
        assert member.post(path, data={**data, "csrf_token": member_token}).status_code == 403, path
    assert not entries(tenant, action="legal_hold.create,contact.erase,account.update")
    assert owner.post("/retention", data={"log_retention_days": "500"}).status_code == 403  # no CSRF token
    assert owner.get("/retention", params={"saved": "bogus"}).status_code == 422


def test_retention_holds_and_the_purge_history_from_the_page(server: Server) -> None:
    aged = aged_tenant(server)
    tenant = aged.tenant
    client, token = signed_in(tenant)
    for bad, said in (
        ("300", "at least 365"),
        ("abc", "whole number"),
        ("36501", "at most 36500"),
        ("9" * 5000, "whole number"),
        ("\u0664\u0660\u0660", "whole number"),
    ):
        response = client.post("/retention", data={"log_retention_days": bad, "csrf_token": token})
        assert response.status_code == 422 and said in response.text, response.text
        assert f'value="{bad}"' in response.text  # the form shows what was typed, beside the problem
    assert not entries(tenant, action="account.update")
    saved = client.post("/retention", data={"log_retention_days": "450", "csrf_token": token})
    assert saved.status_code == 303 and saved.headers["location"] == "/retention?saved=retention"
    assert "Retention saved." in client.get(saved.headers["location"]).text
    (update,) = entries(tenant, action="account.update")
    assert update["changes"] == {"log_retention_days": {"from": 400, "to": 450}}
    assert update["actor"]["type"] == "session"

    backwards = {"reason": "audit", "since": "2026-03-02T00:00", "until": "2026-03-01T00:00", "tz": "UTC"}
    response = client.post("/retention/holds", data={**backwards, "csrf_token": token})
    assert response.status_code == 422 and "until" in response.text and 'value="audit"' in response.text
    late = {"reason": "audit", "since": "9999-12-31T23:59", "tz": "America/New_York", "csrf_token": token}
    response = client.post("/retention/holds", data=late)  # past year 9999 once in UTC
    assert response.status_code == 422 and "years 1-9999" in response.text, response.text
    blank = client.post("/retention/holds", data={"reason": "  ", "csrf_token": token})
    assert blank.status_code == 422 and "reason" in blank.text
    held = {"reason": "Case 42 <b>", "since": "2026-03-01T09:30", "tz": "Europe/Paris", "csrf_token": token}
    assert client.post("/retention/holds", data=held).status_code == 303
    (placed,) = [e for e in entries(tenant, action="legal_hold.create") if e["actor"]["type"] == "session"]
    assert placed["changes"]["since"]["to"] == "2026-03-01T08:30:00.000000Z"  # Paris time, as UTC
    hold_id = placed["resource"]["id"]
    page = client.get("/retention").text
    assert f'data-hold="{hold_id}"' in page and "Case 42 &lt;b&gt;" in page
    stranger, stranger_token = signed_in(make_tenant(server))
    foreign = stranger.post(f"/retention/holds/{hold_id}/release", data={"csrf_token": stranger_token})
    assert foreign.status_code == 404 and f'data-hold="{hold_id}"' not in stranger.get("/retention").text
    released = client.post(f"/retention/holds/{hold_id}/release", data={"csrf_token": token})
    assert released.status_code == 303 and released.headers["location"] == "/retention?saved=released"
    again = client.post(f"/retention/holds/{hold_id}/release", data={"csrf_token": token})
    assert again.status_code == 409 and "already released" in again.text
    assert entries(tenant, action="legal_hold.release")[0]["resource"]["id"] == hold_id

    assert "Nothing has been purged yet." in client.get("/retention").text
    run = retention.purge_account(server.db, tenant.account_id)
    assert run.plan.count > 0 and run.entry_seq is not None
    page = client.get("/retention").text
    assert "Nothing has been purged yet." not in page and f'data-purge="{run.entry_seq}"' in page
    row = page.split(f'data-purge="{run.entry_seq}"')[1].split("</tr>")[0]
    lo, hi = run.plan.ranges[0]
    assert f">{run.plan.count:,}<" in row and f"{lo}\N{EN DASH}{hi}" in row and "450 days" in row


def test_an_erasure_needs_the_address_twice_and_leaves_it_on_no_page(tenant: Tenant) -> None:
    address = f"erase-{secrets.token_hex(6)}@subscriber.example"
    with tenant.key_client() as api:
        ids = contact_life(api, address, "Ada", "Lovelace")
    client, token = signed_in(tenant)

    def erase(email: str, confirm: str) -> httpx.Response:
        form = {"email": email, "confirm": confirm, "csrf_token": token}
        return client.post("/retention/erasures", data=form)

    mismatch = erase(address, "other@subscriber.example")
    assert mismatch.status_code == 422 and "type the same address again" in mismatch.text
    assert address not in mismatch.text  # a refused erasure does not show the address back
    assert erase("not an address", "not an address").status_code == 422
    nobody = f"nobody-{secrets.token_hex(4)}@x.example"
    assert erase(nobody, nobody).status_code == 404
    with tenant.key_client() as api:
        hold = api.post("/api/v1/legal-holds", json={"reason": "litigation"}).json()
        refused = erase(address, address.upper())
        assert refused.status_code == 409 and hold["id"] in refused.text
        assert api.get(f"/api/v1/contacts/{ids['contact']}").status_code == 200  # nothing erased
        assert api.post(f"/api/v1/legal-holds/{hold['id']}/release").status_code == 200
    done = erase(address, f" {address.upper()} ")  # the addresses compare as the tables hold them
    assert done.status_code == 303, done.text
    seq = int(done.headers["location"].split("erased=")[1])
    page = client.get(done.headers["location"]).text
    (entry,) = entries(tenant, action="contact.erase")
    assert entry["seq"] == seq and entry["actor"]["type"] == "session"
    assert f'data-erased="{seq}"' in page and entry["resource"]["id"] in page
    assert f'data-erasure="{seq}"' in page and address not in page
    with tenant.key_client() as api:
        assert api.get(f"/api/v1/contacts/{ids['contact']}").status_code == 404
        log: list[dict[str, Any]] = api.get("/api/v1/activity", params={"limit": 1000}).json()["data"]
    assert address not in json.dumps(log) and "Lovelace" not in json.dumps(log)
    assert client.get("/retention", params={"erased": "1"}).status_code == 404  # seq 1 is no erasure
    assert erase(address, address).status_code == 404  # nothing is left


@pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="Debian's chromium is not installed")
def test_a_person_places_and_releases_a_hold_and_erases_a_subscriber(
    browser: Browser,  # noqa: F811
    tenant: Tenant,
) -> None:
    address = f"gone-{secrets.token_hex(6)}@subscriber.example"
    with tenant.key_client() as api:
        contact_life(api, address, "Grace", "Hopper")
    dialogs: list[str] = []

    def accept(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.accept()

    page = browser.new_page()
    page.on("dialog", accept)
    page.goto(tenant.server.url + "/sign-in")
    sign_in(page, tenant)
    page.click("nav a[href='/retention']")
    page.wait_for_url("**/retention")
    page.fill("#hold-reason", "Regulator inquiry")
    page.fill("#hold-since", "2026-01-01T00:00")
    page.click("section[data-section=holds] button.primary")
    assert page.locator("[role=status]").inner_text().startswith("Legal hold placed")
    row = page.locator("tr[data-hold]", has_text="Regulator inquiry")
    assert row.locator(".badge").inner_text() == "active"
    row.locator("button", has_text="Release").click()
    page.wait_for_url("**/retention?saved=released")
    assert row.locator(".badge").inner_text() == "released"
    page.fill("#erase-email", address)
    page.fill("#erase-confirm", address)
    page.click("section[data-section=erasure] button.danger")
    page.wait_for_selector("[data-erased]")
    assert "entries scrubbed" in page.locator("[data-erased]").inner_text()
    assert address not in page.content()
    screenshot(page, "retention.png", tenant.server.db.dialect)
    page.close()
    assert [d.split("?")[0] for d in dialogs] == [
        "Release this hold",
        "Erase this subscriber's personal data from the account and its log",
    ]
    assert not browser_client(tenant.server).get("/retention").is_success  # a redirect to sign in
