"""The account pages as the lifecycle and the log see them: only the actions a broadcast's status allows,
with the reason for the rest; other resources by name, linked; one time format with its zone named."""

from __future__ import annotations

import json
import re

from sqlalchemy import select

from activitylog.db.base import connect
from activitylog.db.models import ActivityEntry, ApiKey, User
from activitylog.services import broadcasts
from activitylog.web.dashboard.catalog import KINDS
from conftest import Tenant
from test_broadcast_lifecycle import _sent_broadcast
from test_dashboard import signed_in
from test_demo import demo, fresh_url  # noqa: F401  (a fixture)


def test_the_dashboard_offers_what_the_lifecycle_allows_and_no_more() -> None:
    kind = KINDS["broadcasts"]
    assert {a.name for a in kind.actions} == set(broadcasts.USER_ACTIONS) - {"update", "delete"}
    assert kind.offer is broadcasts.offer
    assert all(a.when(None) for a in kind.actions)  # no status list of its own


def test_the_dashboard_archives_a_sent_broadcast_and_explains(tenant: Tenant) -> None:
    with tenant.key_client() as api:
        list_id, bid = _sent_broadcast(tenant, api)
    client, token = signed_in(tenant)
    html = client.get(f"/broadcasts/{bid}").text
    assert "Save changes" not in html and "Delete broadcast" not in html and "Send now" not in html
    assert f'action="/broadcasts/{bid}/actions/archive"' in html
    assert "A sent broadcast cannot be deleted: its delivery records" in html
    assert f'<a href="/lists/{list_id}">Customers</a>' in html  # the audience by name, linked

    # Deleting anyway (a stale page) answers with the reason, not "still in use".
    stale = client.post(f"/broadcasts/{bid}/delete", data={"csrf_token": token})
    assert stale.status_code == 409 and "archive it instead" in stale.text

    archived = client.post(f"/broadcasts/{bid}/actions/archive", data={"csrf_token": token})
    assert archived.status_code == 303
    html = client.get(f"/broadcasts/{bid}").text
    assert "archived" in html and 'action="/broadcasts/' + bid + "/actions/" not in html
    assert "released when archived" in html
    deleted = client.post(f"/lists/{list_id}/delete", data={"csrf_token": token})
    assert deleted.status_code == 303 and deleted.headers["location"] == "/lists"


def test_times_are_one_format_with_the_zone_named_before_any_script(tenant: Tenant) -> None:
    with tenant.key_client() as api:
        list_id = api.post("/api/v1/lists", json={"name": "Customers"}).json()["id"]
        body = {"name": "Later", "subject": "Hi", "from_email": "news@example.com", "list_id": list_id}
        bid = api.post("/api/v1/broadcasts", json=body).json()["id"]
        api.post(f"/api/v1/broadcasts/{bid}/schedule", json={"send_at": "2099-01-02T08:30:00Z"})
    client, _ = signed_in(tenant)
    listing = client.get("/broadcasts").text
    assert (
        '<time datetime="2099-01-02T08:30:00.000000Z" title="2099-01-02T08:30:00.000000Z (UTC)" data-local>'
        "2099-01-02 08:30:00 UTC</time>"
    ) in listing
    assert "08:30 UTC" not in listing.replace("08:30:00 UTC", "")  # no second format
    assert f'<a href="/lists/{list_id}">Customers</a>' in listing
    activity = client.get("/activity").text
    assert re.search(r"data-local>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC</time>", activity)


def test_a_segments_list_is_named_and_linked(tenant: Tenant) -> None:
    with tenant.key_client() as api:
        list_id = api.post("/api/v1/lists", json={"name": "Leads"}).json()["id"]
        api.post("/api/v1/segments", json={"name": "Engaged", "list_id": list_id, "conditions": []})
    client, _ = signed_in(tenant)
    assert f'<a href="/lists/{list_id}">Leads</a>' in client.get("/segments").text


def test_rules_and_keys_of_one_name_are_told_apart_in_the_actor_menu(tenant: Tenant) -> None:
    with tenant.key_client() as api:
        rule = {
            "name": "Test key",
            "condition": {"event": "complaint"},
            "action": {"type": "suppress_address"},
        }
        rule_id = api.post("/api/v1/reputation-rules", json=rule).json()["id"]
    client, _ = signed_in(tenant)
    html = client.get("/activity").text
    assert f'<option value="{tenant.key_id}">API key: Test key ({tenant.key_id})</option>' in html
    assert f'<option value="{rule_id}">Rule: Test key ({rule_id})</option>' in html


def test_a_row_says_what_changed_beside_its_summary(tenant: Tenant) -> None:
    with tenant.key_client() as api:
        _, bid = _sent_broadcast(tenant, api)
    client, _ = signed_in(tenant)
    html = client.get("/activity", params={"resource_id": bid}).text
    finished = re.search(
        r'Updated broadcast &#34;Spring picks&#34;</a> <span class="changed">([^<]*)</span>', html
    )
    assert finished is not None, html
    assert finished.group(1).startswith("status → sent · delivered → 2 · failed → 0 · +")


def test_seeded_keys_and_users_show_the_last_use_their_entries_record(fresh_url: str) -> None:  # noqa: F811
    result = demo(fresh_url, "--entries", "300")
    assert result.returncode == 0, result.stderr[-3000:]
    account_id = json.loads(result.stdout.strip().splitlines()[-1])["account_id"]
    db = connect(fresh_url).for_account(account_id)
    try:
        with db.reader() as session:
            checked = 0
            for key in session.scalars(select(ApiKey).where(ApiKey.account_id == account_id)):
                last = session.execute(
                    select(ActivityEntry.occurred_at, ActivityEntry.ip)
                    .where(ActivityEntry.account_id == account_id, ActivityEntry.actor_id == key.id)
                    .order_by(ActivityEntry.seq.desc())
                    .limit(1)
                ).first()
                assert (key.last_used_at, key.last_used_ip) == (tuple(last) if last else (None, None)), (
                    key.name
                )
                checked += last is not None
            signed_in_users = session.scalars(select(User).where(User.last_login_at.is_not(None))).all()
    finally:
        db.dispose()
    assert checked >= 2 and signed_in_users
