"""Saved views, the auditor's downloads and the entry page's steps in Chromium, against the real server
(issue 20, items 5-7): a view is saved, appears, applies its filter when clicked, is renamed and deleted; the
page's downloads for a filtered slice verify with the project's verifier, run as the panel says; an entry
opened from a filter steps to the filter's neighbours; the diff fits a phone's width."""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Browser, Page

from conftest import Server, make_tenant, run_auditor_tool
from test_dashboard_browser import browser, screenshot, shown_seqs, sign_in  # noqa: F401

pytestmark = pytest.mark.skipif(shutil.which("/usr/bin/chromium") is None, reason="Chromium is not installed")


def _query(page: Page) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.url).query)


def test_a_saved_view_round_trips(browser: Browser, server: Server) -> None:  # noqa: F811
    tenant = make_tenant(server, name="Viewers")
    with tenant.key_client() as api:
        for name in ("Customers", "Partners"):
            made = api.post("/api/v1/lists", json={"name": name}).json()
            api.patch(f"/api/v1/lists/{made['id']}", json={"name": name + " (2026)"})
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(server.url + "/activity")
    sign_in(page, tenant)
    page.wait_for_url("**/activity")
    page.select_option("#f-action", "list.update")
    page.click("text=Apply filters")
    page.wait_for_url("**/activity?*")
    page.fill("#save-view-name", "List renames")
    page.click("[data-save-view] button[type=submit]")
    page.wait_for_url("**/activity?action=list.update")
    saved = page.locator("[data-saved-views] .saved-name")
    assert saved.all_inner_texts() == ["List renames"]
    assert saved.get_attribute("aria-current") == "true"
    page.locator("[data-prove] summary").click()
    screenshot(page, "activity-saved-views.png", server.db.dialect)
    # From the whole log, one click applies the view's filter: its URL and its rows.
    page.goto(server.url + "/activity")
    assert len(shown_seqs(page)) > 2
    page.click("text=List renames")
    page.wait_for_url("**/activity?*")
    assert _query(page) == {"action": ["list.update"]}
    assert page.locator("#f-action").input_value() == "list.update"
    assert page.locator("#log-rows .summary a").all_inner_texts() == [
        'Updated list "Partners (2026)"',
        'Updated list "Customers (2026)"',
    ]
    # Rename, then delete.
    page.locator("[data-saved-views] details summary").click()
    rename = page.locator("[data-saved-views] form[action$='/rename']")
    rename.locator("input[name=name]").fill("Renamed lists")
    with page.expect_navigation():
        rename.locator("button[type=submit]").click()
    assert _query(page) == {"action": ["list.update"]}
    assert page.locator("[data-saved-views] .saved-name").all_inner_texts() == ["Renamed lists"]
    page.locator("[data-saved-views] details summary").click()
    with page.expect_navigation():
        page.click("[data-saved-views] button.danger")
    assert urlsplit(page.url).path == "/activity" and not urlsplit(page.url).query
    assert page.locator("[data-saved-views] .saved-name").count() == 0
    with tenant.key_client() as api:
        logged = api.get("/api/v1/activity", params={"resource_type": "saved_view"}).json()["data"]
    assert [e["action"] for e in logged] == ["saved_view.delete", "saved_view.rename", "saved_view.create"]
    context.close()


def test_the_pages_downloads_verify_with_the_verifier(
    browser: Browser,  # noqa: F811
    server: Server,
    tmp_path: Path,
) -> None:
    tenant = make_tenant(server, name="Auditors")
    with tenant.key_client() as api:
        for name in ("North", "South", "East"):
            api.post("/api/v1/lists", json={"name": name})
        api.post("/api/v1/sending-domains", json={"domain": "mail.auditors.example.com"})
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.goto(server.url + "/activity?resource_type=list")
    sign_in(page, tenant)
    page.wait_for_url("**/activity?resource_type=list")
    page.locator("[data-prove] summary").click()
    command = shlex.split(page.locator("[data-verify-command]").inner_text())
    size = page.locator("[data-downloads]").get_attribute("data-tree-size")
    assert page.locator("[data-checkpoint]").inner_text().splitlines()[1] == size
    saved: dict[str, Path] = {}
    for kind in ("csv", "proof.jsonl", "csv.manifest.json", "jsonl"):
        with page.expect_download() as info:
            page.click(f"[data-download='{kind}']")
        download = info.value
        saved[download.suggested_filename] = tmp_path / download.suggested_filename
        download.save_as(saved[download.suggested_filename])
    # The command names exactly the files the page downloads; run it (with the paths they were saved to).
    assert command[:2] == ["python3", "tools/verify_export.py"]
    files = [command[2], command[4], command[6]]
    assert set(files) <= set(saved)
    checked = run_auditor_tool(
        str(saved[files[0]]),
        "--proof", str(saved[files[1]]),
        "--manifest", str(saved[files[2]]),
        "--verifier-key", command[8],
        stdlib_only=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "PROOF OK: all 3 rows" in checked.stdout, checked.stdout
    context.close()


def test_an_entry_steps_within_its_filter_and_its_diff_fits_a_phone(
    browser: Browser,  # noqa: F811
    server: Server,
) -> None:
    tenant = make_tenant(server, name="Phones")
    long_word = "x" * 300
    with tenant.key_client() as api:
        made = api.post("/api/v1/lists", json={"name": "First"}).json()
        api.post("/api/v1/sending-domains", json={"domain": "mail.phones.example.com"})
        api.patch(f"/api/v1/lists/{made['id']}", json={"name": "Second-" + long_word[:150]})
        api.post("/api/v1/lists", json={"name": "Third"})
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    page.goto(server.url + "/activity?resource_type=list")
    sign_in(page, tenant)
    page.wait_for_url("**/activity?resource_type=list")
    seqs = shown_seqs(page)
    assert len(seqs) == 3
    page.locator(f"#log-rows tr[data-seq='{seqs[1]}'] .summary a").click()
    page.wait_for_url(f"**/activity/{seqs[1]}?resource_type=list")
    assert page.locator("h1").inner_text().startswith('Updated list "Second-')
    # The diff at 390px: no horizontal overflow, the long value wrapped.
    assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
    diff_width = page.locator("table.diff").evaluate("t => t.getBoundingClientRect().width")
    assert diff_width <= 390
    screenshot(page, "entry-steps-phone.png", server.db.dialect)
    page.click("[data-step='older-match']")
    page.wait_for_url(f"**/activity/{seqs[2]}?resource_type=list")
    assert page.locator("[data-step='older-match']").count() == 0  # the filter's first entry
    page.click("[data-step='newer-match']")
    page.wait_for_url(f"**/activity/{seqs[1]}?resource_type=list")
    page.click("[data-step='newer-match']")
    page.wait_for_url(f"**/activity/{seqs[0]}?resource_type=list")
    # In the whole log, the next older entry is the sending domain's, outside the filter.
    page.goto(server.url + f"/activity/{seqs[1]}")
    page.click("[data-step='older']")
    page.wait_for_url(f"**/activity/{seqs[1] - 1}")
    assert page.locator("h1").inner_text() == 'Created sending domain "mail.phones.example.com"'
    context.close()
