"""Tenant isolation: one account can neither see, nor find out about, nor change another account's data.

The matrix is generated from the OpenAPI schema — every operation, called by each of two accounts with
each credential (API key; session cookie + CSRF) against the other account — so a new endpoint without a
probe here fails the suite. Each account is seeded with canary strings; no response body or header the
caller gets may hold any of the other account's canaries, ids, emails or hashes (unless the caller sent
that string itself). A call naming the other account's id must answer exactly as it does for an id that
never existed: 404, or the 403 the credential gets everywhere on that endpoint. Afterwards the other
account's data and log are unchanged.

On PostgreSQL the database enforces the same line (row-level security, migration 0006): the tests at the
end connect as the non-owner application role and serve the whole application through it.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any, cast
from urllib.parse import unquote_plus

import httpx
import pytest
import uvicorn
from sqlalchemy import inspect, text
from sqlalchemy.engine import CursorResult
from typer.testing import CliRunner, Result

from activitylog.alerts import integrity
from activitylog.alerts import policy as alert_policy
from activitylog.alerts.follower import AlertFollower
from activitylog.cli.main import app as cli
from activitylog.config import Settings
from activitylog.db.base import Base, Database, connect
from activitylog.db.migrate import upgrade
from activitylog.db.models import Delivery, PurgedEntry, StreamDelivery
from activitylog.ids import new_id
from activitylog.log import counts
from activitylog.log.checkpoints import CheckpointSigner
from activitylog.log.record import RequestContext
from activitylog.log.signing import load_signer
from activitylog.services.uow import SYSTEM_CLI, UnitOfWork
from activitylog.services.verification import VerifyRuns
from activitylog.web.app import create_app
from activitylog.workers import BroadcastWorker, Checkpointer
from conftest import (
    PASSWORD,
    PG_ENV,
    Server,
    Tenant,
    app_role_on,
    free_port,
    fresh_postgres_database,
    make_tenant,
)

V1 = "/api/v1"


# ---- two accounts, each full of canaries ----
@dataclass
class Seeded:
    """An account, its clients, and every string of it that must never reach another account."""

    tenant: Tenant
    token: str
    ids: dict[str, str] = field(default_factory=dict)
    said: list[str] = field(default_factory=list)  # every request it sent in the matrix: its own knowledge
    head: int = 0  # its log's last seq, as of its last survey
    key: httpx.Client = field(init=False)
    session: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.key = self.tenant.key_client()
        self.session = self.tenant.session_client()

    def email(self, what: str) -> str:
        return f"{self.token}.{what}@example.com"

    def post(self, path: str, body: Any, *, as_session: bool = False) -> dict[str, Any]:
        client = self.session if as_session else self.key
        response = client.post(V1 + path, json=body)
        assert response.status_code in (200, 201), response.text
        return response.json()  # type: ignore[no-any-return]

    def canaries(self) -> set[str]:
        """Read with its own key before the matrix starts (a key in use records when it was last used)."""
        head = self.key.get(f"{V1}/activity", params={"limit": 1000}).json()["data"]
        self.head = head[0]["seq"]
        hashes = {e["hash"] for e in head}
        note = self.key.get(f"{V1}/activity/tree/checkpoint").text.splitlines()
        return {
            self.token,
            self.tenant.account_id,
            self.tenant.owner_id,
            self.tenant.owner_email,
            self.tenant.key_id,
            *self.ids.values(),
            *hashes,
            note[2],  # the signed root
            note[-1].rsplit(" ", 1)[-1],  # and the signature
        }


def seed(server: Server) -> Seeded:
    token = f"cny{uuid.uuid4().hex[:12]}"
    s = Seeded(make_tenant(server, name=f"{token} account"), token)
    ids = s.ids
    ids["list"] = s.post("/lists", {"name": f"{token} list"})["id"]
    ids["contact_email"] = s.email("contact")
    ids["contact"] = s.post(
        f"/lists/{ids['list']}/contacts", {"email": ids["contact_email"], "first_name": token}
    )["id"]
    # an erasure: a contact's entries scrubbed, each with its record (activity_erased); before the legal
    # hold below, which would refuse it
    erased = s.email("erased")
    s.post(f"/lists/{ids['list']}/contacts", {"email": erased, "first_name": token})
    s.post("/erasures", {"email": erased})
    # an import: an entry that lists the contacts it created among its affected ids (activity_affected)
    s.post(f"/lists/{ids['list']}/contacts/import", [{"email": s.email("imported")}])
    ids["segment"] = s.post("/segments", {"name": f"{token} segment", "list_id": ids["list"]})["id"]
    broadcast = {
        "name": f"{token} broadcast",
        "subject": f"{token} subject",
        "from_email": f"news@{token}.example.com",
        "list_id": ids["list"],
    }
    ids["broadcast"] = s.post("/broadcasts", broadcast)["id"]
    ids["domain"] = s.post("/sending-domains", {"domain": f"{token}.example.com"})["id"]
    rule = {
        "name": f"{token} rule",
        "condition": {"event": "hard_bounce"},
        "action": {"type": "suppress_address"},
    }
    ids["rule"] = s.post("/reputation-rules", rule)["id"]
    stream = {"name": f"{token} stream", "type": "webhook", "url": f"https://{token}.example.com/hook"}
    ids["stream"] = s.post("/streams", stream)["id"]
    ids["legal_hold"] = s.post("/legal-holds", {"reason": f"{token} hold"})["id"]
    ids["suppressed"] = s.email("suppressed")
    s.post("/suppressions", {"email": ids["suppressed"], "reason": f"{token} reason"})
    user = {"email": s.email("user"), "password": PASSWORD, "role": "member"}
    ids["user"] = s.post("/users", user, as_session=True)["id"]
    ids["api_key"] = s.post("/api-keys", {"name": f"{token} key"}, as_session=True)["id"]
    view = {"name": f"{token} view", "filter": {"q": token}}
    ids["saved_view"] = s.post("/saved-views", view, as_session=True)["id"]
    alert = integrity.report(server.db, Settings(), s.tenant.account_id, f"{token} drill")  # as the worker
    assert alert is not None
    ids["alert"] = alert.id
    event = {
        "id": f"{token}-evt",
        "type": "delivered",
        "email": ids["contact_email"],
        "broadcast_id": ids["broadcast"],
    }
    s.post("/delivery-events", [event])
    export = s.key.get(f"{V1}/activity/export", params={"q": token})
    as_of = export.headers["X-Activity-As-Of-Seq"]
    manifest = s.key.get(f"{V1}/activity/export/manifest", params={"q": token, "as_of_seq": as_of})
    assert manifest.status_code == 200, manifest.text  # also signs a checkpoint of the account
    return s


@pytest.fixture(scope="module")
def pair(server: Server) -> tuple[Seeded, Seeded]:
    return seed(server), seed(server)


# ---- one probe per operation of the schema ----
@dataclass
class Probe:
    method: str
    path: str
    params: dict[str, str] = field(default_factory=dict)
    json: Any = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    foreign: str | None = None  # the other account's id this request names
    client: Callable[[Seeded, httpx.Client], httpx.Client] | None = None  # instead of the credential's


def _fake(foreign: str) -> str:
    """An id of the same shape that never existed."""
    if "@" in foreign:
        return f"nobody-{uuid.uuid4().hex[:10]}@example.com"
    return new_id(foreign.split("_", 1)[0])


def _future() -> str:
    return (datetime.now(UTC) + timedelta(days=3)).isoformat()


def _anonymous(me: Seeded, _credential: httpx.Client) -> httpx.Client:
    return httpx.Client(base_url=me.tenant.server.url, timeout=30)


def _fresh_session(me: Seeded, credential: httpx.Client) -> httpx.Client:
    """Signing out must not end the session the rest of the matrix uses."""
    return me.tenant.session_client() if credential is me.session else credential


Probes = Callable[[Seeded, Seeded], list[Probe]]
FILTERS: list[Callable[[Seeded], dict[str, str]]] = [
    lambda o: {},
    lambda o: {"q": o.token},
    lambda o: {"actor": f"{o.tenant.key_id},{o.tenant.owner_id}", "q": o.tenant.owner_email},
    lambda o: {"resource_type": "broadcast", "resource_id": o.ids["broadcast"]},
    lambda o: {"resource_id": o.tenant.account_id, "action": "account.*"},
]


def _one(method: str, path: str, **kwargs: Any) -> Probes:
    return lambda me, other: [Probe(method, path.format(**other.ids), **kwargs)]


def _foreign(method: str, path: str, name: str, **kwargs: Any) -> Probes:
    return lambda me, other: [
        Probe(method, path.format(id=other.ids[name]), foreign=other.ids[name], **kwargs)
    ]


def _exports(fmt: str) -> Probes:
    return lambda me, other: [
        Probe("GET", f"{V1}/activity/export", params={**f(other), "format": fmt}) for f in FILTERS
    ]


def _manifests(me: Seeded, other: Seeded) -> list[Probe]:
    head = other.head
    return [
        Probe("GET", f"{V1}/activity/export/manifest", params={**f(other), "as_of_seq": str(head)})
        for f in FILTERS
    ]


def _entry(me: Seeded, other: Seeded) -> list[Probe]:
    head = other.head
    return [Probe("GET", f"{V1}/activity/{seq}") for seq in (head, head + 1)]


PROBES: dict[tuple[str, str], Probes] = {
    ("GET", f"{V1}/session"): _one("GET", f"{V1}/session"),
    ("POST", f"{V1}/session"): lambda me, other: [
        Probe(
            "POST",
            f"{V1}/session",
            json={"email": me.tenant.owner_email, "password": PASSWORD},
            client=_anonymous,
        )
    ],
    ("DELETE", f"{V1}/session"): _one("DELETE", f"{V1}/session", client=_fresh_session),
    ("GET", f"{V1}/account"): _one("GET", f"{V1}/account"),
    ("PATCH", f"{V1}/account"): lambda me, other: [
        Probe("PATCH", f"{V1}/account", json={"name": f"{me.token} account"})
    ],
    ("GET", f"{V1}/users"): _one("GET", f"{V1}/users"),
    ("POST", f"{V1}/users"): lambda me, other: [
        Probe(
            "POST",
            f"{V1}/users",
            json={
                "email": f"probe-{uuid.uuid4().hex[:8]}@example.com",
                "password": PASSWORD,
                "role": "member",
            },
        )
    ],
    ("GET", f"{V1}/users/{{user_id}}"): _foreign("GET", f"{V1}/users/{{id}}", "user"),
    ("PATCH", f"{V1}/users/{{user_id}}"): _foreign(
        "PATCH", f"{V1}/users/{{id}}", "user", json={"role": "admin"}
    ),
    ("DELETE", f"{V1}/users/{{user_id}}"): _foreign("DELETE", f"{V1}/users/{{id}}", "user"),
    ("GET", f"{V1}/api-keys"): _one("GET", f"{V1}/api-keys"),
    ("POST", f"{V1}/api-keys"): _one("POST", f"{V1}/api-keys", json={"name": "probe key"}),
    ("GET", f"{V1}/api-keys/{{key_id}}"): _foreign("GET", f"{V1}/api-keys/{{id}}", "api_key"),
    ("POST", f"{V1}/api-keys/{{key_id}}/rotate"): _foreign("POST", f"{V1}/api-keys/{{id}}/rotate", "api_key"),
    ("POST", f"{V1}/api-keys/{{key_id}}/revoke"): _foreign("POST", f"{V1}/api-keys/{{id}}/revoke", "api_key"),
    ("GET", f"{V1}/lists"): _one("GET", f"{V1}/lists"),
    ("POST", f"{V1}/lists"): _one("POST", f"{V1}/lists", json={"name": "probe list"}),
    ("GET", f"{V1}/lists/{{list_id}}"): _foreign("GET", f"{V1}/lists/{{id}}", "list"),
    ("PATCH", f"{V1}/lists/{{list_id}}"): _foreign(
        "PATCH", f"{V1}/lists/{{id}}", "list", json={"name": "taken"}
    ),
    ("DELETE", f"{V1}/lists/{{list_id}}"): _foreign("DELETE", f"{V1}/lists/{{id}}", "list"),
    ("GET", f"{V1}/lists/{{list_id}}/contacts"): _foreign("GET", f"{V1}/lists/{{id}}/contacts", "list"),
    ("POST", f"{V1}/lists/{{list_id}}/contacts"): _foreign(
        "POST", f"{V1}/lists/{{id}}/contacts", "list", json={"email": "planted@example.com"}
    ),
    ("POST", f"{V1}/lists/{{list_id}}/contacts/import"): _foreign(
        "POST",
        f"{V1}/lists/{{id}}/contacts/import",
        "list",
        content=b"email\nplanted@example.com\n",
        headers={"Content-Type": "text/csv"},
    ),
    ("GET", f"{V1}/contacts/{{contact_id}}"): _foreign("GET", f"{V1}/contacts/{{id}}", "contact"),
    ("PATCH", f"{V1}/contacts/{{contact_id}}"): _foreign(
        "PATCH", f"{V1}/contacts/{{id}}", "contact", json={"first_name": "taken"}
    ),
    ("DELETE", f"{V1}/contacts/{{contact_id}}"): _foreign("DELETE", f"{V1}/contacts/{{id}}", "contact"),
    ("GET", f"{V1}/segments"): _one("GET", f"{V1}/segments"),
    ("POST", f"{V1}/segments"): lambda me, other: [
        Probe(
            "POST",
            f"{V1}/segments",
            json={"name": "probe", "list_id": other.ids["list"]},
            foreign=other.ids["list"],
        )
    ],
    ("GET", f"{V1}/segments/{{segment_id}}"): _foreign("GET", f"{V1}/segments/{{id}}", "segment"),
    ("PATCH", f"{V1}/segments/{{segment_id}}"): _foreign(
        "PATCH", f"{V1}/segments/{{id}}", "segment", json={"name": "taken"}
    ),
    ("DELETE", f"{V1}/segments/{{segment_id}}"): _foreign("DELETE", f"{V1}/segments/{{id}}", "segment"),
    ("GET", f"{V1}/broadcasts"): _one("GET", f"{V1}/broadcasts"),
    ("POST", f"{V1}/broadcasts"): lambda me, other: [
        Probe(
            "POST",
            f"{V1}/broadcasts",
            foreign=other.ids[ref],
            json={
                "name": "probe",
                "subject": "s",
                "from_email": "news@example.com",
                ref + "_id": other.ids[ref],
            },
        )
        for ref in ("list", "segment")
    ],
    ("GET", f"{V1}/broadcasts/{{broadcast_id}}"): _foreign("GET", f"{V1}/broadcasts/{{id}}", "broadcast"),
    ("PATCH", f"{V1}/broadcasts/{{broadcast_id}}"): _foreign(
        "PATCH", f"{V1}/broadcasts/{{id}}", "broadcast", json={"subject": "taken"}
    ),
    ("DELETE", f"{V1}/broadcasts/{{broadcast_id}}"): _foreign(
        "DELETE", f"{V1}/broadcasts/{{id}}", "broadcast"
    ),
    ("POST", f"{V1}/broadcasts/{{broadcast_id}}/schedule"): lambda me, other: [
        Probe(
            "POST",
            f"{V1}/broadcasts/{other.ids['broadcast']}/schedule",
            json={"send_at": _future()},
            foreign=other.ids["broadcast"],
        )
    ],
    **{
        ("POST", f"{V1}/broadcasts/{{broadcast_id}}/{step}"): _foreign(
            "POST", f"{V1}/broadcasts/{{id}}/{step}", "broadcast"
        )
        for step in ("unschedule", "send", "pause", "resume", "archive")
    },
    ("GET", f"{V1}/suppressions"): _one("GET", f"{V1}/suppressions"),
    ("POST", f"{V1}/suppressions"): _one("POST", f"{V1}/suppressions", json={"email": "probe@example.com"}),
    ("DELETE", f"{V1}/suppressions/{{email}}"): _foreign("DELETE", f"{V1}/suppressions/{{id}}", "suppressed"),
    ("GET", f"{V1}/sending-domains"): _one("GET", f"{V1}/sending-domains"),
    ("POST", f"{V1}/sending-domains"): lambda me, other: [
        Probe("POST", f"{V1}/sending-domains", json={"domain": f"p{uuid.uuid4().hex[:8]}.example.com"})
    ],
    ("GET", f"{V1}/sending-domains/{{domain_id}}"): _foreign("GET", f"{V1}/sending-domains/{{id}}", "domain"),
    ("PATCH", f"{V1}/sending-domains/{{domain_id}}"): _foreign(
        "PATCH", f"{V1}/sending-domains/{{id}}", "domain", json={"return_path": "bounce.example.com"}
    ),
    ("DELETE", f"{V1}/sending-domains/{{domain_id}}"): _foreign(
        "DELETE", f"{V1}/sending-domains/{{id}}", "domain"
    ),
    ("POST", f"{V1}/sending-domains/{{domain_id}}/verify"): _foreign(
        "POST", f"{V1}/sending-domains/{{id}}/verify", "domain"
    ),
    ("GET", f"{V1}/reputation-rules"): _one("GET", f"{V1}/reputation-rules"),
    ("POST", f"{V1}/reputation-rules"): _one(
        "POST",
        f"{V1}/reputation-rules",
        json={
            "name": "probe rule",
            "condition": {"event": "complaint"},
            "action": {"type": "suppress_address"},
        },
    ),
    ("GET", f"{V1}/reputation-rules/{{rule_id}}"): _foreign("GET", f"{V1}/reputation-rules/{{id}}", "rule"),
    ("PATCH", f"{V1}/reputation-rules/{{rule_id}}"): _foreign(
        "PATCH", f"{V1}/reputation-rules/{{id}}", "rule", json={"name": "taken"}
    ),
    ("DELETE", f"{V1}/reputation-rules/{{rule_id}}"): _foreign(
        "DELETE", f"{V1}/reputation-rules/{{id}}", "rule"
    ),
    ("POST", f"{V1}/reputation-rules/{{rule_id}}/enable"): _foreign(
        "POST", f"{V1}/reputation-rules/{{id}}/enable", "rule"
    ),
    ("POST", f"{V1}/reputation-rules/{{rule_id}}/disable"): _foreign(
        "POST", f"{V1}/reputation-rules/{{id}}/disable", "rule"
    ),
    # Events naming the other account's broadcast and address are stored as the caller's own feedback.
    ("POST", f"{V1}/delivery-events"): lambda me, other: [
        Probe(
            "POST",
            f"{V1}/delivery-events",
            json=[
                {
                    "id": f"probe-{uuid.uuid4().hex}",
                    "type": kind,
                    "bounce_type": "hard" if kind == "bounce" else None,
                    "email": other.ids["contact_email"],
                    "broadcast_id": other.ids["broadcast"],
                }
            ],
        )
        for kind in ("delivered", "bounce", "complaint")
    ],
    ("GET", f"{V1}/activity"): lambda me, other: [
        Probe("GET", f"{V1}/activity", params={**f(other), "limit": "1000"}) for f in FILTERS
    ],
    ("GET", f"{V1}/activity/histogram"): lambda me, other: [
        Probe("GET", f"{V1}/activity/histogram", params={**f(other), "bucket": "week"}) for f in FILTERS
    ],
    ("GET", f"{V1}/activity/facets"): lambda me, other: [
        Probe("GET", f"{V1}/activity/facets", params=f(other)) for f in FILTERS
    ],
    ("GET", f"{V1}/activity/export"): lambda me, other: (
        _exports("csv")(me, other) + _exports("jsonl")(me, other)
    ),
    ("GET", f"{V1}/activity/export/manifest"): _manifests,
    ("GET", f"{V1}/activity/tree/checkpoint"): _one("GET", f"{V1}/activity/tree/checkpoint"),
    ("GET", f"{V1}/activity/tree/inclusion"): _one(
        "GET", f"{V1}/activity/tree/inclusion", params={"seq": "1", "tree_size": "2"}
    ),
    ("GET", f"{V1}/activity/tree/consistency"): _one(
        "GET", f"{V1}/activity/tree/consistency", params={"old_size": "1", "tree_size": "2"}
    ),
    ("GET", f"{V1}/activity/export/proof"): _one("GET", f"{V1}/activity/export/proof"),
    ("GET", f"{V1}/accounts/{{account_id}}/verifier-key"): lambda me, other: [
        Probe("GET", f"{V1}/accounts/{other.tenant.account_id}/verifier-key")  # public: any id answers alike
    ],
    ("GET", f"{V1}/activity/verify"): _one("GET", f"{V1}/activity/verify"),
    ("GET", f"{V1}/streams"): _one("GET", f"{V1}/streams"),
    ("POST", f"{V1}/streams"): lambda me, other: [
        Probe("POST", f"{V1}/streams", json={"name": "x", "type": "webhook", "url": "https://example.com/"}),
        Probe("POST", f"{V1}/streams", json={"name": "x", "type": "nats", "subject": other.token}),
    ],
    ("GET", f"{V1}/streams/{{stream_id}}"): _foreign("GET", f"{V1}/streams/{{id}}", "stream"),
    ("PATCH", f"{V1}/streams/{{stream_id}}"): _foreign(
        "PATCH", f"{V1}/streams/{{id}}", "stream", json={"name": "taken"}
    ),
    ("DELETE", f"{V1}/streams/{{stream_id}}"): _foreign("DELETE", f"{V1}/streams/{{id}}", "stream"),
    **{
        ("POST", f"{V1}/streams/{{stream_id}}/{verb}"): _foreign(
            "POST", f"{V1}/streams/{{id}}/{verb}", "stream", json=body
        )
        for verb, body in (("pause", None), ("resume", None), ("test", None), ("replay", {"from_seq": 1}))
    },
    ("GET", f"{V1}/streams/{{stream_id}}/deliveries"): _foreign(
        "GET", f"{V1}/streams/{{id}}/deliveries", "stream"
    ),
    ("GET", f"{V1}/legal-holds"): _one("GET", f"{V1}/legal-holds"),
    ("POST", f"{V1}/legal-holds"): lambda me, other: [
        Probe("POST", f"{V1}/legal-holds", json={"reason": other.token})
    ],
    ("POST", f"{V1}/legal-holds/{{hold_id}}/release"): _foreign(
        "POST", f"{V1}/legal-holds/{{id}}/release", "legal_hold"
    ),
    ("GET", f"{V1}/saved-views"): _one("GET", f"{V1}/saved-views"),
    ("POST", f"{V1}/saved-views"): lambda me, other: [
        Probe("POST", f"{V1}/saved-views", json={"name": other.token, "filter": {"q": other.token}})
    ],
    ("GET", f"{V1}/saved-views/{{view_id}}"): _foreign("GET", f"{V1}/saved-views/{{id}}", "saved_view"),
    ("PATCH", f"{V1}/saved-views/{{view_id}}"): _foreign(
        "PATCH", f"{V1}/saved-views/{{id}}", "saved_view", json={"name": "taken"}
    ),
    ("DELETE", f"{V1}/saved-views/{{view_id}}"): _foreign("DELETE", f"{V1}/saved-views/{{id}}", "saved_view"),
    ("GET", f"{V1}/activity/{{seq}}"): _entry,
    ("GET", f"{V1}/alerts"): _one("GET", f"{V1}/alerts"),
    ("GET", f"{V1}/alerts/{{alert_id}}"): _foreign("GET", f"{V1}/alerts/{{id}}", "alert"),
    ("POST", f"{V1}/alerts/{{alert_id}}/acknowledge"): _foreign(
        "POST", f"{V1}/alerts/{{id}}/acknowledge", "alert"
    ),
    ("GET", f"{V1}/alert-policy"): _one("GET", f"{V1}/alert-policy"),
    ("PATCH", f"{V1}/alert-policy"): lambda me, other: [
        Probe("PATCH", f"{V1}/alert-policy", json={"burst.delete": {"count": 30}})
    ],
    # the other account's subscriber, erased from mine: found nowhere here (404), theirs untouched
    ("POST", f"{V1}/erasures"): lambda me, other: [
        Probe("POST", f"{V1}/erasures", json={"email": other.ids["contact_email"]})
    ],
}


@cache
def operations() -> tuple[tuple[str, str], ...]:
    """Every operation of the OpenAPI schema, as (METHOD, path template)."""
    schema = create_app().openapi()
    return tuple(sorted((method.upper(), path) for path, ops in schema["paths"].items() for method in ops))


def test_the_matrix_covers_every_operation_of_the_schema() -> None:
    missing = [op for op in operations() if op not in PROBES]
    assert not missing, f"operations with no isolation probe: {missing}"
    stale = [op for op in PROBES if op not in operations()]
    assert not stale, f"probes for operations that no longer exist: {stale}"


# ---- the matrix ----
def _snapshot(owner: Seeded) -> dict[str, Any]:
    """Everything the account can read about itself (its owner's session reads log nothing)."""
    reads = [
        "/account",
        "/users",
        "/api-keys",
        "/lists",
        "/segments",
        "/broadcasts",
        "/suppressions",
        "/sending-domains",
        "/reputation-rules",
        "/legal-holds",
        "/saved-views",
        f"/lists/{owner.ids['list']}/contacts",
        "/activity/verify",
    ]
    state = {path: owner.session.get(V1 + path, params={"limit": 1000}).json() for path in reads}
    state["log"] = owner.session.get(f"{V1}/activity", params={"limit": 1000}).json()
    return state


def _send(client: httpx.Client, probe: Probe, swap: tuple[str, str] | None = None) -> httpx.Response:
    def sub(value: str) -> str:
        return value.replace(*swap) if swap else value

    body = json.loads(sub(json.dumps(probe.json))) if probe.json is not None else None
    return client.request(
        probe.method,
        sub(probe.path),
        params={k: sub(v) for k, v in probe.params.items()},
        json=body,
        content=probe.content,
        headers=probe.headers,
    )


def _leaks(me: Seeded, response: httpx.Response, canaries: set[str]) -> list[str]:
    """The other account's strings in what the caller got back, except those the caller sent itself (its own
    log rightly records the filters of its exports, or feedback naming an address)."""
    me.said.append(
        unquote_plus(str(response.request.url)) + response.request.content.decode("utf-8", "replace")
    )
    sent = "\n".join(me.said)
    seen = response.text + "\n" + "\n".join(f"{k}: {v}" for k, v in response.headers.items())
    return sorted(c for c in canaries if c not in sent and c in seen)


def _answers_as_if_absent(client: httpx.Client, probe: Probe, first: httpx.Response) -> None:
    """Naming the other account's id answers exactly as naming an id that never existed."""
    assert probe.foreign is not None
    fake = _fake(probe.foreign)
    second = _send(client, probe, swap=(probe.foreign, fake))
    where = f"{probe.method} {probe.path}"
    assert first.status_code == second.status_code, f"{where}: {first.text} vs {second.text}"
    assert first.text == second.text.replace(fake, probe.foreign), where
    if first.status_code == 403:  # only a credential that may never use this endpoint
        assert "may not do this" in first.json()["error"]["message"], where
    else:
        assert first.status_code == 404, f"{where}: {first.status_code} {first.text}"


MATRIX = [(c, d) for c in ("api_key", "session") for d in ("first calls second", "second calls first")]


@pytest.mark.parametrize(
    ("credential", "direction"), MATRIX, ids=[f"{c}-{d.replace(' ', '_')}" for c, d in MATRIX]
)
def test_an_account_never_reaches_another(
    pair: tuple[Seeded, Seeded], credential: str, direction: str, record_property: Callable[[str, Any], None]
) -> None:
    me, other = pair if direction == "first calls second" else pair[::-1]
    canaries = other.canaries()
    before = _snapshot(other)
    credential_client = me.key if credential == "api_key" else me.session
    requests = 0
    for operation in operations():
        for probe in PROBES[operation](me, other):
            client = probe.client(me, credential_client) if probe.client else credential_client
            response = _send(client, probe)
            requests += 1
            assert response.status_code < 500, f"{operation}: {response.text}"
            leaked = _leaks(me, response, canaries)
            assert not leaked, f"{operation} {probe.params or ''} leaked {leaked}: {response.text[:500]}"
            if probe.foreign is not None:
                _answers_as_if_absent(client, probe, response)
                requests += 1
    after = _snapshot(other)
    assert after == before, "the other account's data or log changed"
    record_property("requests", requests)
    print(f"isolation matrix: {len(operations())} operations, {credential}, {direction}: {requests} requests")


# ---- PostgreSQL row-level security, proven as the application role ----
def _tenant_tables() -> dict[str, str]:
    tables = {"accounts": "id"}
    tables.update({name: "account_id" for name, t in Base.metadata.tables.items() if "account_id" in t.c})
    return tables


def _postgres_only(db: Database) -> None:
    if db.dialect != "postgresql":
        pytest.skip("row-level security and roles are PostgreSQL features; SQLite is one file per deployment")


@pytest.fixture
def app_role(db: Database) -> Iterator[str]:
    _postgres_only(db)
    with app_role_on(db) as url:
        yield url


@pytest.fixture
def own_app_role(db: Database) -> Iterator[str]:
    """The app role on a database of its own: its workers then checkpoint only this test's accounts (the
    shared test database holds accounts the tampering drills broke on purpose)."""
    _postgres_only(db)
    for url in fresh_postgres_database(os.environ[PG_ENV]):
        fresh = connect(url)
        upgrade(fresh)
        try:
            with app_role_on(fresh) as role_url:
                yield role_url
        finally:
            fresh.dispose()


def test_every_tenant_table_forces_row_level_security(db: Database) -> None:
    if db.dialect != "postgresql":
        pytest.skip("row-level security is a PostgreSQL feature")
    with db.engine.connect() as conn:
        forced = set(
            conn.execute(
                text(
                    "SELECT relname FROM pg_class "
                    "WHERE relkind = 'r' AND relrowsecurity AND relforcerowsecurity"
                )
            ).scalars()
        )
    assert set(_tenant_tables()) <= forced
    assert set(_tenant_tables()) <= set(inspect(db.engine).get_table_names())


def test_the_app_role_sees_only_the_account_its_transaction_names(
    db: Database, pair: tuple[Seeded, Seeded], app_role: str
) -> None:
    first, second = pair
    mine, theirs = first.tenant.account_id, second.tenant.account_id
    with db.writer() as session:  # bookkeeping rows the test server's (absent) workers would add
        for s in pair:
            session.add(
                Delivery(
                    account_id=s.tenant.account_id,
                    broadcast_id=s.ids["broadcast"],
                    email=f"{uuid.uuid4().hex[:8]}@example.com",
                    status="sent",
                )
            )
            session.add(  # a tombstone its (absent) purger would leave (seq 0 is no entry's)
                PurgedEntry(
                    account_id=s.tenant.account_id,
                    seq=0,
                    hash="0" * 64,
                    prev_hash="0" * 64,
                    older_than=datetime.now(UTC),
                    retention_days=400,
                    purge_seq=1,
                )
            )
            session.add(  # and an attempt its (absent) stream relay would keep
                StreamDelivery(
                    account_id=s.tenant.account_id,
                    id=new_id("dlv"),
                    stream_id=s.ids["stream"],
                    event_id=f"{s.tenant.account_id}:1",
                    attempt=1,
                    status_code=200,
                    duration_ms=1,
                    at=datetime.now(UTC),
                )
            )
        session.commit()
    for s in pair:  # and the counts its (absent) counts follower would keep
        counts.catch_up(db, s.tenant.account_id)
        # and what its (absent) detectors keep: a policy of its own, a cursor, credentials
        alert_policy.update(
            UnitOfWork(db, account_id=s.tenant.account_id, actor=SYSTEM_CLI, context=RequestContext()),
            {"burst.delete": {"count": 30}},
        )
    settings = Settings()
    AlertFollower(db, settings).run_once()
    verify_runs = VerifyRuns(db, CheckpointSigner(settings, load_signer(settings)))
    for s in pair:  # and the state of a verify run
        assert (verify_runs.verify(s.tenant.account_id).verdict or {}).get("ok")
    app_db = connect(app_role)
    try:
        for table, column in _tenant_tables().items():
            everything = text(f"SELECT {column} FROM {table}")  # no WHERE on the account at all
            with app_db.for_account(mine).reader() as session:
                owners = set(session.execute(everything).scalars())
            assert owners == {mine}, f"{table}: {owners}"
            with app_db.reader() as session:
                assert session.execute(everything).first() is None, f"{table}: seen with no account named"
            with app_db.system().reader() as session:
                assert {mine, theirs} <= set(session.execute(everything).scalars()), table
            # The sessionless read the per-request lookups use is scoped the same way.
            with app_db.for_account(mine).read_connection() as connection:
                assert set(connection.execute(everything).scalars()) == {mine}, table
            with app_db.read_connection() as connection:
                assert connection.execute(everything).first() is None, table
            with app_db.system().read_connection() as connection:
                assert {mine, theirs} <= set(connection.execute(everything).scalars()), table
        with app_db.for_account(mine).writer() as session:
            hidden = cast(
                CursorResult[Any],
                session.execute(
                    text("UPDATE lists SET name = 'taken' WHERE id = :id"), {"id": second.ids["list"]}
                ),
            )
            assert hidden.rowcount == 0
            with pytest.raises(Exception, match="row-level security"):
                session.execute(
                    text(
                        "INSERT INTO lists (id, account_id, name, created_at) "
                        "VALUES (:id, :acc, 'planted', now())"
                    ),
                    {"id": new_id("lst"), "acc": theirs},
                )
        with app_db.system().writer() as session:  # the system scope reads; it never writes
            untouched = cast(CursorResult[Any], session.execute(text("UPDATE lists SET name = name")))
            assert untouched.rowcount == 0
    finally:
        app_db.dispose()


def _cli(env: dict[str, str], *args: str) -> Result:
    """The ``activitylog`` command, in this process (its own engine, from the environment's database URL)."""
    result = CliRunner().invoke(cli, list(args), env=env)
    assert result.exit_code == 0, f"{args}: {result.output}"
    return result


def _until(check: Callable[[], bool], what: str) -> None:
    """Wait for the workers (they run on their own clock); fail if it never happens."""
    deadline = time.monotonic() + 60
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.1)


@contextmanager
def serving_as(url: str) -> Iterator[httpx.Client]:
    """What ``activitylog serve`` runs — the app, the scheduler and dispatcher, the checkpointer — with a
    database URL that logs in as ``url``'s role."""
    settings = Settings(database_url=url, worker_interval_seconds=0.1, checkpoint_interval_seconds=1)
    app_db = connect(url)
    workers = [Checkpointer(app_db, settings), BroadcastWorker(app_db, settings)]
    port = free_port()
    uv = uvicorn.Server(uvicorn.Config(create_app(settings, app_db), port=port, log_level="warning"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    for worker in workers:
        worker.start()
    try:
        _until(lambda: uv.started, "the server starts")
        yield httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
    finally:
        uv.should_exit = True
        thread.join(timeout=10)
        for worker in workers:
            worker.stop()
        app_db.dispose()


def test_the_whole_app_works_as_the_app_role(
    own_app_role: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the outbox the dispatcher writes to
    env = {"ACTIVITYLOG_DATABASE_URL": own_app_role}
    email = f"rls-{uuid.uuid4().hex[:8]}@example.com"
    created = _cli(
        env, "account", "create", "--name", "RLS Co", "--owner-email", email, "--password", PASSWORD
    )
    account = json.loads(created.stdout)["account_id"]
    key = json.loads(_cli(env, "api-key", "create", "--account", account, "--name", "rls key").stdout)["key"]
    with serving_as(own_app_role) as client:
        client.headers["Authorization"] = f"Bearer {key}"
        list_id = client.post(f"{V1}/lists", json={"name": "Members"}).json()["id"]
        contact = client.post(f"{V1}/lists/{list_id}/contacts", json={"email": "ada@example.com"})
        assert contact.status_code == 201, contact.text
        rule = {
            "name": "Bounces",
            "condition": {"event": "hard_bounce"},
            "action": {"type": "suppress_address"},
        }
        assert client.post(f"{V1}/reputation-rules", json=rule).status_code == 201
        body = {"name": "Hello", "subject": "Hi", "from_email": "news@example.com", "list_id": list_id}
        broadcast = client.post(f"{V1}/broadcasts", json=body).json()["id"]
        send_at = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
        assert (
            client.post(f"{V1}/broadcasts/{broadcast}/schedule", json={"send_at": send_at}).status_code == 200
        )
        _until(
            lambda: client.get(f"{V1}/broadcasts/{broadcast}").json()["status"] == "sent", "scheduled send"
        )
        assert list((tmp_path / "outbox").glob("*.eml"))
        bounce = {
            "id": "rls-1",
            "type": "bounce",
            "bounce_type": "hard",
            "email": "ada@example.com",
            "broadcast_id": broadcast,
        }
        assert client.post(f"{V1}/delivery-events", json=[bounce]).json()["actions"] == 1
        assert client.get(f"{V1}/suppressions").json()["data"][0]["email"] == "ada@example.com"
        log = client.get(f"{V1}/activity", params={"limit": 1000}).json()["data"]
        actors = {e["actor"]["type"] if e["actor"]["type"] == "rule" else e["actor"]["id"] for e in log}
        assert {"cli", "scheduler", "dispatcher", "rule"} <= actors
        export = client.get(f"{V1}/activity/export", params={"format": "csv"})
        assert export.status_code == 200 and export.text.count("\n") > 8, export.text
        as_of = export.headers["X-Activity-As-Of-Seq"]
        manifest = client.get(f"{V1}/activity/export/manifest", params={"as_of_seq": as_of})
        assert manifest.json()["rows"] == int(as_of)
        assert client.get(f"{V1}/activity/export", params={"format": "jsonl"}).text.count("\n") > 8
        assert client.get(f"{V1}/activity/verify").json()["ok"] is True
        _until(
            lambda: client.get(f"{V1}/activity/verify").json().get("signed_size") is not None, "a checkpoint"
        )
        del client.headers["Authorization"]
        signed_in = client.post(f"{V1}/session", json={"email": email, "password": PASSWORD})
        assert signed_in.status_code == 200, signed_in.text
        assert client.get(f"{V1}/account").json()["name"] == "RLS Co"
    assert "ok" in _cli(env, "verify", "--account", account).stdout
    assert "broadcast.send" in _cli(env, "log", "--account", account).stdout
    _cli(env, "checkpoint")
