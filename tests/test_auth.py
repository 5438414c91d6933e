"""Attribution and permissions: who the log says did it, where from, and who may do what."""

from __future__ import annotations

import hashlib

import httpx
from sqlalchemy import select

from activitylog.db.models import ApiKey
from conftest import PASSWORD, Tenant


def _latest(tenant: Tenant) -> dict:  # type: ignore[type-arg]
    with tenant.key_client() as client:
        return client.get("/api/v1/activity", params={"limit": 1}).json()["data"][0]  # type: ignore[no-any-return]


def test_forwarded_for_is_ignored_from_an_untrusted_peer(tenant: Tenant) -> None:
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with tenant.key_client(transport=transport) as client:
        r = client.post("/api/v1/lists", json={"name": "Spoof"}, headers={"X-Forwarded-For": "203.0.113.66"})
        assert r.status_code == 201
    assert _latest(tenant)["ip"] == "127.0.0.2"


def test_forwarded_for_from_a_trusted_proxy_takes_the_right_most_untrusted_hop(tenant: Tenant) -> None:
    with tenant.key_client() as client:
        headers = {"X-Forwarded-For": "10.9.9.9, 198.51.100.4, 127.0.0.1"}
        assert client.post("/api/v1/lists", json={"name": "Proxied"}, headers=headers).status_code == 201
    assert _latest(tenant)["ip"] == "198.51.100.4"
    with tenant.key_client() as client:
        headers = {"X-Forwarded-For": "not-an-ip"}
        assert client.post("/api/v1/lists", json={"name": "Garbled"}, headers=headers).status_code == 201
    assert _latest(tenant)["ip"] == "127.0.0.1"


def test_absent_request_facts_are_null_not_empty(tenant: Tenant) -> None:
    with httpx.Client(
        base_url=tenant.server.url, headers={"Authorization": f"Bearer {tenant.key}"}
    ) as client:
        del client.headers["User-Agent"]
        assert client.post("/api/v1/lists", json={"name": "Bare"}).status_code == 201
    entry = _latest(tenant)
    assert entry["user_agent"] is None
    assert entry["on_behalf_of"] is None
    assert entry["request_id"]  # always generated when the caller sends none


def test_session_mutation_needs_the_csrf_token(tenant: Tenant) -> None:
    client = tenant.session_client()
    head = _latest(tenant)["seq"]
    token = client.headers.pop("X-CSRF-Token")
    assert client.post("/api/v1/lists", json={"name": "Forged"}).status_code == 403
    forged = client.post("/api/v1/lists", json={"name": "Forged"}, headers={"X-CSRF-Token": "wrong"})
    assert forged.status_code == 403
    assert _latest(tenant)["seq"] == head
    ok = client.post("/api/v1/lists", json={"name": "Real"}, headers={"X-CSRF-Token": token})
    assert ok.status_code == 201
    assert _latest(tenant)["actor"] == {"type": "session", "id": tenant.owner_id, "name": tenant.owner_email}


def test_a_key_cannot_manage_keys_or_users(tenant: Tenant) -> None:
    with tenant.key_client() as client:
        assert client.post("/api/v1/api-keys", json={"name": "Escalate"}).status_code == 403
        assert client.get("/api/v1/api-keys").status_code == 403
        body = {"email": "x@example.com", "password": PASSWORD, "role": "owner"}
        assert client.post("/api/v1/users", json=body).status_code == 403


def test_revoked_and_rotated_keys(tenant: Tenant) -> None:
    session = tenant.session_client()
    issued = session.post("/api/v1/api-keys", json={"name": "Temp"}).json()
    secret = issued["key"]
    with tenant.key_client(secret) as client:
        assert client.get("/api/v1/lists").status_code == 200
    rotated = session.post(f"/api/v1/api-keys/{issued['id']}/rotate").json()
    with tenant.key_client(secret) as client:
        assert client.get("/api/v1/lists").status_code == 401
    with tenant.key_client(rotated["key"]) as client:
        assert client.post("/api/v1/lists", json={"name": "Via rotated"}).status_code == 201
    assert _latest(tenant)["actor"]["id"] == issued["id"]
    assert session.post(f"/api/v1/api-keys/{issued['id']}/revoke").status_code == 200
    with tenant.key_client(rotated["key"]) as client:
        r = client.get("/api/v1/lists")
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "unauthorized"


def test_keys_are_stored_hashed_and_listed_without_secret(tenant: Tenant) -> None:
    db = tenant.server.db
    with db.reader() as s:
        row = s.execute(select(ApiKey).where(ApiKey.id == tenant.key_id)).scalar_one()
    assert row.secret_hash == hashlib.sha256(tenant.key.encode()).hexdigest()
    assert tenant.key not in str(vars(row))
    listed = tenant.session_client().get("/api/v1/api-keys").json()["data"]
    assert all("key" not in k for k in listed)
    assert tenant.key[:10] in {k["prefix"] for k in listed}


def test_malformed_keys_are_rejected(tenant: Tenant) -> None:
    typo = tenant.key[:-1] + ("A" if tenant.key[-1] != "A" else "B")
    for header in ("Bearer", "Bearer alk_short", f"Bearer {typo}", "Basic abc", f"Bearer {tenant.key}x"):
        with httpx.Client(base_url=tenant.server.url) as client:
            r = client.get("/api/v1/lists", headers={"Authorization": header})
            assert r.status_code == 401, header


def test_who_may_read_the_log(tenant: Tenant) -> None:
    owner = tenant.session_client()
    for role in ("admin", "member"):
        email = f"{role}-{tenant.account_id[-6:].lower()}@example.com"
        assert (
            owner.post("/api/v1/users", json={"email": email, "password": PASSWORD, "role": role}).status_code
            == 201
        )
        client = tenant.session_client(email)
        assert client.get("/api/v1/activity").status_code == (200 if role == "admin" else 403)
        assert client.post("/api/v1/lists", json={"name": f"By {role}"}).status_code == 201
        assert (
            client.post("/api/v1/users", json={"email": "z@example.com", "password": PASSWORD}).status_code
            == 403
        )
    scoped = {
        s: owner.post("/api/v1/api-keys", json={"name": s, "scopes": [s]}).json()["key"]
        for s in ("activity:read", "read", "write")
    }
    with tenant.key_client(scoped["activity:read"]) as c:
        assert c.get("/api/v1/activity").status_code == 200
        assert c.get("/api/v1/lists").status_code == 403
        assert c.post("/api/v1/lists", json={"name": "No"}).status_code == 403
    with tenant.key_client(scoped["read"]) as c:
        assert c.get("/api/v1/lists").status_code == 200
        assert c.get("/api/v1/activity").status_code == 403
        assert c.post("/api/v1/lists", json={"name": "No"}).status_code == 403
    with tenant.key_client(scoped["write"]) as c:
        assert c.post("/api/v1/lists", json={"name": "Yes"}).status_code == 201
        assert c.get("/api/v1/activity").status_code == 403


def test_sign_in_failures_and_sign_out_are_logged(tenant: Tenant) -> None:
    with httpx.Client(base_url=tenant.server.url) as anon:
        r = anon.post(
            "/api/v1/session",
            json={"email": tenant.owner_email, "password": "wrong password"},
            headers={"X-Forwarded-For": "203.0.113.99"},
        )
        assert r.status_code == 401
        assert r.json()["error"]["message"] == "wrong email or password"
    failed = _latest(tenant)
    assert failed["action"] == "user.login_failed"
    assert failed["actor"] == {"type": "session", "id": "anonymous", "name": tenant.owner_email}
    assert failed["resource"]["id"] == tenant.owner_id
    assert failed["ip"] == "203.0.113.99"
    assert "wrong password" not in str(failed)
    with httpx.Client(base_url=tenant.server.url) as anon:
        r = anon.post("/api/v1/session", json={"email": "nobody@example.com", "password": "whatever1"})
        assert r.status_code == 401
        assert r.json()["error"]["message"] == "wrong email or password"
    client = tenant.session_client()
    assert _latest(tenant)["action"] == "user.login"
    assert client.get("/api/v1/session").json()["user"]["id"] == tenant.owner_id
    assert client.delete("/api/v1/session").status_code == 204
    assert _latest(tenant)["action"] == "user.logout"
    assert client.get("/api/v1/lists").status_code == 401


def test_a_revoked_keys_attempts_are_logged_once_a_minute_and_answered_401(tenant: Tenant) -> None:
    session = tenant.session_client()
    issued = session.post("/api/v1/api-keys", json={"name": "Old sync"}).json()
    assert session.post(f"/api/v1/api-keys/{issued['id']}/revoke").status_code == 200
    headers = {"X-Forwarded-For": "198.51.100.23", "User-Agent": "old-sync/2.1"}
    with tenant.key_client(issued["key"]) as client:
        for _ in range(5):  # a client still retrying with the old key
            r = client.get("/api/v1/lists", headers=headers)
            assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
        assert client.post("/api/v1/lists", json={"name": "No"}, headers=headers).status_code == 401
    with tenant.key_client() as client:
        logged = client.get("/api/v1/activity", params={"action": "api_key.login_failed"}).json()["data"]
    assert len(logged) == 1, "at most one entry per key a minute"
    entry = logged[0]
    assert entry["resource"] == {"type": "api_key", "id": issued["id"], "name": "Old sync"}
    assert entry["actor"] == {"type": "api_key", "id": issued["id"], "name": "Old sync"}
    assert (entry["ip"], entry["user_agent"]) == ("198.51.100.23", "old-sync/2.1")
    assert entry["summary"] == 'Refused revoked API key "Old sync"'
    assert entry["changes"] == {}
    assert issued["key"] not in str(entry)
    with httpx.Client(base_url=tenant.server.url) as anon:  # a key that never existed has no account
        unknown = tenant.key[:4] + "A" * 30 + tenant.key[-6:]
        assert anon.get("/api/v1/lists", headers={"Authorization": f"Bearer {unknown}"}).status_code == 401
    with tenant.key_client() as client:
        assert len(client.get("/api/v1/activity", params={"action": "login_failed"}).json()["data"]) == 1


def test_last_used_time_and_address_are_kept(tenant: Tenant) -> None:
    session = tenant.session_client()
    issued = session.post("/api/v1/api-keys", json={"name": "Fresh"}).json()
    assert issued["key"].startswith("alk_") and len(issued["key"]) == 40
    assert issued["prefix"] == issued["key"][:10] and issued["last_used_at"] is None
    with tenant.key_client(issued["key"]) as client:
        assert client.get("/api/v1/lists", headers={"X-Forwarded-For": "198.51.100.61"}).status_code == 200
    used = session.get(f"/api/v1/api-keys/{issued['id']}").json()
    assert used["last_used_ip"] == "198.51.100.61"
    assert issued["created_at"] <= used["last_used_at"]
    with tenant.key_client(issued["key"]) as client:  # a new address is recorded at once
        assert client.get("/api/v1/lists", headers={"X-Forwarded-For": "2001:db8::61"}).status_code == 200
    assert session.get(f"/api/v1/api-keys/{issued['id']}").json()["last_used_ip"] == "2001:db8::61"


def test_a_new_password_ends_the_users_other_sessions(tenant: Tenant) -> None:
    """Whoever learnt the old password and signed in with it is signed out when it changes: the user's
    own session that changed it survives, every other one ends, and the entry counts them."""
    here, elsewhere = tenant.session_client(), tenant.session_client()
    new_password = "a brand new passphrase"
    r = here.patch(f"/api/v1/users/{tenant.owner_id}", json={"password": new_password})
    assert r.status_code == 200, r.text
    assert here.get("/api/v1/session").status_code == 200
    assert elsewhere.get("/api/v1/session").status_code == 401
    entry = _latest(tenant)
    assert entry["action"] == "user.update" and entry["resource"]["id"] == tenant.owner_id
    assert entry["changes"] == {
        "password_hash": {"from": "[redacted]", "to": "[redacted]"},
        "sessions_ended": {"from": None, "to": 1},
    }
    tenant.session_client(password=new_password).close()

    # An owner setting another user's password ends all of that user's sessions.
    email = f"admin-{tenant.account_id[-6:].lower()}@example.com"
    body = {"email": email, "password": PASSWORD, "role": "admin"}
    admin_id = here.post("/api/v1/users", json=body).json()["id"]
    admin_sessions = [tenant.session_client(email), tenant.session_client(email)]
    assert here.patch(f"/api/v1/users/{admin_id}", json={"password": new_password}).status_code == 200
    assert [c.get("/api/v1/session").status_code for c in admin_sessions] == [401, 401]
    assert _latest(tenant)["changes"]["sessions_ended"] == {"from": None, "to": 2}
    assert here.get("/api/v1/session").status_code == 200
    # A change that is not a password leaves sessions alone.
    again = tenant.session_client(email, new_password)
    assert here.patch(f"/api/v1/users/{admin_id}", json={"role": "member"}).status_code == 200
    assert again.get("/api/v1/session").status_code == 200
