"""Secrets are never stored or shown: canary values for every kind of secret the service is given are looked
for everywhere they could leak — a full dump of the database, every export, every response after the one
that created them, error messages, the activity log, and the output of a real ``activitylog serve`` (its
uvicorn access log, the in-process dispatcher's logging and whatever else it prints).

The kinds: the owner's password (``account create``), an invited user's password, a changed password, an API
key's secret (create and rotate), a sending domain's DKIM private key, and the SMTP relay password in
``ACTIVITYLOG_SMTP_URL`` — used for real, by the dispatcher, against an SMTP server that checks it.

API key properties are tested in test_auth.py: stored as SHA-256 only and listed by prefix
(``test_keys_are_stored_hashed_and_listed_without_secret``), typed prefix and checksum
(``test_malformed_keys_are_rejected``), last-used time and address
(``test_last_used_time_and_address_are_kept``). The hash and checksum comparisons use
``hmac.compare_digest`` (services/auth.py, services/credentials.py).
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy.engine import make_url

from activitylog.db.base import Database
from activitylog.db.models import SendingDomain
from activitylog.services import sealing
from conftest import Server, free_port, make_tenant

BIN = Path(sys.executable).parent


def canary(kind: str) -> str:
    return f"canary-{kind}-{secrets.token_hex(8)}"


def dkim_key() -> str:
    """A fresh DKIM private key (the service takes only real keys): its base64 line is its canary."""
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem.decode()


@dataclass
class Relay:
    """An SMTP server that accepts only the expected login, and keeps who it was sent to (the served worker
    sends every account's broadcasts in the shared test database, so a test counts its own recipients)."""

    user: str
    password: str
    logins: list[bool] = field(default_factory=list)
    recipients: list[str] = field(default_factory=list)

    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            self.user.encode(),
            self.password.encode(),
        )
        self.logins.append(ok)
        return AuthResult(success=ok)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.recipients += envelope.rcpt_tos
        return "250 OK"


@dataclass
class Served:
    url: str
    env: dict[str, str]
    log: Path
    relay: Relay


@pytest.fixture
def served(db: Database, tmp_path: Path) -> Iterator[Served]:
    """``activitylog serve`` with its workers, on the test database, sending through a relay with a login."""
    relay = Relay(user="mailer", password=canary("smtp"))
    smtp_port, port = free_port(), free_port()
    controller = Controller(
        relay, hostname="127.0.0.1", port=smtp_port, authenticator=relay, auth_require_tls=False
    )
    controller.start()
    env = {
        **os.environ,
        "ACTIVITYLOG_DATABASE_URL": db.url,
        "ACTIVITYLOG_SMTP_URL": f"smtp://{relay.user}:{relay.password}@127.0.0.1:{smtp_port}",
        "ACTIVITYLOG_WORKER_INTERVAL_SECONDS": "0.2",
    }
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [str(BIN / "activitylog"), "serve", "--no-migrate", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, log.read_text()
            try:
                httpx.get(f"{url}/openapi.json", timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)
        yield Served(url, env, log, relay)
    finally:
        server.terminate()
        server.wait(timeout=30)
        controller.stop()


def database_dump(db: Database) -> str:
    """Every byte of every table: ``pg_dump`` (as the superuser, so row security hides nothing) or SQLite's
    ``iterdump``."""
    url = make_url(db.url)
    if url.get_backend_name() == "postgresql":
        libpq = url.set(drivername="postgresql").render_as_string(hide_password=False)
        return subprocess.run(["pg_dump", libpq], capture_output=True, text=True, check=True).stdout
    conn = sqlite3.connect(str(url.database))
    try:  # (a connection's ``with`` only commits: close it, or it stays open on the file)
        return "\n".join(conn.iterdump())
    finally:
        conn.close()


def until(check: Any, what: str) -> None:
    """Wait for work the server does on its own (the dispatcher), with a generous deadline."""
    deadline = time.monotonic() + 60
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_no_secret_is_stored_or_shown(served: Served, db: Database) -> None:
    owner_email = f"owner-{secrets.token_hex(5)}@example.com"
    passwords = {k: canary(k) for k in ("owner", "invited", "changed", "refused", "guess")}
    dkim = dkim_key()
    command = ["account", "create", "--name", "Secrets Co", "--owner-email", owner_email]
    created = subprocess.run(
        [str(BIN / "activitylog"), *command, "--password", passwords["owner"]],
        env=served.env,
        capture_output=True,
        text=True,
        check=True,
    )
    shown: list[str] = [created.stdout, created.stderr]  # everything the service showed after a secret

    session = httpx.Client(base_url=served.url, timeout=30)
    signed_in = session.post("/api/v1/session", json={"email": owner_email, "password": passwords["owner"]})
    assert signed_in.status_code == 200, signed_in.text
    session.headers["X-CSRF-Token"] = signed_in.json()["csrf_token"]
    shown.append(signed_in.text)

    invited = session.post(
        "/api/v1/users", json={"email": f"i-{owner_email}", "password": passwords["invited"], "role": "admin"}
    )
    assert invited.status_code == 201, invited.text
    user_id = invited.json()["id"]
    changed = session.patch(f"/api/v1/users/{user_id}", json={"password": passwords["changed"]})
    assert changed.status_code == 200, changed.text
    refused = session.post(  # too long: the 422 must not echo it
        "/api/v1/users", json={"email": f"r-{owner_email}", "password": passwords["refused"] * 8}
    )
    assert refused.status_code == 422, refused.text
    with httpx.Client(base_url=served.url) as anon:
        wrong = anon.post("/api/v1/session", json={"email": owner_email, "password": passwords["guess"]})
    assert wrong.status_code == 401
    shown += [invited.text, changed.text, refused.text, wrong.text]

    issued = session.post("/api/v1/api-keys", json={"name": "Integration"}).json()
    rotated = session.post(f"/api/v1/api-keys/{issued['id']}/rotate").json()
    key_secrets = [issued["key"], rotated["key"]]
    key = httpx.Client(base_url=served.url, timeout=30, headers={"Authorization": f"Bearer {rotated['key']}"})
    domain = key.post("/api/v1/sending-domains", json={"domain": "mail.secrets.example"}).json()
    patched = key.patch(f"/api/v1/sending-domains/{domain['id']}", json={"dkim_private_key": dkim})
    assert patched.status_code == 200 and patched.json()["has_dkim_private_key"] is True
    shown.append(patched.text)

    list_id = key.post("/api/v1/lists", json={"name": "Readers"}).json()["id"]
    reader = f"reader-{secrets.token_hex(5)}@example.com"
    key.post(f"/api/v1/lists/{list_id}/contacts", json={"email": reader})
    broadcast = key.post(
        "/api/v1/broadcasts",
        json={"name": "B", "subject": "Hello", "from_email": "news@secrets.example", "list_id": list_id},
    ).json()
    assert key.post(f"/api/v1/broadcasts/{broadcast['id']}/send").status_code == 200
    until(
        lambda: key.get(f"/api/v1/broadcasts/{broadcast['id']}").json()["status"] == "sent", "broadcast sent"
    )
    assert served.relay.recipients.count(reader) == 1 and served.relay.logins and all(served.relay.logins)

    for path in (
        "/api/v1/session",
        "/api/v1/users",
        f"/api/v1/users/{user_id}",
        "/api/v1/api-keys",
        f"/api/v1/api-keys/{issued['id']}",
    ):
        shown.append(session.get(path).text)
    for path in ("/api/v1/sending-domains", f"/api/v1/sending-domains/{domain['id']}", "/api/v1/account"):
        shown.append(key.get(path).text)
    entries = key.get("/api/v1/activity", params={"limit": 1000}).json()["data"]
    assert {"user.update", "api_key.rotate", "sending_domain.update", "broadcast.update"} <= {
        e["action"] for e in entries
    }
    shown.append(json.dumps(entries))
    for fmt in ("csv", "jsonl"):
        export = key.get("/api/v1/activity/export", params={"format": fmt})
        assert export.status_code == 200
        shown.append(export.text)
        manifest = key.get(
            "/api/v1/activity/export/manifest",
            params={"format": fmt, "as_of_seq": export.headers["X-Activity-As-Of-Seq"]},
        )
        assert manifest.status_code == 200
        shown.append(manifest.text)
    session.close()
    key.close()

    places = {
        "responses, exports and the log": "\n".join(shown),
        "the database": database_dump(db),
        "the server's output": served.log.read_text(errors="replace"),
    }
    assert "GET /api/v1/activity/export" in places["the server's output"]  # the access log was captured
    assert owner_email in places["the database"]  # the dump holds this test's rows
    every_secret = {**passwords, "dkim": dkim.splitlines()[1], "smtp": served.relay.password}
    every_secret |= {f"api key {i}": s for i, s in enumerate(key_secrets)}
    for where, text in places.items():
        leaked = sorted(name for name, secret in every_secret.items() if secret in text)
        assert not leaked, f"{leaked} found in {where}"


def test_a_dkim_private_key_is_sealed_at_rest(server: Server) -> None:
    tenant = make_tenant(server)
    dkim, other = dkim_key(), dkim_key()
    with tenant.key_client() as client:
        domain = client.post("/api/v1/sending-domains", json={"domain": "mail.dkim.example"}).json()
        path = f"/api/v1/sending-domains/{domain['id']}"
        patched = client.patch(path, json={"dkim_private_key": dkim})
        assert patched.status_code == 200 and patched.json()["has_dkim_private_key"] is True

        def entries() -> list[dict[str, Any]]:
            page = client.get("/api/v1/activity", params={"resource_id": domain["id"]})
            return list(page.json()["data"])

        logged = entries()
        assert logged[0]["changes"] == {"dkim_private_key": {"from": None, "to": "[redacted]"}}
        # The same key again is no change (not a new entry); a new key is one.
        assert client.patch(path, json={"dkim_private_key": dkim}).status_code == 200
        assert len(entries()) == len(logged)
        assert client.patch(path, json={"dkim_private_key": other}).status_code == 200
        assert len(entries()) == len(logged) + 1
    dump = database_dump(server.db)
    assert dkim.splitlines()[1] not in dump and other.splitlines()[1] not in dump
    with server.db.system().reader() as session:
        stored = session.get(SendingDomain, domain["id"])
        assert stored is not None and stored.dkim_private_key is not None
        sealed = stored.dkim_private_key
    assert sealed.startswith(sealing.PREFIX)
    assert sealing.unseal(sealed, "dkim_private_key") == other
    with pytest.raises(sealing.SealingError):
        sealing.unseal(sealed, "another_field")  # bound to its field
    assert sealing.unseal("legacy plain value", "dkim_private_key") == "legacy plain value"
