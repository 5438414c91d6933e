"""Abuse at the edge: guessing passwords, oversized bodies, and the headers every response carries."""

from __future__ import annotations

import zlib
from collections.abc import Iterator

import httpx

from conftest import PASSWORD, Tenant


def _sign_in(tenant: Tenant, password: str, ip: str, email: str | None = None) -> httpx.Response:
    with httpx.Client(base_url=tenant.server.url) as anon:
        body = {"email": email or tenant.owner_email, "password": password}
        return anon.post("/api/v1/session", json=body, headers={"X-Forwarded-For": ip})


def test_a_user_is_locked_out_after_ten_failures_and_every_attempt_is_logged(tenant: Tenant) -> None:
    for i in range(10):
        assert _sign_in(tenant, f"guess {i}", ip=f"203.0.113.{i + 1}").status_code == 401
    locked = _sign_in(tenant, PASSWORD, ip="203.0.113.99")  # even the right password, while locked
    assert locked.status_code == 429 and locked.json()["error"]["code"] == "rate_limited"
    with tenant.key_client() as client:
        failed = client.get("/api/v1/activity", params={"action": "login_failed", "limit": 50}).json()["data"]
    assert len(failed) == 11
    assert (
        failed[0]["changes"] == {"locked": {"from": None, "to": True}} and failed[0]["ip"] == "203.0.113.99"
    )
    assert all(e["changes"] == {} for e in failed[1:])
    assert "guess" not in str(failed)  # the passwords tried are never logged


def test_one_address_cannot_spray_guesses(tenant: Tenant) -> None:
    # the limiter lives in the server process for the whole run: an address of this test's own
    ip = f"2001:db8:{zlib.crc32(tenant.account_id.encode()) & 0xFFFF:x}::1"
    for i in range(30):
        assert _sign_in(tenant, "x", ip=ip, email=f"nobody{i}@example.com").status_code == 401
    assert _sign_in(tenant, PASSWORD, ip=ip).status_code == 429
    assert (
        _sign_in(tenant, PASSWORD, ip=ip.replace("::1", "::2")).status_code == 200
    )  # others are not affected


def test_oversized_bodies_are_refused(tenant: Tenant) -> None:
    with tenant.key_client() as client:
        list_id = client.post("/api/v1/lists", json={"name": "Big"}).json()["id"]
        big = b"email\n" + b"someone@example.com\n" * 400_000  # 8 MB
        declared = client.post(
            f"/api/v1/lists/{list_id}/contacts/import", content=big, headers={"Content-Type": "text/csv"}
        )
        assert declared.status_code == 413 and declared.json()["error"]["field"] == "body"

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted while read
            yield b"email\n"
            for _ in range(80):
                yield b"someone@example.com\n" * 5_000

        streamed = client.post(
            f"/api/v1/lists/{list_id}/contacts/import", content=chunks(), headers={"Content-Type": "text/csv"}
        )
        assert streamed.status_code == 413
        assert client.get(f"/api/v1/lists/{list_id}/contacts").json()["data"] == []


def test_security_headers(tenant: Tenant) -> None:
    with tenant.key_client() as client:
        r = client.get("/api/v1/lists")
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert r.headers["referrer-policy"] == "no-referrer"
