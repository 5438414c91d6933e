"""Abuse at the edge: guessing passwords, oversized bodies, the headers every response carries, and text
made to forge log lines or run in a browser."""

from __future__ import annotations

import csv
import io
import json
import threading
import uuid
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from activitylog.db.base import Database
from activitylog.services import credentials
from conftest import PASSWORD, Server, Tenant, make_tenant
from test_secrets import Served
from test_secrets import served as served  # a real `activitylog serve`, its output captured


def _sign_in(tenant: Tenant, password: str, ip: str, email: str | None = None) -> httpx.Response:
    with httpx.Client(base_url=tenant.server.url, timeout=60) as anon:  # argon2 queues under parallel tries
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
        whole = client.get("/api/v1/activity/export")  # its own entry is in its slice
        csv_text, as_of = whole.text, int(whole.headers["X-Activity-As-Of-Seq"])
        logged = client.get("/api/v1/activity", params={"limit": 1000}).json()["data"]
        entries = [e for e in logged if e["seq"] <= as_of]  # not the worker's, written after the slice

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
    requests = [json.loads(line) for line in output if '"activitylog.request"' in line]
    assert any(r["route"] == "/api/v1/activity/export" for r in requests)  # the request log was captured
    # the forged path is logged by its route, never as given (paths hold ids and addresses)
    assert any(r["route"] == "/api/v1/lists/{list_id}" and r["status"] == 404 for r in requests)
    assert not any(
        "FORGED" in line or "<script>" in line for line in output if '"activitylog.request"' in line
    )
    forged = [line for line in output if line.lstrip().startswith(("FORGED", "<script>"))]
    assert not forged, forged


class _CountedHasher:
    """The server's argon2 hasher, counting the password checks it makes (the server runs in-process)."""

    def __init__(self, real: Any) -> None:
        self.real, self.checks, self._lock = real, 0, threading.Lock()

    def verify(self, hashed: str, password: str) -> bool:
        with self._lock:
            self.checks += 1
        return bool(self.real.verify(hashed, password))


@pytest.fixture
def hasher(monkeypatch: pytest.MonkeyPatch) -> _CountedHasher:
    counted = _CountedHasher(credentials._hasher)
    monkeypatch.setattr(credentials, "_hasher", counted)
    return counted


def _ips(n: int) -> list[str]:
    """Addresses of this test's own, so the per-IP limiter (one for the whole run) never answers first."""
    net = uuid.uuid4().int & 0xFFFF_FFFF
    return [f"2001:db8:{net >> 16:x}:{net & 0xFFFF:x}::{i + 1:x}" for i in range(n)]


def test_an_unknown_address_answers_exactly_like_a_known_one(tenant: Tenant, hasher: _CountedHasher) -> None:
    """Ten failures lock an address out whether or not a user has it, with the same statuses, messages and
    password work; before, an unknown address answered 401 forever, and a known one 429 after ten."""
    answers = {}
    for email in (tenant.owner_email, f"nobody-{uuid.uuid4().hex[:8]}@example.com"):
        before = hasher.checks
        replies = [_sign_in(tenant, "wrong guess", ip=ip, email=email) for ip in _ips(12)]
        answers[email] = [(r.status_code, r.json()["error"]["message"]) for r in replies]
        assert hasher.checks - before == 10  # one argon2 check per attempt until the lockout, none after
    known, unknown = answers.values()
    assert known == unknown
    assert [status for status, _ in known] == [401] * 10 + [429] * 2


def test_parallel_guesses_cannot_race_past_the_limit(tenant: Tenant, hasher: _CountedHasher) -> None:
    """60 guesses at once for one address: exactly ten get a password check, known address or not (the
    count read from the log before had let 15 through)."""
    for email in (tenant.owner_email, f"nobody-{uuid.uuid4().hex[:8]}@example.com"):
        before = hasher.checks
        with ThreadPoolExecutor(max_workers=20) as pool:
            statuses = list(
                pool.map(lambda ip: _sign_in(tenant, "guess", ip=ip, email=email).status_code, _ips(60))
            )
        assert hasher.checks - before == 10, email
        assert sorted(statuses) == [401] * 10 + [429] * 50, email


def test_a_good_sign_in_clears_the_count(tenant: Tenant) -> None:
    ips = _ips(20)
    for ip in ips[:9]:
        assert _sign_in(tenant, "wrong guess", ip=ip).status_code == 401
    assert _sign_in(tenant, PASSWORD, ip=ips[9]).status_code == 200
    assert [_sign_in(tenant, "wrong guess", ip=ip).status_code for ip in ips[10:20]] == [401] * 10
