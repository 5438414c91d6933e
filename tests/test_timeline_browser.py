"""The activity page's timeline and facet counts in Chromium, on both engines: the bars carry the API's
counts for the same filter; clicking a bar narrows the URL and the rows to its hour; dragging across bars
narrows to their range; a facet link adds exactly its filter. ``make screenshots`` keeps the picture."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from playwright.sync_api import Browser, Page

from activitylog.log import counts
from conftest import PASSWORD, Server
from test_dashboard_browser import browser  # noqa: F401  (the module's Chromium fixture)
from test_timeline import V1, ZAPIER, History, iso, make_history
from test_timeline import history as history


def signed_in(browser: Browser, h: History, path: str) -> Page:  # noqa: F811
    page = browser.new_context(viewport={"width": 1280, "height": 720}, timezone_id="Europe/Paris").new_page()
    page.goto(h.server.url + path)
    page.fill("#email", h.owner_email)
    page.fill("#password", PASSWORD)
    page.click("main button[type=submit]")
    page.wait_for_url("**/activity*")
    return page


def query(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))


def bars(page: Page) -> list[dict[str, str]]:
    found: list[dict[str, str]] = page.locator("[data-bucket]").evaluate_all(
        "els => els.map(e => ({since: e.dataset.since, until: e.dataset.until, count: e.dataset.count,"
        " href: e.getAttribute('href'), label: e.getAttribute('aria-label')}))"
    )
    return found


def test_the_timeline_matches_the_api_and_a_bar_narrows_the_window(
    browser: Browser,  # noqa: F811
    history: History,
) -> None:
    h = history
    counts.catch_up(h.server.db, h.account_id)
    since, until = h.start, h.start + timedelta(hours=72)
    window = {"since": iso(since), "until": iso(until)}
    for f in ({}, {"actor_type": "session"}):
        path = "/activity?" + "&".join(f"{k}={v}" for k, v in {**f, **window}.items())
        page = signed_in(browser, h, path)
        api = h.client.get(f"{V1}/histogram", params={**f, **window}).json()
        shown = bars(page)
        assert [(b["since"], int(b["count"])) for b in shown] == [
            (b["start"], b["count"]) for b in api["buckets"]
        ]
        assert page.locator("[data-zone-name]").inner_text().startswith("Europe/Paris")
        page.context.close()
    page = signed_in(browser, h, "/activity?" + "&".join(f"{k}={v}" for k, v in window.items()))
    assert "People" in page.locator(".legend").inner_text()
    if (target := os.environ.get("ACTIVITYLOG_SCREENSHOTS_DIR")) and h.server.db.dialect == "sqlite":
        page.set_viewport_size({"width": 1280, "height": 900})
        page.screenshot(path=str(Path(target) / "activity-timeline.png"))  # the top of the page
    busiest = max(bars(page), key=lambda b: int(b["count"]))
    # a bar's label is in the viewer's zone (Paris), no longer in UTC
    assert "UTC" not in busiest["label"] and f"{int(busiest['count'])} entries" in busiest["label"]
    page.locator(f"[data-bucket][data-since='{busiest['since']}']").click()
    page.wait_for_url("**/activity?*")
    narrowed = query(page.url)
    assert narrowed["since"] == busiest["since"] and narrowed["until"] == busiest["until"]
    rows = page.locator("#log-rows tr").count()
    assert rows == int(busiest["count"]) == len(h.entries(since=narrowed["since"], until=narrowed["until"]))
    # dragging across three bars narrows to their range
    page.goto(h.server.url + "/activity?" + "&".join(f"{k}={v}" for k, v in window.items()))
    shown = bars(page)
    page.locator("[data-timeline]").scroll_into_view_if_needed()
    first = page.locator("[data-bucket]").nth(1).bounding_box()
    third = page.locator("[data-bucket]").nth(3).bounding_box()
    assert first and third
    page.mouse.move(first["x"] + first["width"] / 2, first["y"] + first["height"] / 2)
    page.mouse.down()
    page.mouse.move(third["x"] + third["width"] / 2, third["y"] + third["height"] / 2, steps=5)
    with page.expect_navigation():
        page.mouse.up()
    dragged = query(page.url)
    assert (dragged["since"], dragged["until"]) == (shown[1]["since"], shown[3]["until"])
    page.context.close()


def test_a_facet_link_adds_exactly_its_filter(browser: Browser, history: History) -> None:  # noqa: F811
    h = history
    window = f"since={iso(h.start)}&until={iso(h.start + timedelta(days=4))}"
    page = signed_in(browser, h, "/activity?resource_type=list&" + window)
    before = query(page.url)
    link = page.locator(f"[data-facet=actor][href*='{ZAPIER.id}']")
    assert link.locator(".facet-count").inner_text() == str(
        len(h.entries(resource_type="list", actor=ZAPIER.id))
    )
    link.click()
    page.wait_for_url(f"**actor={ZAPIER.id}*")
    assert query(page.url) == {**before, "actor": ZAPIER.id}
    assert page.locator("#log-rows tr").count() == len(h.entries(resource_type="list", actor=ZAPIER.id))
    assert page.locator("#f-actor").input_value() == ZAPIER.id
    page.locator("[data-facet=action]").first.click()
    page.wait_for_url("**action=*")
    added = query(page.url)
    assert set(added) == {*before, "actor", "action"} and added["action"].startswith("list.")
    page.context.close()


def test_a_filter_matching_nothing_draws_empty_bars_and_says_so(browser: Browser, server: Server) -> None:  # noqa: F811
    h = make_history(server, datetime(2025, 1, 6, tzinfo=UTC))
    page = signed_in(browser, h, "/activity?q=nothing-matches-this")
    assert page.locator("[data-bucket]").count() >= 1
    assert all(int(b["count"]) == 0 for b in bars(page))
    assert page.locator(".facet").first.inner_text().endswith("None in this window.")
    page.context.close()
