"""Saved views (a user's named activity filters), the activity page's downloads, and the entry page's steps,
over the real HTTP app on both engines (issue 20, items 5-7).

A view is its user's: created, renamed and deleted through the API and the dashboard's forms, each one entry;
another user of the account, another account and API keys cannot see or touch it; a filter the log refuses is
refused with the field named. The page's downloads are exactly its filter, all as of the tree the page shows,
and verify with the auditor's tool. An entry's page steps through the log and through its filter.
"""

from __future__ import annotations

import html
import json
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx

from activitylog.db.models import Broadcast
from activitylog.services import dispatcher
from conftest import PASSWORD, Server, Tenant, make_tenant, run_auditor_tool
from test_broadcast_lifecycle import Quiet
from test_on_behalf_of import scheduled_send

V1 = "/api/v1/saved-views"


def entries(client: httpx.Client, **params: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = client.get("/api/v1/activity", params={"limit": "50", **params}).json()[
        "data"
    ]
    return data


def second_admin(tenant: Tenant, owner: httpx.Client) -> httpx.Client:
    email = f"admin-{uuid.uuid4().hex[:8]}@example.com"
    made = owner.post("/api/v1/users", json={"email": email, "password": PASSWORD, "role": "admin"})
    assert made.status_code == 201, made.text
    return tenant.session_client(email=email)


def csrf_of(page_html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page_html)
    assert found, "the page has no CSRF field"
    return found.group(1)


def test_saved_view_round_trip_through_the_api_each_change_an_entry(tenant: Tenant) -> None:
    owner = tenant.session_client()
    made = owner.post(
        V1,
        json={
            "name": "Key deletions",
            "filter": {"action": "api_key.*", "actor_type": ["session", "api_key"]},
        },
    )
    assert made.status_code == 201, made.text
    view = made.json()
    assert view["id"].startswith("sv_")
    assert view["filter"] == {"action": "api_key.*", "actor_type": "session,api_key"}
    assert [v["id"] for v in owner.get(V1).json()["data"]] == [view["id"]]
    assert owner.get(f"{V1}/{view['id']}").json()["name"] == "Key deletions"
    renamed = owner.patch(f"{V1}/{view['id']}", json={"name": "Keys"})
    assert renamed.status_code == 200 and renamed.json()["name"] == "Keys"
    assert owner.delete(f"{V1}/{view['id']}").status_code == 204
    assert owner.get(V1).json()["data"] == []
    assert owner.get(f"{V1}/{view['id']}").status_code == 404
    logged = entries(owner, resource_type="saved_view")
    assert [e["action"] for e in logged] == ["saved_view.delete", "saved_view.rename", "saved_view.create"]
    assert {e["resource"]["id"] for e in logged} == {view["id"]}
    assert all(
        e["actor"] == {"type": "session", "id": tenant.owner_id, "name": tenant.owner_email} for e in logged
    )
    delete, rename, create = logged
    assert rename["changes"] == {"name": {"from": "Key deletions", "to": "Keys"}}
    assert rename["summary"] == 'Renamed saved view "Keys"'
    assert create["changes"]["filter"]["to"] == view["filter"]
    assert delete["changes"]["name"] == {"from": "Keys", "to": None}
    # The same name twice is a conflict; a rename to the same name changes nothing and logs nothing.
    again = owner.post(V1, json={"name": "Twice"}).json()
    assert owner.post(V1, json={"name": "Twice"}).status_code == 409
    before = entries(owner)[0]["seq"]
    assert owner.patch(f"{V1}/{again['id']}", json={"name": "Twice"}).status_code == 200
    assert entries(owner)[0]["seq"] == before


def test_bad_filters_and_names_are_refused_naming_the_field(tenant: Tenant) -> None:
    owner = tenant.session_client()
    before = entries(owner)[0]["seq"]
    for body, field in (
        ({"name": "x", "filter": {"action": "broadcast.explode"}}, "filter.action"),
        ({"name": "x", "filter": {"ip": "999.1.1.1"}}, "filter.ip"),
        ({"name": "x", "filter": {"since": "yesterday"}}, "filter.since"),
        (
            {"name": "x", "filter": {"since": "2030-01-02T00:00:00Z", "until": "2030-01-01T00:00:00Z"}},
            "filter.since",
        ),
        ({"name": "x", "filter": {"resource": "dom_1"}}, "filter"),
        ({"name": "x", "filter": {"actor": 7}}, "filter"),
        ({"name": "x", "filter": {"action": " "}}, "filter.action"),
        ({"name": "   ", "filter": {}}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"filter": {}}, "name"),
        ({"name": "x", "extra": 1}, "extra"),
    ):
        answer = owner.post(V1, json=body)
        assert answer.status_code == 422, (body, answer.text)
        assert field in answer.json()["error"]["message"], (body, answer.text)
    assert entries(owner)[0]["seq"] == before  # refused input leaves no entry


def test_only_the_owning_user_sees_or_changes_a_view(server: Server) -> None:
    tenant = make_tenant(server, name="Views")
    owner = tenant.session_client()
    view = owner.post(V1, json={"name": "Mine", "filter": {"resource_type": "list"}}).json()
    colleague = second_admin(tenant, owner)
    outsider = make_tenant(server, name="Elsewhere").session_client()
    for other in (colleague, outsider):
        assert other.get(V1).json()["data"] == []
        assert other.get(f"{V1}/{view['id']}").status_code == 404
        assert other.patch(f"{V1}/{view['id']}", json={"name": "Theirs"}).status_code == 404
        assert other.delete(f"{V1}/{view['id']}").status_code == 404
    # A key is no user: it has no views, and says so.
    with tenant.key_client() as key:
        for method, path, body in (
            ("GET", V1, None),
            ("POST", V1, {"name": "k"}),
            ("DELETE", f"{V1}/{view['id']}", None),
        ):
            answer = key.request(method, path, json=body)
            assert answer.status_code == 403, answer.text
            assert "saved_views:manage" in answer.json()["error"]["message"]
    assert owner.get(f"{V1}/{view['id']}").json()["name"] == "Mine"
    # The colleague's dashboard forms cannot touch it either (404 page), with their own valid CSRF token.
    token = csrf_of(colleague.get("/activity").text)
    for action in ("rename", "delete"):
        answer = colleague.post(
            f"/activity/saved-views/{view['id']}/{action}", data={"csrf_token": token, "name": "Theirs"}
        )
        assert answer.status_code == 404, answer.text
    assert owner.get(f"{V1}/{view['id']}").json()["name"] == "Mine"
    # A member (who may not read the log) has no views.
    email = f"member-{uuid.uuid4().hex[:8]}@example.com"
    owner.post("/api/v1/users", json={"email": email, "password": PASSWORD, "role": "member"})
    assert tenant.session_client(email=email).get(V1).status_code == 403


def test_deleting_a_user_deletes_their_views_in_its_entry(tenant: Tenant) -> None:
    owner = tenant.session_client()
    email = f"leaver-{uuid.uuid4().hex[:8]}@example.com"
    made = owner.post("/api/v1/users", json={"email": email, "password": PASSWORD, "role": "admin"})
    leaver = tenant.session_client(email=email)
    views = [leaver.post(V1, json={"name": n, "filter": {"action": "list.*"}}).json()["id"] for n in "ab"]
    assert owner.delete(f"/api/v1/users/{made.json()['id']}").status_code == 204
    gone = entries(owner, action="user.delete")[0]
    assert sorted(gone["changes"]["saved_view_ids"]["from"]) == sorted(views)
    assert gone["changes"]["saved_view_ids"]["to"] is None
    for view in views:  # each view's history ends with the entry that took it
        assert [e["action"] for e in entries(owner, resource_id=view)] == ["user.delete", "saved_view.create"]


def test_saved_view_round_trip_through_the_dashboard_forms(tenant: Tenant) -> None:
    owner = tenant.session_client()
    owner.headers.pop("X-CSRF-Token")  # a browser's form sends the field, not the header
    with tenant.key_client() as key:
        key.post("/api/v1/lists", json={"name": "Shown"})
    page = owner.get("/activity", params={"action": "list.create"}).text
    assert "Save this view" in page
    saved_filter = html.unescape(re.search(r'name="filter" value="([^"]*)"', page).group(1))  # type: ignore[union-attr]
    assert saved_filter == "action=list.create"
    token = csrf_of(page)
    # Without the CSRF field the form is refused, and nothing is saved.
    assert (
        owner.post("/activity/saved-views", data={"name": "Lists", "filter": saved_filter}).status_code == 403
    )
    made = owner.post(
        "/activity/saved-views", data={"csrf_token": token, "name": "Lists", "filter": saved_filter}
    )
    assert made.status_code == 303 and made.headers["location"] == "/activity?action=list.create"
    listed = owner.get("/activity").text
    view_id = re.search(r'data-saved-view="(sv_[^"]+)"', listed).group(1)  # type: ignore[union-attr]
    assert 'href="/activity?action=list.create"' in listed
    # The applied view is marked as the current one.
    assert 'aria-current="true">Lists</a>' in owner.get("/activity?action=list.create").text
    bad = owner.post(
        "/activity/saved-views", data={"csrf_token": token, "name": "Bad", "filter": "action=nope"}
    )
    assert bad.status_code == 422 and "filter.action" in bad.text
    renamed = owner.post(
        f"/activity/saved-views/{view_id}/rename", data={"csrf_token": token, "name": "New lists"}
    )
    assert renamed.status_code == 303
    assert ">New lists</a>" in owner.get("/activity").text
    assert (
        owner.post(f"/activity/saved-views/{view_id}/delete", data={"csrf_token": token}).status_code == 303
    )
    assert view_id not in owner.get("/activity").text
    logged = [
        (e["action"], e["actor"]["id"]) for e in entries(tenant.key_client(), resource_type="saved_view")
    ]
    assert logged == [
        (a, tenant.owner_id) for a in ("saved_view.delete", "saved_view.rename", "saved_view.create")
    ]


def _links(page: str) -> dict[str, str]:
    return {
        kind: html.unescape(href)
        for href, kind in re.findall(r'<a href="([^"]+)" download="[^"]+" data-download="([^"]+)"', page)
    }


def test_the_pages_downloads_are_the_filter_as_of_one_signed_tree_and_verify(
    tenant: Tenant, tmp_path: Path
) -> None:
    with tenant.key_client() as key:
        for name in ("Alpha", "Beta", "Gamma"):
            made = key.post("/api/v1/lists", json={"name": name}).json()
            key.patch(f"/api/v1/lists/{made['id']}", json={"name": name + " 2"})
        verifier_key = key.get(f"/api/v1/accounts/{tenant.account_id}/verifier-key").json()["verifier_key"]
    owner = tenant.session_client()
    page = owner.get("/activity", params={"action": "list.update"}).text
    links = _links(page)
    assert set(links) == {"csv", "csv.manifest.json", "proof.jsonl", "jsonl", "jsonl.manifest.json"}
    found = re.search(r'data-tree-size="(\d+)"', page)
    assert found, page
    size = int(found.group(1))
    for href in links.values():
        assert dict(parse_qsl(urlsplit(href).query)) == {"action": "list.update", "as_of": str(size)}
    shown = re.search(r"<pre class=\"mono checkpoint\" data-checkpoint>(.*?)</pre>", page, re.S)
    assert shown, page
    checkpoint = html.unescape(shown.group(1))
    assert checkpoint.splitlines()[1] == str(size)
    command = html.unescape(re.search(r"data-verify-command>(.*?)</pre>", page, re.S).group(1))  # type: ignore[union-attr]
    assert verifier_key in command
    # The log grows between clicks: each download is still taken as of the page's tree.
    with tenant.key_client() as key:
        key.post("/api/v1/lists", json={"name": "Later"})
        later = key.post("/api/v1/lists", json={"name": "Later 2"}).json()
        key.patch(f"/api/v1/lists/{later['id']}", json={"name": "Later 3"})
    files: dict[str, Path] = {}
    for kind, href in links.items():
        answer = owner.get(href)
        assert answer.status_code == 200, (kind, answer.text)
        name = re.search(r'filename="([^"]+)"', answer.headers["content-disposition"]).group(1)  # type: ignore[union-attr]
        files[kind] = tmp_path / name
        files[kind].write_bytes(answer.content)
    rows = files["csv"].read_text(encoding="utf-8").splitlines()[1:]
    assert len(rows) == 3 and all(",list.update," in r for r in rows)
    assert len(files["jsonl"].read_text(encoding="utf-8").splitlines()) == 3
    manifest = json.loads(files["csv.manifest.json"].read_text(encoding="utf-8"))
    proof_head = json.loads(files["proof.jsonl"].read_text(encoding="utf-8").splitlines()[0])
    assert manifest["as_of_seq"] == proof_head["tree_size"] == size
    assert manifest["checkpoint"] == proof_head["checkpoint"] == checkpoint
    # The command the panel shows, run on the downloaded files, verifies.
    argv = command.split()[2:]
    assert argv[0] == files["csv"].name
    checked = run_auditor_tool(
        str(files["csv"]),
        "--proof", str(files["proof.jsonl"]),
        "--manifest", str(files["csv.manifest.json"]),
        "--verifier-key", verifier_key,
        stdlib_only=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "PROOF OK: all 3 rows" in checked.stdout and "MANIFEST OK: all 3 rows" in checked.stdout
    jsonl = run_auditor_tool(
        str(files["jsonl"]),
        "--proof", str(files["proof.jsonl"]),
        "--manifest", str(files["jsonl.manifest.json"]),
        "--verifier-key", verifier_key,
        stdlib_only=False,
    )  # fmt: skip
    assert jsonl.returncode == 0, jsonl.stdout + jsonl.stderr
    # Each export is logged with its filter and the tree it was taken as of; the manifest and proof are not.
    exports = entries(owner, action="activity_log.export")
    assert [e["changes"]["format"]["to"] for e in exports] == ["jsonl", "csv"]
    assert all(
        e["changes"]["as_of_seq"]["to"] == size and e["changes"]["filter"]["to"] == {"action": "list.update"}
        for e in exports
    )
    # A tree the log does not have, or a bad filter, is refused naming it.
    too_far = owner.get(links["csv"].replace(f"as_of={size}", "as_of=999999999"))
    assert too_far.status_code == 422 and "as_of" in too_far.text
    assert owner.get("/activity/download.csv?action=nope&as_of=1").status_code == 422


def _steps(page: str) -> dict[str, str]:
    return dict(
        (kind, html.unescape(href))
        for href, kind in re.findall(r'<a href="([^"]+)" rel="[a-z]+" data-step="([a-z-]+)"', page)
    )


def test_an_entry_steps_through_the_log_and_through_its_filter(tenant: Tenant) -> None:
    with tenant.key_client() as key:
        made = key.post("/api/v1/lists", json={"name": "One"}).json()
        key.post("/api/v1/segments", json={"name": "Between", "list_id": made["id"], "conditions": {}})
        key.patch(f"/api/v1/lists/{made['id']}", json={"name": "Two"})
        key.post("/api/v1/lists", json={"name": "Three"})
    owner = tenant.session_client()
    listed = owner.get("/activity", params={"resource_type": "list"}).text
    seqs = [int(s) for s in re.findall(r'<tr data-seq="(\d+)"', listed)]
    assert len(seqs) == 3  # newest first: Three, the rename, One
    newest, middle, oldest = seqs
    assert f'href="/activity/{middle}?resource_type=list"' in listed  # each row carries the filter
    page = owner.get(f"/activity/{middle}", params={"resource_type": "list"}).text
    steps = _steps(page)
    assert steps["older-match"] == f"/activity/{oldest}?resource_type=list"
    assert steps["newer-match"] == f"/activity/{newest}?resource_type=list"
    assert steps["older"] == f"/activity/{middle - 1}"  # the segment, outside the filter
    assert steps["newer"] == f"/activity/{middle + 1}"
    first = _steps(owner.get(f"/activity/{oldest}", params={"resource_type": "list"}).text)
    assert "older-match" not in first and first["newer-match"] == f"/activity/{middle}?resource_type=list"
    plain = owner.get(f"/activity/{middle}").text
    assert "data-in-filter" not in plain
    assert owner.get(f"/activity/{middle}", params={"action": "nope"}).status_code == 422
    assert owner.get(f"/activity/{middle}", params={"bogus": "1"}).status_code == 422


def test_automated_work_links_the_entry_behind_it(tenant: Tenant) -> None:
    """The scheduler's send links the schedule entry that set it up; the dispatcher's update (the delivery
    finished) links the send that started it."""
    db = tenant.server.db.for_account(tenant.account_id)
    with tenant.key_client() as api:
        broadcast_id, schedule_seq, send_seq = scheduled_send(tenant.server.db, tenant, api)
        with db.reader() as session:
            broadcast = session.get(Broadcast, broadcast_id)
        assert broadcast is not None
        dispatcher.dispatch(db, broadcast, Quiet(), datetime.now(UTC))
        (finished,) = [
            e
            for e in api.get(
                "/api/v1/activity", params={"resource_id": broadcast_id, "actor": "dispatcher"}
            ).json()["data"]
        ]
    owner = tenant.session_client()
    send_page = owner.get(f"/activity/{send_seq}").text
    assert f'<a href="/activity/{schedule_seq}" data-scheduled-in>' in send_page
    finished_page = owner.get(f"/activity/{finished['seq']}").text
    assert f'<a href="/activity/{send_seq}" data-dispatched-after>' in finished_page
    assert "data-dispatched-after" not in owner.get(f"/activity/{schedule_seq}").text
