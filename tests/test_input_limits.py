"""Text that one engine could not store or compare is refused by both, with a 4xx (or a one-line CLI error)
naming the field — never a 500, never a traceback, never stored on SQLite alone.

PostgreSQL cannot hold or compare a NUL in text and refuses a value longer than its ``varchar(n)``; SQLite
takes both. Each case below used to be a 500 or a traceback on PostgreSQL and a silent success on SQLite.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from activitylog.db.base import Database
from activitylog.db.models import Account, ApiKey
from conftest import PASSWORD, Tenant
from test_cli import cli

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
NUL_CURSOR = base64.urlsafe_b64encode(json.dumps({"after": "\x00"}).encode()).decode().rstrip("=")


def assert_refused(response: httpx.Response, field: str) -> None:
    assert 400 <= response.status_code < 500, f"{response.status_code}: {response.text[:300]}"
    if response.headers["content-type"].startswith("application/json"):
        assert field in response.json()["error"]["message"], response.text
    else:
        assert f"{field}:" in response.text, response.text[:2000]


def dashboard(tenant: Tenant) -> tuple[httpx.Client, str]:
    client = httpx.Client(base_url=tenant.server.url, timeout=30, follow_redirects=False)
    response = client.post("/sign-in", data={"email": tenant.owner_email, "password": PASSWORD})
    assert response.status_code == 303, response.text
    token = CSRF.search(client.get("/lists").text)
    assert token
    return client, token.group(1)


@pytest.mark.parametrize("path", ["/api/v1/lists", "/api/v1/suppressions", "/api/v1/broadcasts"])
def test_a_resource_cursor_holding_a_nul_is_a_422(tenant: Tenant, path: str) -> None:
    with tenant.key_client() as client:
        assert_refused(client.get(path, params={"cursor": NUL_CURSOR}), "cursor")


@pytest.mark.parametrize("slug", ["lists", "suppressions", "broadcasts"])
def test_a_dashboard_cursor_holding_a_nul_is_a_422_page(tenant: Tenant, slug: str) -> None:
    client, _ = dashboard(tenant)
    response = client.get(f"/{slug}", params={"cursor": NUL_CURSOR})
    client.close()
    assert response.status_code == 422
    assert "cursor:" in response.text


def test_dashboard_sign_in_with_a_nul_in_the_email_is_refused(tenant: Tenant) -> None:
    with httpx.Client(base_url=tenant.server.url, timeout=30) as client:
        response = client.post("/sign-in", data={"email": f"{tenant.owner_email}\x00", "password": PASSWORD})
    assert response.status_code == 422, response.text[:500]
    assert "email:" in response.text and "NUL" in response.text


@pytest.mark.parametrize(
    ("slug", "form"),
    [
        ("segments", {"name": "S", "list_id": "lst_\x00"}),
        ("contacts", {"email": "c@example.com", "list_id": "lst_\x00"}),
        ("broadcasts", {"name": "B", "subject": "S", "from_email": "a@example.com", "list_id": "lst_\x00"}),
    ],
)
def test_a_dashboard_form_field_with_a_nul_is_refused(
    tenant: Tenant, slug: str, form: dict[str, str]
) -> None:
    client, csrf = dashboard(tenant)
    response = client.post(f"/{slug}", data={"csrf_token": csrf, **form})
    assert response.status_code == 422, response.text[:500]
    assert "list_id:" in response.text
    assert client.get(f"/{slug}").status_code == 200
    client.close()


def test_a_long_scoped_ipv6_from_a_trusted_proxy_is_logged_without_its_zone(tenant: Tenant) -> None:
    """``fe80::1%<zone>`` is longer than the 45 characters an address column holds; the zone names an
    interface of the proxy's host and means nothing here, so the address is logged without it."""
    zone = "x" * 80
    with tenant.key_client() as client:
        made = client.post(
            "/api/v1/lists", json={"name": "Scoped"}, headers={"X-Forwarded-For": f"fe80::1%{zone}"}
        )
        assert made.status_code == 201, made.text
        entry = client.get("/api/v1/activity", params={"resource_id": made.json()["id"]}).json()["data"][0]
        assert entry["ip"] == "fe80::1"
        assert client.get("/api/v1/lists", headers={"X-Forwarded-For": f"fe80::2%{zone}"}).status_code == 200
    with tenant.server.db.for_account(tenant.account_id).reader() as session:
        last_used = session.scalar(select(ApiKey.last_used_ip).where(ApiKey.id == tenant.key_id))
    assert last_used in (None, "fe80::1", "fe80::2")


def _accounts_named(db: Database, name: str) -> int:
    with db.system().reader() as session:
        return int(session.scalar(select(func.count()).where(Account.name == name)) or 0)


def test_cli_names_too_long_for_their_column_are_one_line_errors(db: Database) -> None:
    assert cli(db, "migrate").returncode == 0
    long_name = "n" * 300
    email = f"long-{uuid.uuid4().hex[:8]}@example.com"
    made = cli(db, "account", "create", "--name", long_name, "--owner-email", email, "--password", PASSWORD)
    assert made.returncode != 0 and "Traceback" not in made.stderr, made.stderr
    assert "name" in made.stderr and "200" in made.stderr, made.stderr
    assert len(made.stderr.strip().splitlines()) <= 2, made.stderr
    assert _accounts_named(db, long_name) == 0, "stored on one engine only"

    account: dict[str, Any] = json.loads(
        cli(db, "account", "create", "--name", "Short", "--owner-email", email, "--password", PASSWORD).stdout
    )
    key = cli(db, "api-key", "create", "--account", account["account_id"], "--name", long_name)
    assert key.returncode != 0 and "Traceback" not in key.stderr, key.stderr
    assert "name" in key.stderr and "200" in key.stderr, key.stderr
    with db.for_account(account["account_id"]).reader() as session:
        assert session.scalar(select(func.count()).where(ApiKey.account_id == account["account_id"])) == 0
