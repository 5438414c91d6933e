"""The dashboard's pages over HTTP: sign-in rules, CSRF, permissions, escaping, and that every form edit goes
through the same choke point as the API, logged with the session as its actor."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from conftest import PASSWORD, Server, Tenant, make_tenant

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def browser_client(server: Server) -> httpx.Client:
    return httpx.Client(
        base_url=server.url, headers={"User-Agent": "dashboard-tests/1.0"}, timeout=30, follow_redirects=False
    )


def signed_in(tenant: Tenant, email: str | None = None) -> tuple[httpx.Client, str]:
    """A browser-like client with a session cookie, and the CSRF token its pages carry."""
    client = browser_client(tenant.server)
    response = client.post("/sign-in", data={"email": email or tenant.owner_email, "password": PASSWORD})
    assert response.status_code == 303, response.text
    page = client.get("/lists")
    match = CSRF.search(page.text)
    assert match, page.text
    return client, match.group(1)


def entries(tenant: Tenant, **params: str) -> list[dict[str, Any]]:
    with tenant.key_client() as api:
        response = api.get("/api/v1/activity", params={"limit": "1000", **params})
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


def test_pages_need_a_session_and_sign_in_returns_to_the_page(tenant: Tenant) -> None:
    client = browser_client(tenant.server)
    response = client.get("/activity?action=send")
    assert response.status_code == 303
    assert response.headers["location"] == "/sign-in?next=%2Factivity%3Faction%3Dsend"
    response = client.post(
        "/sign-in", data={"email": tenant.owner_email, "password": PASSWORD, "next": "/activity?action=send"}
    )
    assert response.status_code == 303 and response.headers["location"] == "/activity?action=send"
    assert "httponly" in response.headers["set-cookie"].lower()
    assert "samesite=lax" in response.headers["set-cookie"].lower()


@pytest.mark.parametrize(
    "target", ["//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:x"]
)
def test_sign_in_never_redirects_off_site(tenant: Tenant, target: str) -> None:
    response = browser_client(tenant.server).post(
        "/sign-in", data={"email": tenant.owner_email, "password": PASSWORD, "next": target}
    )
    assert response.status_code == 303 and response.headers["location"] == "/activity"


def test_wrong_password_is_a_clear_page_and_is_logged(tenant: Tenant) -> None:
    response = browser_client(tenant.server).post(
        "/sign-in", data={"email": tenant.owner_email, "password": "wrong password"}
    )
    assert response.status_code == 401
    assert "Wrong email or password." in response.text
    assert "set-cookie" not in response.headers
    failed = entries(tenant, action="user.login_failed")
    assert len(failed) == 1 and failed[0]["actor"]["id"] == "anonymous"


def test_forms_without_the_csrf_token_change_nothing(tenant: Tenant) -> None:
    client, token = signed_in(tenant)
    before = len(entries(tenant))
    for data in ({"name": "No token"}, {"name": "Wrong token", "csrf_token": "x" * len(token)}):
        response = client.post("/lists", data=data)
        assert response.status_code == 403
        assert "text/html" in response.headers["content-type"]
    assert len(entries(tenant)) == before
    with tenant.key_client() as api:
        assert api.get("/api/v1/lists").json()["data"] == []


def test_a_dashboard_edit_and_an_api_edit_are_told_apart(tenant: Tenant) -> None:
    client, token = signed_in(tenant)
    response = client.post("/sending-domains", data={"domain": "mail.example.com", "csrf_token": token})
    assert response.status_code == 303
    domain_id = response.headers["location"].split("/")[-1].split("?")[0]
    response = client.post(
        f"/sending-domains/{domain_id}",
        data={"dkim_selector": "activitylog", "return_path": "bounce.example.com", "csrf_token": token},
    )
    assert response.status_code == 303
    with tenant.key_client() as api:
        api.patch(f"/api/v1/sending-domains/{domain_id}", json={"tracking_domain": "t.example.com"})
    history = entries(tenant, resource_id=domain_id)
    assert [e["action"] for e in history] == [
        "sending_domain.update",
        "sending_domain.update",
        "sending_domain.create",
    ]
    by_key, by_page, created = history
    assert by_key["actor"] == {"type": "api_key", "id": tenant.key_id, "name": "Test key"}
    assert by_page["actor"] == {"type": "session", "id": tenant.owner_id, "name": tenant.owner_email}
    assert by_page["user_agent"] == "dashboard-tests/1.0" and by_page["ip"] == "127.0.0.1"
    assert by_page["changes"] == {"return_path": {"from": None, "to": "bounce.example.com"}}
    assert created["actor"]["type"] == "session"


def test_an_edit_form_changes_only_the_fields_it_sends(tenant: Tenant) -> None:
    """A field left out of the post keeps its value (only one sent empty is cleared), and one sent twice is
    refused: neither is a guess."""
    client, token = signed_in(tenant)
    with tenant.key_client() as api:
        lst = api.post("/api/v1/lists", json={"name": "Edits"}).json()["id"]
        contact = api.post(
            f"/api/v1/lists/{lst}/contacts",
            json={"email": "ed@example.com", "first_name": "Ed", "last_name": "Do"},
        ).json()["id"]
    sent = client.post(f"/contacts/{contact}", data={"status": "unsubscribed", "csrf_token": token})
    assert sent.status_code == 303, sent.text
    with tenant.key_client() as api:
        kept = api.get(f"/api/v1/contacts/{contact}").json()
    assert (kept["first_name"], kept["last_name"], kept["status"]) == ("Ed", "Do", "unsubscribed")
    assert entries(tenant, resource_id=contact)[0]["changes"] == {
        "status": {"from": "subscribed", "to": "unsubscribed"}
    }
    cleared = client.post(f"/contacts/{contact}", data={"last_name": "", "csrf_token": token})
    assert cleared.status_code == 303
    twice = client.post(
        "/lists",
        content=urlencode([("name", "A"), ("name", "B"), ("csrf_token", token)]),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert twice.status_code == 422 and "name: given more than once" in twice.text
    with tenant.key_client() as api:
        assert api.get(f"/api/v1/contacts/{contact}").json()["last_name"] is None
        assert [row["name"] for row in api.get("/api/v1/lists").json()["data"]] == ["Edits"]


def test_bad_form_input_is_shown_on_the_form_and_not_logged(tenant: Tenant) -> None:
    client, token = signed_in(tenant)
    before = len(entries(tenant))
    response = client.post("/sending-domains", data={"domain": "not a domain", "csrf_token": token})
    assert response.status_code == 422
    assert "domain: not a valid domain name" in response.text
    assert 'value="not a domain"' in response.text  # what was typed is kept
    response = client.post(
        "/segments", data={"name": "S", "list_id": "lst_x", "conditions": "[", "csrf_token": token}
    )
    assert response.status_code == 422 and "conditions: not valid JSON" in response.text
    deep = {"name": "S", "list_id": "lst_x", "conditions": "[" * 100_000, "csrf_token": token}
    response = client.post("/segments", data=deep)  # nested past the parser's depth: no 500
    assert response.status_code == 422 and "conditions: not valid JSON" in response.text
    assert len(entries(tenant)) == before


def test_seq_fields_take_ascii_digits_only(tenant: Tenant) -> None:
    """``int`` takes other scripts' digits and refuses thousands of them with its own error (a 500)."""
    client, token = signed_in(tenant)
    with tenant.key_client() as api:
        made = api.post("/api/v1/streams", json={"name": "N", "type": "nats", "subject": "audit"})
        assert made.status_code == 201, made.text
    before = len(entries(tenant))
    for bad in ("9" * 5000, "\u0664\u0662", "-3", "0"):
        created = client.post(
            "/streams",
            data={"name": "S", "type": "nats", "subject": "a", "from_seq": bad, "csrf_token": token},
        )
        replayed = client.post(
            f"/streams/{made.json()['id']}/replay", data={"from_seq": bad, "csrf_token": token}
        )
        for response in (created, replayed):
            assert response.status_code == 422 and "from_seq" in response.text, (bad, response.text[-300:])
    assert len(entries(tenant)) == before


def _form_values(tenant: Tenant) -> dict[str, dict[str, Any]]:
    with tenant.key_client() as api:
        list_id = api.post("/api/v1/lists", json={"name": "Base"}).json()["id"]
    return {
        "lists": {"name": "Newsletter"},
        "contacts": {"list_id": list_id, "email": "ada@example.com", "first_name": "Ada"},
        "segments": {
            "name": "Gmail",
            "list_id": list_id,
            "conditions": '[{"field": "email", "op": "ends_with", "value": "@gmail.com"}]',
        },
        "broadcasts": {
            "name": "Spring",
            "subject": "Hi",
            "from_email": "news@example.com",
            "list_id": list_id,
            "text": "Hello",
        },
        "suppressions": {"email": "gone@example.com", "reason": "asked"},
        "sending-domains": {"domain": "send.example.com"},
        "reputation-rules": {
            "name": "Complaints",
            "condition": '{"event": "complaint"}',
            "action": "suppress_address",
        },
        "api-keys": {"name": "CRM sync", "scopes": ["read", "write"]},
        "users": {"email": "new-admin@example.com", "password": "long enough pw", "role": "admin"},
    }


def test_every_create_form_is_logged_with_the_session_as_actor(tenant: Tenant) -> None:
    client, token = signed_in(tenant)
    for slug, values in _form_values(tenant).items():
        response = client.post(f"/{slug}", data={**values, "csrf_token": token})
        assert response.status_code in (201, 303), (slug, response.text)
        page = client.get(response.headers.get("location", f"/{slug}"))
        assert page.status_code == 200, (slug, page.text)
    created = [e for e in entries(tenant, action="create") if e["actor"]["type"] == "session"]
    assert sorted(e["resource"]["type"] for e in created) == sorted(
        ["list", "contact", "segment", "broadcast", "sending_domain", "reputation_rule", "api_key", "user"]
    )
    assert [e["resource"]["id"] for e in entries(tenant, action="address.suppress")] == ["gone@example.com"]
    assert all(e["actor"]["id"] == tenant.owner_id for e in created)


def test_a_new_api_key_secret_is_shown_once(tenant: Tenant) -> None:
    client, token = signed_in(tenant)
    response = client.post("/api-keys", data={"name": "Once", "csrf_token": token})
    assert response.status_code == 201
    assert response.headers["cache-control"] == "no-store"
    secret = re.search(r'value="(alk_[^"]+)"', response.text)
    assert secret is not None
    key_id = entries(tenant, action="api_key.create")[0]["resource"]["id"]
    assert secret.group(1) not in client.get(f"/api-keys/{key_id}").text
    assert secret.group(1) not in client.get("/api-keys").text
    with httpx.Client(
        base_url=tenant.server.url, headers={"Authorization": f"Bearer {secret.group(1)}"}
    ) as api:
        assert api.get("/api/v1/lists").status_code == 200


def test_lifecycle_actions_and_delete(tenant: Tenant) -> None:
    client, token = signed_in(tenant)
    with tenant.key_client() as api:
        list_id = api.post("/api/v1/lists", json={"name": "L"}).json()["id"]
        brd = api.post(
            "/api/v1/broadcasts",
            json={"name": "B", "subject": "s", "from_email": "a@example.com", "list_id": list_id},
        ).json()["id"]
    response = client.post(
        f"/broadcasts/{brd}/actions/schedule",
        data={"send_at": "2099-01-02T09:30", "tz": "Europe/Paris", "csrf_token": token},
    )
    assert response.status_code == 303
    scheduled = entries(tenant, action="broadcast.schedule")[0]
    assert scheduled["changes"]["send_at"]["to"] == "2099-01-02T08:30:00.000000Z"
    response = client.post(f"/broadcasts/{brd}/actions/pause", data={"csrf_token": token})
    assert response.status_code == 409 and "cannot be paused" in response.text
    response = client.post(f"/broadcasts/{brd}/delete", data={"csrf_token": token})
    assert response.status_code == 303 and response.headers["location"] == "/broadcasts"
    assert client.get(f"/broadcasts/{brd}").status_code == 404
    assert [e["action"] for e in entries(tenant, resource_id=brd)][:2] == [
        "broadcast.delete",
        "broadcast.schedule",
    ]


def test_members_see_resources_but_not_the_log_or_keys(server: Server) -> None:
    tenant = make_tenant(server)
    owner, token = signed_in(tenant)
    owner.post(
        "/users",
        data={
            "email": f"m-{tenant.account_id[-6:].lower()}@example.com",
            "password": PASSWORD,
            "role": "member",
            "csrf_token": token,
        },
    )
    member, _ = signed_in(tenant, email=f"m-{tenant.account_id[-6:].lower()}@example.com")
    assert member.get("/lists").status_code == 200
    for path in ("/activity", "/api-keys", "/activity/1"):
        response = member.get(path)
        assert response.status_code == 403, path
        assert "text/html" in response.headers["content-type"]
    assert 'href="/activity"' not in member.get("/lists").text


def test_untrusted_names_are_escaped(tenant: Tenant) -> None:
    name = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'
    with tenant.key_client() as api:
        api.post("/api/v1/lists", json={"name": name}, headers={"User-Agent": "<script>ua()</script>"})
    client, _ = signed_in(tenant)
    for path in ("/activity", "/lists", f"/activity/{entries(tenant, action='list.create')[0]['seq']}"):
        html = client.get(path).text
        assert "<script>alert(1)" not in html and "<img src=x" not in html and "<script>ua()" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_pages_carry_a_strict_content_security_policy(tenant: Tenant) -> None:
    client, _ = signed_in(tenant)
    for path in ("/activity", "/sign-in", "/lists"):
        headers = client.get(path).headers
        csp = headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "'unsafe-inline'" not in csp
        assert headers["x-content-type-options"] == "nosniff" and headers["x-frame-options"] == "DENY"


def test_bad_filters_are_a_page_not_a_500(tenant: Tenant) -> None:
    client, _ = signed_in(tenant)
    for query, field in (
        ("ip=300.1.1.1", "ip"),
        ("action=nope", "action"),
        ("window=2y", "window"),
        ("since=2025-02-01&until=2025-01-01", "since"),
    ):
        response = client.get(f"/activity?{query}")
        assert response.status_code == 422, query
        assert f"{field}:" in response.text
    assert client.get("/nowhere").status_code == 404
    assert client.get("/activity/999999").status_code == 404


def test_unknown_and_repeated_filters_are_refused_and_empty_ones_dropped(tenant: Tenant) -> None:
    """A mistyped filter is named, never silently ignored; the empty fields a form sends without script
    lead to the same view's URL without them."""
    client, _ = signed_in(tenant)
    for query, field in (("resource=dom_x", "resource"), ("actor=a&actor=b", "actor"), ("page=2", "page")):
        response = client.get(f"/activity?{query}")
        assert response.status_code == 422, query
        assert f"{field}:" in response.text, query
    response = client.get("/activity?actor=&action=send&q=&window=")
    assert response.status_code == 303 and response.headers["location"] == "/activity?action=send"
    response = client.get("/activity?actor=&q=")
    assert response.status_code == 303 and response.headers["location"] == "/activity"
    assert client.get("/activity?action=send&window=24h&fragment=1").status_code == 200


def test_sign_out_ends_the_session_and_is_logged(tenant: Tenant) -> None:
    client, token = signed_in(tenant)
    response = client.post("/sign-out", data={"csrf_token": token})
    assert response.status_code == 303 and response.headers["location"] == "/sign-in"
    assert client.get("/activity").status_code == 303
    assert len(entries(tenant, action="user.logout")) == 1
