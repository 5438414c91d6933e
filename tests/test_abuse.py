"""Abuse at the edge: guessing passwords, oversized bodies, the headers every response carries, and text
made to forge log lines or run in a browser."""

from __future__ import annotations

import csv
import io
import zlib
from collections.abc import Iterator

import httpx

from activitylog.db.base import Database
from conftest import PASSWORD, Server, Tenant, make_tenant
from test_secrets import Served
from test_secrets import served as served  # a real `activitylog serve`, its output captured


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


INJECTED = "Eve\r\nFORGED 200 OK\r\n<script>alert(1)</script>"


def test_cr_lf_and_script_forge_no_log_line_or_csv_row_and_run_nowhere(served: Served, db: Database) -> None:
    """Text with CR/LF and markup goes where text may go (a contact's name, a filter, a path, a user agent):
    the server's own output keeps one line per record, the CSV one row per line and per entry, and every
    JSON answer is ``application/json`` with ``nosniff`` and a CSP that runs nothing."""
    tenant = make_tenant(Server(url=served.url, db=db))
    agent = "<script>alert(1)</script> FORGED/1.0"
    with tenant.key_client() as client:
        client.headers["User-Agent"] = agent
        list_id = client.post("/api/v1/lists", json={"name": "Readers"}).json()["id"]
        assert client.post("/api/v1/lists", json={"name": INJECTED}).status_code == 422  # names: no controls
        contact = client.post(
            f"/api/v1/lists/{list_id}/contacts", json={"email": "eve@example.com", "first_name": INJECTED}
        )
        assert contact.status_code == 201 and contact.json()["first_name"] == INJECTED  # kept as given
        missing = client.get("/api/v1/lists/lst_%0D%0AFORGED%20200%20OK%0D%0A%3Cscript%3E")
        assert missing.status_code == 404
        searched = client.get("/api/v1/activity", params={"q": INJECTED})
        exported = client.get("/api/v1/activity/export", params={"q": INJECTED, "format": "csv"})
        assert exported.status_code == 200
        csv_text = client.get("/api/v1/activity/export").text  # its own entry is in its slice
        entries = client.get("/api/v1/activity", params={"limit": 1000}).json()["data"]

    for r in (contact, missing, searched):
        assert r.headers["content-type"] == "application/json"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["content-security-policy"].startswith("default-src 'none'")
    assert any(e["user_agent"] == agent for e in entries)
    assert any(e["changes"].get("first_name", {}).get("to") == INJECTED for e in entries)
    assert any(e["changes"].get("filter", {}).get("to", {}).get("q") == INJECTED for e in entries)

    rows = list(csv.reader(io.StringIO(csv_text, newline="")))
    lines = csv_text.split("\n")
    assert lines[-1] == "" and len(lines) - 1 == len(rows) == len(entries) + 1  # one line, one row, one entry
    assert [int(r[1]) for r in rows[1:]] == sorted(e["seq"] for e in entries)

    output = served.log.read_text(errors="replace").splitlines()
    assert any("/api/v1/activity/export" in line for line in output)  # the access log was captured
    assert any(
        '"GET /api/v1/lists/lst_%0D%0AFORGED%20200%20OK%0D%0A%3Cscript%3E HTTP/1.1" 404' in x for x in output
    )
    forged = [line for line in output if line.lstrip().startswith(("FORGED", "<script>"))]
    assert not forged, forged
