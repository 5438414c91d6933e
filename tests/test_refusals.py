"""Refused attempts are in the log: a 403 for role or scope leaves ``<resource_type>.denied`` in the caller's
account (at most once a minute per actor, action and resource), through the real HTTP app on both engines;
bad input, conflicts and a missing CSRF token leave nothing, and another account's ids are never written."""

from __future__ import annotations

import re
import threading
import uuid

import httpx

from activitylog.ids import new_id
from activitylog.web.app import create_app
from activitylog.web.refusals import attempt_of
from conftest import PASSWORD, Tenant, make_tenant
from test_dashboard import entries as _log
from test_dashboard import signed_in

REFUSER_IP = "203.0.113.50"  # sent as X-Forwarded-For, trusted from the test client's 127.0.0.1


def _head(tenant: Tenant) -> int:
    return int(_log(tenant)[0]["seq"])


def _member(tenant: Tenant, role: str = "member") -> tuple[str, httpx.Client]:
    email = f"{role}-{uuid.uuid4().hex[:8]}@example.com"
    owner = tenant.session_client()
    made = owner.post("/api/v1/users", json={"email": email, "password": PASSWORD, "role": role})
    assert made.status_code == 201, made.text
    client = tenant.session_client(email)
    client.headers["X-Forwarded-For"] = REFUSER_IP
    return made.json()["id"], client


def _key(tenant: Tenant, scope: str) -> str:
    issued = tenant.session_client().post(
        "/api/v1/api-keys", json={"name": f"{scope} key", "scopes": [scope]}
    )
    assert issued.status_code == 201, issued.text
    return str(issued.json()["key"])


def test_a_member_refused_on_a_mutation_leaves_one_entry_a_minute_per_action_and_resource(
    tenant: Tenant,
) -> None:
    member_id, member = _member(tenant)
    owner = tenant.session_client()
    users_before = {u["id"] for u in owner.get("/api/v1/users").json()["data"]}
    body = {"email": f"x-{uuid.uuid4().hex[:6]}@example.com", "password": PASSWORD, "role": "owner"}
    refused = member.post("/api/v1/users", json=body)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    assert {u["id"] for u in owner.get("/api/v1/users").json()["data"]} == users_before  # nothing applied
    entry = _log(tenant, limit="1")[0]
    assert entry["action"] == "user.denied"
    assert entry["actor"] == {
        "type": "session",
        "id": member_id,
        "name": member.get("/api/v1/session").json()["user"]["email"],
    }
    assert entry["ip"] == REFUSER_IP and entry["user_agent"] == "tests-browser/1.0" and entry["request_id"]
    assert entry["resource"] == {"type": "user", "id": tenant.account_id, "name": None}  # a create: no id yet
    assert entry["changes"] == {
        "attempted": "create",
        "status": 403,
        "reason": "role member may not do this (needs users:manage)",
    }
    assert entry["summary"] == "Refused access to user"
    assert PASSWORD not in str(entry)

    head = _head(tenant)
    assert member.post("/api/v1/users", json=body).status_code == 403  # the same refusal within the minute
    assert _head(tenant) == head, "at most one entry a minute per actor, action and resource"
    assert member.patch(f"/api/v1/users/{tenant.owner_id}", json={"role": "member"}).status_code == 403
    assert member.patch(f"/api/v1/users/{tenant.owner_id}", json={"role": "admin"}).status_code == 403
    assert member.delete(f"/api/v1/users/{tenant.owner_id}").status_code == 403
    denied = _log(tenant, action="user.denied")
    assert [(e["resource"]["id"], e["changes"]["attempted"]) for e in denied] == [
        (tenant.owner_id, "delete"),  # another action on the same resource: its own entry
        (tenant.owner_id, "update"),  # another resource: its own entry; the second PATCH none
        (tenant.account_id, "create"),
    ]
    assert denied[1]["resource"]["name"] == tenant.owner_email
    # the owner is untouched, and the entries say so in the owner's history
    assert tenant.session_client().get(f"/api/v1/users/{tenant.owner_id}").json()["role"] == "owner"
    history = _log(tenant, resource_type="user", resource_id=tenant.owner_id)
    assert {e["action"] for e in history} >= {"user.denied"}


def test_a_key_lacking_the_scope_is_refused_and_logged_and_filters_tell_it_from_the_action(
    tenant: Tenant,
) -> None:
    with tenant.key_client() as full:
        list_id = full.post("/api/v1/lists", json={"name": "Readers"}).json()["id"]
        broadcast = {
            "name": "Spring picks",
            "subject": "s",
            "from_email": "news@example.com",
            "list_id": list_id,
        }
        broadcast_id = full.post("/api/v1/broadcasts", json=broadcast).json()["id"]
    reader = _key(tenant, "read")
    with tenant.key_client(reader) as client:
        refused = client.post(
            f"/api/v1/broadcasts/{broadcast_id}/send", headers={"X-Forwarded-For": REFUSER_IP}
        )
        assert refused.status_code == 403
        assert "this API key may not do this" in refused.json()["error"]["message"]
        assert client.get("/api/v1/lists").status_code == 200  # its reads are allowed (and not logged)
    with tenant.key_client() as full:
        assert full.get(f"/api/v1/broadcasts/{broadcast_id}").json()["status"] == "draft"  # never sent
    entry = _log(tenant, limit="1")[0]
    assert entry["action"] == "broadcast.denied"
    assert entry["actor"]["type"] == "api_key" and entry["actor"]["name"] == "read key"
    assert entry["resource"] == {"type": "broadcast", "id": broadcast_id, "name": "Spring picks"}
    assert entry["changes"] == {
        "attempted": "send",
        "status": 403,
        "reason": "this API key may not do this (needs resources:write)",
    }
    assert entry["ip"] == REFUSER_IP
    assert entry["summary"] == 'Refused access to broadcast "Spring picks"'
    # a filter on the action never counts the refused attempt as the action; these find refused attempts
    assert _log(tenant, action="broadcast.send") == []
    assert _log(tenant, action="send") == []
    assert [e["seq"] for e in _log(tenant, action="denied")] == [entry["seq"]]
    assert [e["seq"] for e in _log(tenant, action="broadcast.denied")] == [entry["seq"]]
    assert entry["seq"] in {e["seq"] for e in _log(tenant, action="broadcast.*")}
    assert entry["seq"] in {e["seq"] for e in _log(tenant, resource_id=broadcast_id)}

    writer = _key(tenant, "write")  # exporting the log is audited, so a refused export is too
    with tenant.key_client(writer) as client:
        assert client.get("/api/v1/activity/export").status_code == 403
        assert client.get("/api/v1/activity").status_code == 403  # a read: refused, not logged
    logged = _log(tenant, action="denied")
    assert [(e["action"], e["resource"]["id"], e["changes"]["attempted"]) for e in logged] == [
        ("activity_log.denied", tenant.account_id, "export"),
        ("broadcast.denied", broadcast_id, "send"),
    ]


def test_bad_input_conflicts_and_a_missing_csrf_token_leave_no_entry(tenant: Tenant) -> None:
    _, member = _member(tenant)
    head = _head(tenant)
    with tenant.key_client() as client:
        assert client.post("/api/v1/lists", json={}).status_code == 422
        assert client.post("/api/v1/sending-domains", json={"domain": "dup.example.com"}).status_code == 201
        head = _head(tenant)
        assert client.post("/api/v1/sending-domains", json={"domain": "dup.example.com"}).status_code == 409
    assert member.post("/api/v1/lists", json={"name": ""}).status_code == 422  # allowed, but bad input
    token = member.headers.pop("X-CSRF-Token")
    assert member.post("/api/v1/users", json={}).status_code == 403  # no CSRF token: proves no one's intent
    member.headers["X-CSRF-Token"] = token
    with httpx.Client(base_url=tenant.server.url) as anonymous:
        assert anonymous.post("/api/v1/users", json={}).status_code == 401
    assert _head(tenant) == head


def test_refusals_land_in_the_callers_account_and_never_name_another_accounts_ids(tenant: Tenant) -> None:
    other = make_tenant(tenant.server, name="Other")
    other_head = _head(other)
    with other.key_client() as client:
        foreign_list = client.post("/api/v1/lists", json={"name": "Theirs"}).json()["id"]
    other_head = _head(other)
    _, member = _member(tenant)
    reader = _key(tenant, "read")
    guessed = new_id("usr")
    answers = []
    with tenant.key_client(reader) as key:
        answers.append(key.delete(f"/api/v1/lists/{foreign_list}"))
        answers.append(key.delete(f"/api/v1/lists/{new_id('lst')}"))  # an id that never existed
    answers.append(member.delete(f"/api/v1/users/{other.owner_id}"))
    answers.append(member.delete(f"/api/v1/users/{guessed}"))
    assert [a.status_code for a in answers] == [403] * 4  # the credential's 403, whatever the id
    assert answers[0].text == answers[1].text and answers[2].text == answers[3].text
    mine = _log(tenant, action="denied")
    assert [(e["action"], e["resource"]["id"]) for e in mine] == [
        ("user.denied", tenant.account_id),  # one entry: an id the account lacks is its collection
        ("list.denied", tenant.account_id),
    ]
    text = str(mine)
    assert foreign_list not in text and other.owner_id not in text and guessed not in text
    assert _head(other) == other_head, "nothing reaches the other account's log"
    with other.key_client() as client:
        assert client.get(f"/api/v1/lists/{foreign_list}").status_code == 200  # and nothing was deleted
    with tenant.key_client() as client:  # a caller allowed to act still gets the 404 of an unknown id
        assert client.delete(f"/api/v1/lists/{foreign_list}").status_code == 404
    assert _log(tenant, action="denied") == mine


def test_concurrent_refusals_leave_one_entry(tenant: Tenant) -> None:
    _, member = _member(tenant)
    cookies, headers = member.cookies, dict(member.headers)
    statuses: list[int] = []

    def attempt() -> None:
        with httpx.Client(base_url=tenant.server.url, cookies=cookies, headers=headers, timeout=30) as c:
            statuses.append(c.post("/api/v1/api-keys", json={"name": "mine"}).status_code)

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [403] * 8
    assert len(_log(tenant, action="api_key.denied")) == 1


def test_the_dashboard_logs_forms_refused_by_role_and_shows_them_as_refused(tenant: Tenant) -> None:
    email = f"m-{uuid.uuid4().hex[:8]}@example.com"
    owner, token = signed_in(tenant)
    made = owner.post(
        "/users", data={"email": email, "password": PASSWORD, "role": "member", "csrf_token": token}
    )
    assert made.status_code in (201, 303), made.text
    member, member_token = signed_in(tenant, email=email)
    refused = member.post(
        "/users",
        data={"email": "new@example.com", "password": PASSWORD, "role": "owner", "csrf_token": member_token},
    )
    assert refused.status_code == 403 and "text/html" in refused.headers["content-type"]
    refused = member.post(f"/users/{tenant.owner_id}/delete", data={"csrf_token": member_token})
    assert refused.status_code == 403
    logged = _log(tenant, action="user.denied")
    assert [(e["resource"]["id"], e["changes"]["attempted"]) for e in logged] == [
        (tenant.owner_id, "delete"),
        (tenant.account_id, "create"),
    ]
    assert logged[0]["user_agent"] == "dashboard-tests/1.0"
    assert member.get("/api-keys").status_code == 403  # a page it may not read: refused, not logged
    assert len(_log(tenant, action="denied")) == 2

    rows = owner.get("/activity", params={"action": "denied"}).text
    assert rows.count("data-refused") == 2 and "Refused: delete" in rows and "Refused: create" in rows
    assert f'href="/users/{tenant.account_id}"' not in rows  # a collection, not a page
    page = owner.get(f"/activity/{logged[0]['seq']}").text
    assert "data-refused" in page and "Nothing was changed" in page
    assert re.search(r"tried to delete and was answered 403", page)
    everything = owner.get("/activity", params={"action": "user.delete"}).text
    assert "data-refused" not in everything


def test_every_mutation_of_the_api_names_the_action_a_refusal_attempted() -> None:
    """So a new endpoint's refusals are logged as what it does (or it says why it logs nothing)."""
    logs_nothing = {
        ("POST", "/api/v1/session"),  # signing in and out: no role or scope to lack
        ("DELETE", "/api/v1/session"),
        ("POST", "/api/v1/delivery-events"),  # feedback is stored, not logged; its rules' actions are
        ("POST", "/api/v1/streams/{stream_id}/test"),  # a test event is a delivery attempt, not an entry
    }
    unnamed = []
    for path, operations in create_app().openapi()["paths"].items():
        for method in operations:
            if method == "get" and not path.endswith("/export"):
                continue
            params = {name: "x" for name in re.findall(r"{(\w+)}", path)}
            if (
                attempt_of(method.upper(), path, params) is None
                and (method.upper(), path) not in logs_nothing
            ):
                unnamed.append((method.upper(), path))
    assert not unnamed, f"refusals of these would name no action: {unnamed}"
