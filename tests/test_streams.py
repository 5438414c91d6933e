"""Stream management through the real API on both engines: create (the secret shown once), read, change,
pause/resume/replay, delete — each an entry with secrets redacted — and the destinations refused."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest

from activitylog.db.base import Database
from conftest import Server, Tenant, make_tenant, serving
from test_dashboard import signed_in


@pytest.fixture(scope="module")
def open_server(db: Database) -> Iterator[Server]:
    """A server that lets streams reach loopback (as the operator's ACTIVITYLOG_STREAM_ALLOW_PRIVATE)."""
    with serving(db, stream_allow_private=True) as running:
        yield running


@pytest.fixture
def open_tenant(open_server: Server) -> Tenant:
    return make_tenant(open_server)


def _entries(tenant: Tenant, **params: str) -> list[dict[str, Any]]:
    with tenant.key_client() as client:
        return client.get("/api/v1/activity", params={"resource_type": "stream", **params}).json()["data"]  # type: ignore[no-any-return]


def test_create_shows_the_hmac_secret_once_and_logs_it_redacted(open_tenant: Tenant) -> None:
    with open_tenant.key_client() as client:
        created = client.post(
            "/api/v1/streams",
            json={"name": "SIEM", "type": "webhook", "url": "http://127.0.0.1:9/hook", "filter": {}},
        )
        assert created.status_code == 201, created.text
        body = created.json()
        assert body["secret"].startswith("whsec_") and len(base64.b64decode(body["secret"][6:])) == 24
        assert body["signing"] == "hmac" and body["public_key"] is None
        assert body["state"] == "active" and body["format"] == "json"
        one = client.get(f"/api/v1/streams/{body['id']}").json()
        assert "secret" not in one
        listed = client.get("/api/v1/streams").json()["data"]
        assert [s["id"] for s in listed] == [body["id"]] and "secret" not in listed[0]
    entry = _entries(open_tenant)[0]
    assert entry["action"] == "stream.create" and entry["resource"]["id"] == body["id"]
    assert entry["changes"]["secret"] == {"from": None, "to": "[redacted]"}
    assert body["secret"] not in str(entry) and body["secret"][6:] not in str(entry)
    # the stream's first event is the entry that created it
    assert one["delivered_seq"] == entry["seq"] - 1


def test_ed25519_streams_show_their_public_key(open_tenant: Tenant) -> None:
    with open_tenant.key_client() as client:
        body = client.post(
            "/api/v1/streams",
            json={"name": "Signed", "type": "webhook", "url": "http://127.0.0.1:9/", "signing": "ed25519"},
        ).json()
        assert body["secret"] is None and body["public_key"].startswith("whpk_")
        assert len(base64.b64decode(body["public_key"][5:])) == 32
        assert client.get(f"/api/v1/streams/{body['id']}").json()["public_key"] == body["public_key"]


def test_change_pause_resume_replay_delete_are_entries(open_tenant: Tenant) -> None:
    with open_tenant.key_client() as client:
        sid = client.post(
            "/api/v1/streams", json={"name": "S", "type": "webhook", "url": "http://127.0.0.1:9/"}
        ).json()["id"]
        patched = client.patch(
            f"/api/v1/streams/{sid}", json={"name": "S2", "filter": {"action": "broadcast.*"}}
        )
        assert patched.status_code == 200, patched.text
        assert patched.json()["filter"] == {"action": "broadcast.*"}
        assert client.post(f"/api/v1/streams/{sid}/pause").json()["state"] == "paused"
        assert client.post(f"/api/v1/streams/{sid}/pause").status_code == 409
        assert client.post(f"/api/v1/streams/{sid}/resume").json()["state"] == "active"
        replayed = client.post(f"/api/v1/streams/{sid}/replay", json={"from_seq": 1})
        assert replayed.status_code == 200 and replayed.json()["delivered_seq"] == 0
        assert client.post(f"/api/v1/streams/{sid}/replay", json={"from_seq": 10**6}).status_code == 422
        assert client.get(f"/api/v1/streams/{sid}/deliveries").json() == {"data": [], "next_cursor": None}
        assert client.delete(f"/api/v1/streams/{sid}").status_code == 204
        assert client.get(f"/api/v1/streams/{sid}").status_code == 404
    actions = [e["action"] for e in reversed(_entries(open_tenant, resource_id=sid))]
    assert actions == [
        "stream.create",
        "stream.update",
        "stream.pause",
        "stream.resume",
        "stream.replay",
        "stream.delete",
    ]
    replay = _entries(open_tenant, resource_id=sid, action="stream.replay")[0]
    assert replay["changes"]["next_seq"]["to"] == 1 and replay["summary"] == 'Replayed stream "S2"'


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "webhook", "url": "ftp://example.com/x"}, "url"),
        ({"type": "webhook", "url": "http://user:pw@example.com/x"}, "url"),
        ({"type": "webhook"}, "url"),
        ({"type": "webhook", "url": "https://example.com/", "subject": "a.b"}, "subject"),
        ({"type": "nats", "subject": "a.*"}, "subject"),
        ({"type": "nats", "subject": "audit", "signing": "hmac"}, "signing"),
        (
            {"type": "webhook", "url": "https://example.com/", "filter": {"action": "nope.nope"}},
            "filter.action",
        ),
        ({"type": "webhook", "url": "https://example.com/", "filter": {"colour": "red"}}, "filter"),
        ({"type": "webhook", "url": "https://example.com/", "from_seq": 10**9}, "from_seq"),
        ({"type": "webhook", "url": "https://example.com/", "format": "cef"}, "format"),
    ],
)
def test_bad_input_names_the_field(tenant: Tenant, body: dict[str, Any], field: str) -> None:
    with tenant.key_client() as client:
        response = client.post("/api/v1/streams", json={"name": "x", **body})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://[::1]/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[fe80::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://localhost:8080/hook",
        "http://0.0.0.0/hook",
    ],
)
def test_private_destinations_are_refused_by_default(tenant: Tenant, url: str) -> None:
    with tenant.key_client() as client:
        response = client.post("/api/v1/streams", json={"name": "x", "type": "webhook", "url": url})
        assert response.status_code == 422, response.text
        assert response.json()["error"]["field"] == "url"
        ok = client.post(
            "/api/v1/streams", json={"name": "x", "type": "webhook", "url": "https://example.com/"}
        )
        assert ok.status_code == 201, ok.text
        assert client.patch(f"/api/v1/streams/{ok.json()['id']}", json={"url": url}).status_code == 422


def test_who_may_manage_streams(tenant: Tenant) -> None:
    owner = tenant.session_client()
    member = {"email": f"m-{tenant.key_id[-8:].lower()}@example.com", "password": "correct horse battery"}
    assert owner.post("/api/v1/users", json={**member, "role": "member"}).status_code == 201
    write_key = owner.post("/api/v1/api-keys", json={"name": "w", "scopes": ["write"]}).json()["key"]
    body = {"name": "x", "type": "webhook", "url": "https://example.com/"}
    assert owner.post("/api/v1/streams", json=body).status_code == 201
    with tenant.key_client(write_key) as client:
        assert client.get("/api/v1/streams").status_code == 403
        assert client.post("/api/v1/streams", json=body).status_code == 403
    assert tenant.session_client(member["email"]).get("/api/v1/streams").status_code == 403


def test_the_dashboard_form_refuses_what_it_does_not_offer(open_tenant: Tenant) -> None:
    """A format or signing the form does not offer, or a filter named twice, is a 422 naming it: not the
    default in its place, not the last value kept."""
    client, token = signed_in(open_tenant)
    form = {"name": "Form", "type": "webhook", "url": "http://127.0.0.1:9/hook", "csrf_token": token}
    for bad, field in (
        ({"format": "xml"}, "format: one of json, ocsf"),
        ({"signing": "rsa"}, "signing: one of hmac, ed25519"),
        ({"filter": "action=list.*&action=broadcast.*"}, "filter: action given more than once"),
    ):
        answer = client.post("/streams", data={**form, **bad})
        assert answer.status_code == 422 and field in answer.text, (bad, answer.text)
    with open_tenant.key_client() as api:
        assert api.get("/api/v1/streams").json()["data"] == []
    made = client.post("/streams", data={**form, "format": "", "filter": "action=list.*,broadcast.*"})
    assert made.status_code == 201 and "Your new stream" in made.text, made.status_code
    with open_tenant.key_client() as api:
        (stream,) = api.get("/api/v1/streams").json()["data"]
    assert stream["format"] == "json" and stream["filter"] == {"action": "list.*,broadcast.*"}
