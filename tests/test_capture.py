"""Every mutating endpoint of the OpenAPI schema leaves exactly one entry, with the right actor, IP, user
agent, request id, action, resource and diff — proven through a real HTTP server on both engines.

The operations are enumerated from the schema, so a new endpoint without a scenario here fails the suite.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from activitylog.alerts import integrity
from activitylog.config import Settings
from activitylog.web.app import create_app
from conftest import PASSWORD, Tenant

REDACTED = "[redacted]"
_ips = itertools.cycle(["203.0.113.7", "198.51.100.23", "2001:db8::42", "192.0.2.200"])


@dataclass
class Call:
    method: str
    path: str
    action: str
    resource: tuple[str, str | None]  # type, id (None: take it from the response's "id")
    json: Any = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    as_session: bool = False
    changes: dict[str, Any] = field(default_factory=dict)  # must be a subset of the entry's changes
    actor: tuple[str, str] | None = None  # expected (type, id) when not the caller's own


class Ctx:
    def __init__(self, tenant: Tenant) -> None:
        self.tenant = tenant
        self.key = tenant.key_client()
        self.session = tenant.session_client()

    def post(self, path: str, body: Any = None) -> dict[str, Any]:
        response = self.key.post(path, json=body)
        assert response.status_code in (200, 201), response.text
        return response.json()  # type: ignore[no-any-return]

    def list_id(self) -> str:
        return str(self.post("/api/v1/lists", {"name": "Prereq list"})["id"])

    def contact_id(self) -> str:
        return str(self.post(f"/api/v1/lists/{self.list_id()}/contacts", {"email": "c@example.com"})["id"])

    def segment_id(self) -> str:
        return str(self.post("/api/v1/segments", {"name": "Seg", "list_id": self.list_id()})["id"])

    def broadcast_id(self, *then: str) -> str:
        body = {
            "name": "Spring picks",
            "subject": "Hi",
            "from_email": "news@example.com",
            "list_id": self.list_id(),
        }
        bid = self.post("/api/v1/broadcasts", body)["id"]
        for step in then:
            payload = {"send_at": _future()} if step == "schedule" else None
            self.post(f"/api/v1/broadcasts/{bid}/{step}", payload)
        return str(bid)

    def domain_id(self) -> str:
        return str(
            self.post("/api/v1/sending-domains", {"domain": f"d{uuid.uuid4().hex[:8]}.example.com"})["id"]
        )

    def rule_id(self, enabled: bool = True) -> str:
        rid = self.post(
            "/api/v1/reputation-rules",
            {
                "name": "Hard bounces",
                "condition": {"event": "hard_bounce"},
                "action": {"type": "suppress_address"},
            },
        )["id"]
        if not enabled:
            self.post(f"/api/v1/reputation-rules/{rid}/disable")
        return str(rid)

    def stream_id(self, *then: str) -> str:
        body = {"name": "SIEM", "type": "webhook", "url": "https://siem.example.com/hook"}
        sid = self.post("/api/v1/streams", body)["id"]
        for step in then:
            self.post(f"/api/v1/streams/{sid}/{step}")
        return str(sid)

    def hold_id(self) -> str:
        return str(self.post("/api/v1/legal-holds", {"reason": "Annual review"})["id"])

    def user_id(self) -> str:
        body = {"email": f"u{uuid.uuid4().hex[:8]}@example.com", "password": PASSWORD, "role": "member"}
        response = self.session.post("/api/v1/users", json=body)
        assert response.status_code == 201, response.text
        return response.json()["id"]  # type: ignore[no-any-return]

    def key_id(self) -> str:
        response = self.session.post("/api/v1/api-keys", json={"name": "Other"})
        assert response.status_code == 201, response.text
        return response.json()["id"]  # type: ignore[no-any-return]

    def alert_id(self) -> str:
        """An open alert, raised as the worker's integrity check raises one (no detector run needed)."""
        reason = f"capture drill {uuid.uuid4().hex[:8]}"
        alert = integrity.report(self.tenant.server.db, Settings(), self.tenant.account_id, reason)
        assert alert is not None
        return alert.id

    def view_id(self, name: str = "Old view") -> str:
        response = self.session.post("/api/v1/saved-views", json={"name": name})
        assert response.status_code == 201, response.text
        return response.json()["id"]  # type: ignore[no-any-return]


def _future() -> str:
    return (datetime.now(UTC) + timedelta(days=2)).isoformat()


DKIM_KEY = (
    ed25519.Ed25519PrivateKey.generate()
    .private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    .decode()
)


def _c(to: Any, frm: Any = None) -> dict[str, Any]:
    return {"from": frm, "to": to}


def _scenarios() -> dict[tuple[str, str], Callable[[Ctx], Call]]:
    v1 = "/api/v1"
    return {
        ("POST", f"{v1}/session"): lambda c: Call(
            "POST",
            f"{v1}/session",
            "user.login",
            ("user", c.tenant.owner_id),
            json={"email": c.tenant.owner_email, "password": PASSWORD},
            as_session=True,
        ),
        ("DELETE", f"{v1}/session"): lambda c: Call(
            "DELETE", f"{v1}/session", "user.logout", ("user", c.tenant.owner_id), as_session=True
        ),
        ("PATCH", f"{v1}/account"): lambda c: Call(
            "PATCH",
            f"{v1}/account",
            "account.update",
            ("account", c.tenant.account_id),
            json={"name": "Renamed"},
            as_session=True,
            changes={"name": _c("Renamed", "Tenant")},
        ),
        ("POST", f"{v1}/users"): lambda c: Call(
            "POST",
            f"{v1}/users",
            "user.create",
            ("user", None),
            as_session=True,
            json={"email": "new.user@example.com", "password": PASSWORD, "role": "admin"},
            changes={"email": _c("new.user@example.com"), "role": _c("admin"), "password_hash": _c(REDACTED)},
        ),
        ("PATCH", f"{v1}/users/{{user_id}}"): lambda c: (
            lambda uid: Call(
                "PATCH",
                f"{v1}/users/{uid}",
                "user.update",
                ("user", uid),
                as_session=True,
                json={"role": "admin", "password": "another long password"},
                changes={"role": _c("admin", "member"), "password_hash": _c(REDACTED, REDACTED)},
            )
        )(c.user_id()),
        ("DELETE", f"{v1}/users/{{user_id}}"): lambda c: (
            lambda uid: Call(
                "DELETE",
                f"{v1}/users/{uid}",
                "user.delete",
                ("user", uid),
                as_session=True,
                changes={"role": _c(None, "member")},
            )
        )(c.user_id()),
        ("POST", f"{v1}/api-keys"): lambda c: Call(
            "POST",
            f"{v1}/api-keys",
            "api_key.create",
            ("api_key", None),
            as_session=True,
            json={"name": "Zapier sync", "scopes": ["activity:read"]},
            changes={"name": _c("Zapier sync"), "scopes": _c(["activity:read"]), "secret_hash": _c(REDACTED)},
        ),
        ("POST", f"{v1}/api-keys/{{key_id}}/rotate"): lambda c: (
            lambda kid: Call(
                "POST",
                f"{v1}/api-keys/{kid}/rotate",
                "api_key.rotate",
                ("api_key", kid),
                as_session=True,
                changes={"secret_hash": _c(REDACTED, REDACTED)},
            )
        )(c.key_id()),
        ("POST", f"{v1}/api-keys/{{key_id}}/revoke"): lambda c: (
            lambda kid: Call(
                "POST", f"{v1}/api-keys/{kid}/revoke", "api_key.revoke", ("api_key", kid), as_session=True
            )
        )(c.key_id()),
        ("POST", f"{v1}/lists"): lambda c: Call(
            "POST",
            f"{v1}/lists",
            "list.create",
            ("list", None),
            json={"name": "VIPs"},
            changes={"name": _c("VIPs")},
        ),
        ("PATCH", f"{v1}/lists/{{list_id}}"): lambda c: (
            lambda lid: Call(
                "PATCH",
                f"{v1}/lists/{lid}",
                "list.update",
                ("list", lid),
                json={"name": "Renamed"},
                changes={"name": _c("Renamed", "Prereq list")},
            )
        )(c.list_id()),
        ("DELETE", f"{v1}/lists/{{list_id}}"): lambda c: (
            lambda lid: Call(
                "DELETE",
                f"{v1}/lists/{lid}",
                "list.delete",
                ("list", lid),
                changes={"name": _c(None, "Prereq list"), "contacts_deleted": _c(None, 0)},
            )
        )(c.list_id()),
        ("POST", f"{v1}/lists/{{list_id}}/contacts"): lambda c: (
            lambda lid: Call(
                "POST",
                f"{v1}/lists/{lid}/contacts",
                "contact.create",
                ("contact", None),
                json={"email": "Ada@Example.com", "first_name": "Ada"},
                changes={"email": _c("ada@example.com"), "first_name": _c("Ada"), "list_id": _c(lid)},
            )
        )(c.list_id()),
        ("POST", f"{v1}/lists/{{list_id}}/contacts/import"): lambda c: (
            lambda lid: Call(
                "POST",
                f"{v1}/lists/{lid}/contacts/import",
                "list.import",
                ("list", lid),
                content=b"email,first_name\na@example.com,A\nb@example.com,B\na@example.com,dup\n",
                headers={"Content-Type": "text/csv"},
                changes={"imported": _c(2), "skipped": _c(1)},
            )
        )(c.list_id()),
        ("PATCH", f"{v1}/contacts/{{contact_id}}"): lambda c: (
            lambda cid: Call(
                "PATCH",
                f"{v1}/contacts/{cid}",
                "contact.update",
                ("contact", cid),
                json={"status": "unsubscribed"},
                changes={"status": _c("unsubscribed", "subscribed")},
            )
        )(c.contact_id()),
        ("DELETE", f"{v1}/contacts/{{contact_id}}"): lambda c: (
            lambda cid: Call(
                "DELETE",
                f"{v1}/contacts/{cid}",
                "contact.delete",
                ("contact", cid),
                changes={"email": _c(None, "c@example.com")},
            )
        )(c.contact_id()),
        ("POST", f"{v1}/segments"): lambda c: (
            lambda lid: Call(
                "POST",
                f"{v1}/segments",
                "segment.create",
                ("segment", None),
                json={
                    "name": "Engaged",
                    "list_id": lid,
                    "conditions": [{"field": "engaged_within_days", "op": "within", "value": 30}],
                },
                changes={
                    "name": _c("Engaged"),
                    "conditions": _c([{"field": "engaged_within_days", "op": "within", "value": 30}]),
                },
            )
        )(c.list_id()),
        ("PATCH", f"{v1}/segments/{{segment_id}}"): lambda c: (
            lambda sid: Call(
                "PATCH",
                f"{v1}/segments/{sid}",
                "segment.update",
                ("segment", sid),
                json={"name": "Lapsed"},
                changes={"name": _c("Lapsed", "Seg")},
            )
        )(c.segment_id()),
        ("DELETE", f"{v1}/segments/{{segment_id}}"): lambda c: (
            lambda sid: Call(
                "DELETE",
                f"{v1}/segments/{sid}",
                "segment.delete",
                ("segment", sid),
                changes={"name": _c(None, "Seg")},
            )
        )(c.segment_id()),
        ("POST", f"{v1}/broadcasts"): lambda c: (
            lambda lid: Call(
                "POST",
                f"{v1}/broadcasts",
                "broadcast.create",
                ("broadcast", None),
                json={
                    "name": "Summer sale",
                    "subject": "50% off",
                    "from_email": "news@example.com",
                    "list_id": lid,
                },
                changes={"name": _c("Summer sale"), "status": _c("draft"), "list_id": _c(lid)},
            )
        )(c.list_id()),
        ("PATCH", f"{v1}/broadcasts/{{broadcast_id}}"): lambda c: (
            lambda bid: Call(
                "PATCH",
                f"{v1}/broadcasts/{bid}",
                "broadcast.update",
                ("broadcast", bid),
                json={"subject": "New subject"},
                changes={"subject": _c("New subject", "Hi")},
            )
        )(c.broadcast_id()),
        ("DELETE", f"{v1}/broadcasts/{{broadcast_id}}"): lambda c: (
            lambda bid: Call(
                "DELETE",
                f"{v1}/broadcasts/{bid}",
                "broadcast.delete",
                ("broadcast", bid),
                changes={"status": _c(None, "draft")},
            )
        )(c.broadcast_id()),
        ("POST", f"{v1}/broadcasts/{{broadcast_id}}/schedule"): lambda c: (
            lambda bid: Call(
                "POST",
                f"{v1}/broadcasts/{bid}/schedule",
                "broadcast.schedule",
                ("broadcast", bid),
                json={"send_at": _future()},
                changes={"status": _c("scheduled", "draft")},
            )
        )(c.broadcast_id()),
        ("POST", f"{v1}/broadcasts/{{broadcast_id}}/unschedule"): lambda c: (
            lambda bid: Call(
                "POST",
                f"{v1}/broadcasts/{bid}/unschedule",
                "broadcast.unschedule",
                ("broadcast", bid),
                changes={"status": _c("draft", "scheduled")},
            )
        )(c.broadcast_id("schedule")),
        ("POST", f"{v1}/broadcasts/{{broadcast_id}}/send"): lambda c: (
            lambda bid: Call(
                "POST",
                f"{v1}/broadcasts/{bid}/send",
                "broadcast.send",
                ("broadcast", bid),
                changes={"status": _c("sending", "draft")},
            )
        )(c.broadcast_id()),
        ("POST", f"{v1}/broadcasts/{{broadcast_id}}/pause"): lambda c: (
            lambda bid: Call(
                "POST",
                f"{v1}/broadcasts/{bid}/pause",
                "broadcast.pause",
                ("broadcast", bid),
                changes={"status": _c("paused", "sending")},
            )
        )(c.broadcast_id("send")),
        ("POST", f"{v1}/broadcasts/{{broadcast_id}}/resume"): lambda c: (
            lambda bid: Call(
                "POST",
                f"{v1}/broadcasts/{bid}/resume",
                "broadcast.resume",
                ("broadcast", bid),
                changes={"status": _c("sending", "paused")},
            )
        )(c.broadcast_id("send", "pause")),
        ("POST", f"{v1}/broadcasts/{{broadcast_id}}/archive"): lambda c: (
            lambda bid: Call(
                "POST",
                f"{v1}/broadcasts/{bid}/archive",
                "broadcast.archive",
                ("broadcast", bid),
                changes={"status": _c("archived", "paused")},
            )
        )(c.broadcast_id("send", "pause")),
        ("POST", f"{v1}/suppressions"): lambda c: Call(
            "POST",
            f"{v1}/suppressions",
            "address.suppress",
            ("address", "grace@example.com"),
            json={"email": "Grace@Example.com", "reason": "asked"},
            changes={"email": _c("grace@example.com"), "reason": _c("asked")},
        ),
        ("DELETE", f"{v1}/suppressions/{{email}}"): lambda c: (
            c.post("/api/v1/suppressions", {"email": "linus@example.com"}),
            Call(
                "DELETE",
                f"{v1}/suppressions/linus@example.com",
                "address.unsuppress",
                ("address", "linus@example.com"),
                changes={"email": _c(None, "linus@example.com")},
            ),
        )[1],
        ("POST", f"{v1}/sending-domains"): lambda c: Call(
            "POST",
            f"{v1}/sending-domains",
            "sending_domain.create",
            ("sending_domain", None),
            json={"domain": "Mail.Example.com"},
            changes={"domain": _c("mail.example.com"), "status": _c("pending")},
        ),
        ("PATCH", f"{v1}/sending-domains/{{domain_id}}"): lambda c: (
            lambda did: Call(
                "PATCH",
                f"{v1}/sending-domains/{did}",
                "sending_domain.update",
                ("sending_domain", did),
                json={
                    "return_path": "bounce.example.com",
                    "dkim_private_key": DKIM_KEY,
                },
                changes={"return_path": _c("bounce.example.com"), "dkim_private_key": _c(REDACTED)},
            )
        )(c.domain_id()),
        ("DELETE", f"{v1}/sending-domains/{{domain_id}}"): lambda c: (
            lambda did: Call(
                "DELETE",
                f"{v1}/sending-domains/{did}",
                "sending_domain.delete",
                ("sending_domain", did),
                changes={"status": _c(None, "pending")},
            )
        )(c.domain_id()),
        ("POST", f"{v1}/sending-domains/{{domain_id}}/verify"): lambda c: (
            lambda did: Call(
                "POST",
                f"{v1}/sending-domains/{did}/verify",
                "sending_domain.verify",
                ("sending_domain", did),
                changes={"status": _c("failed", "pending")},  # no DNS publishes its records
            )
        )(c.domain_id()),
        ("POST", f"{v1}/reputation-rules"): lambda c: Call(
            "POST",
            f"{v1}/reputation-rules",
            "reputation_rule.create",
            ("reputation_rule", None),
            json={
                "name": "Bounce spike",
                "action": {"type": "pause_broadcast"},
                "condition": {
                    "metric": "bounce_rate",
                    "threshold": 0.05,
                    "window_minutes": 60,
                    "min_sends": 100,
                },
            },
            changes={
                "name": _c("Bounce spike"),
                "enabled": _c(True),
                "action": _c({"type": "pause_broadcast"}),
            },
        ),
        ("PATCH", f"{v1}/reputation-rules/{{rule_id}}"): lambda c: (
            lambda rid: Call(
                "PATCH",
                f"{v1}/reputation-rules/{rid}",
                "reputation_rule.update",
                ("reputation_rule", rid),
                json={"condition": {"event": "complaint"}},
                changes={"condition": _c({"event": "complaint"}, {"event": "hard_bounce"})},
            )
        )(c.rule_id()),
        ("DELETE", f"{v1}/reputation-rules/{{rule_id}}"): lambda c: (
            lambda rid: Call(
                "DELETE",
                f"{v1}/reputation-rules/{rid}",
                "reputation_rule.delete",
                ("reputation_rule", rid),
                changes={"name": _c(None, "Hard bounces")},
            )
        )(c.rule_id()),
        ("POST", f"{v1}/reputation-rules/{{rule_id}}/enable"): lambda c: (
            lambda rid: Call(
                "POST",
                f"{v1}/reputation-rules/{rid}/enable",
                "reputation_rule.enable",
                ("reputation_rule", rid),
                changes={"enabled": _c(True, False)},
            )
        )(c.rule_id(enabled=False)),
        ("POST", f"{v1}/reputation-rules/{{rule_id}}/disable"): lambda c: (
            lambda rid: Call(
                "POST",
                f"{v1}/reputation-rules/{rid}/disable",
                "reputation_rule.disable",
                ("reputation_rule", rid),
                changes={"enabled": _c(False, True)},
            )
        )(c.rule_id()),
        ("POST", f"{v1}/streams"): lambda c: Call(
            "POST",
            f"{v1}/streams",
            "stream.create",
            ("stream", None),
            json={"name": "SIEM", "type": "webhook", "url": "https://siem.example.com/hook"},
            changes={
                "name": _c("SIEM"),
                "url": _c("https://siem.example.com/hook"),
                "signing": _c("hmac"),
                "secret": _c(REDACTED),
            },
        ),
        ("PATCH", f"{v1}/streams/{{stream_id}}"): lambda c: (
            lambda sid: Call(
                "PATCH",
                f"{v1}/streams/{sid}",
                "stream.update",
                ("stream", sid),
                json={"filter": {"action": "broadcast.*"}},
                changes={"filter": _c({"action": "broadcast.*"}, {})},
            )
        )(c.stream_id()),
        ("DELETE", f"{v1}/streams/{{stream_id}}"): lambda c: (
            lambda sid: Call(
                "DELETE",
                f"{v1}/streams/{sid}",
                "stream.delete",
                ("stream", sid),
                changes={"name": _c(None, "SIEM"), "secret": _c(None, REDACTED)},
            )
        )(c.stream_id()),
        ("POST", f"{v1}/streams/{{stream_id}}/pause"): lambda c: (
            lambda sid: Call(
                "POST",
                f"{v1}/streams/{sid}/pause",
                "stream.pause",
                ("stream", sid),
                changes={"state": _c("paused", "active")},
            )
        )(c.stream_id()),
        ("POST", f"{v1}/streams/{{stream_id}}/resume"): lambda c: (
            lambda sid: Call(
                "POST",
                f"{v1}/streams/{sid}/resume",
                "stream.resume",
                ("stream", sid),
                changes={"state": _c("active", "paused")},
            )
        )(c.stream_id("pause")),
        ("POST", f"{v1}/streams/{{stream_id}}/replay"): lambda c: (
            lambda sid: Call(
                "POST",
                f"{v1}/streams/{sid}/replay",
                "stream.replay",
                ("stream", sid),
                json={"from_seq": 1},
            )
        )(c.stream_id()),
        ("POST", f"{v1}/legal-holds"): lambda c: Call(
            "POST",
            f"{v1}/legal-holds",
            "legal_hold.create",
            ("legal_hold", None),
            json={"reason": "Annual review"},
            changes={"reason": _c("Annual review")},
        ),
        ("POST", f"{v1}/erasures"): lambda c: (
            lambda _contact: Call(
                "POST",
                f"{v1}/erasures",
                "contact.erase",
                ("contact", None),
                json={"email": "c@example.com"},
                changes={"suppression_deleted": _c(False)},
            )
        )(c.contact_id()),
        ("POST", f"{v1}/legal-holds/{{hold_id}}/release"): lambda c: (
            lambda hid: Call(
                "POST", f"{v1}/legal-holds/{hid}/release", "legal_hold.release", ("legal_hold", hid)
            )
        )(c.hold_id()),
        ("PATCH", f"{v1}/alert-policy"): lambda c: Call(
            "PATCH",
            f"{v1}/alert-policy",
            "account.update",
            ("account", c.tenant.account_id),
            json={"burst.delete": {"count": 40}},
            as_session=True,
        ),
        ("POST", f"{v1}/alerts/{{alert_id}}/acknowledge"): lambda c: (
            lambda aid: Call(
                "POST",
                f"{v1}/alerts/{aid}/acknowledge",
                "alert.acknowledge",
                ("alert", aid),
                changes={"status": _c("acknowledged", "open")},
            )
        )(c.alert_id()),
        ("POST", f"{v1}/saved-views"): lambda c: Call(
            "POST",
            f"{v1}/saved-views",
            "saved_view.create",
            ("saved_view", None),
            json={"name": "Deletions", "filter": {"action": "delete"}},
            as_session=True,
            changes={"name": _c("Deletions"), "filter": _c({"action": "delete"})},
        ),
        ("PATCH", f"{v1}/saved-views/{{view_id}}"): lambda c: (
            lambda vid: Call(
                "PATCH",
                f"{v1}/saved-views/{vid}",
                "saved_view.rename",
                ("saved_view", vid),
                json={"name": "Renamed view"},
                as_session=True,
                changes={"name": _c("Renamed view", "Old view")},
            )
        )(c.view_id()),
        ("DELETE", f"{v1}/saved-views/{{view_id}}"): lambda c: (
            lambda vid: Call(
                "DELETE", f"{v1}/saved-views/{vid}", "saved_view.delete", ("saved_view", vid), as_session=True
            )
        )(c.view_id()),
    }


SCENARIOS = _scenarios()
MUTATING = ("post", "put", "patch", "delete")
# Unsafe methods that change no account state of their own. Each needs its reason, and its own proof.
NOT_ACCOUNT_STATE = {
    ("POST", "/api/v1/delivery-events"): "stores MTA feedback (metrics); the state changes its reputation "
    "rules make are logged with the rule as actor: tests/test_delivery.py",
    ("POST", "/api/v1/streams/{stream_id}/test"): "sends one test event to the destination and keeps the "
    "attempt among the stream's deliveries; the stream itself does not change: tests/test_stream_delivery.py",
}


def mutating_operations() -> list[tuple[str, str]]:
    schema = create_app().openapi()
    return sorted(
        (method.upper(), path)
        for path, ops in schema["paths"].items()
        for method in ops
        if method in MUTATING
    )


def test_every_mutating_endpoint_has_a_capture_scenario() -> None:
    operations = mutating_operations()
    missing = [op for op in operations if op not in SCENARIOS and op not in NOT_ACCOUNT_STATE]
    assert not missing, f"mutating endpoints with no proof that they log: {missing}"
    stale = [op for op in SCENARIOS if op not in operations]
    assert not stale, f"scenarios for endpoints that no longer exist: {stale}"


def _head(client: httpx.Client) -> int:
    data = client.get("/api/v1/activity", params={"limit": 1}).json()["data"]
    return data[0]["seq"] if data else 0


def _subset(expected: dict[str, Any], actual: dict[str, Any]) -> None:
    for key, value in expected.items():
        assert key in actual, f"changes lack {key!r}: {actual}"
        assert actual[key] == value, f"changes[{key!r}] = {actual[key]!r}, expected {value!r}"


@pytest.mark.parametrize(
    "operation", [op for op in mutating_operations() if op in SCENARIOS], ids=lambda op: f"{op[0]} {op[1]}"
)
def test_mutation_leaves_exactly_one_entry(tenant: Tenant, operation: tuple[str, str]) -> None:
    ctx = Ctx(tenant)
    call = SCENARIOS[operation](ctx)
    ip, request_id = next(_ips), f"req-{uuid.uuid4().hex}"
    reader = tenant.key_client()
    before = _head(reader)
    client = ctx.session if call.as_session else ctx.key
    if call.path.endswith("/session") and call.method == "POST":
        client = httpx.Client(base_url=tenant.server.url, headers={"User-Agent": "tests-browser/1.0"})
    headers = {"X-Forwarded-For": ip, "X-Request-ID": request_id, **call.headers}
    response = client.request(call.method, call.path, json=call.json, content=call.content, headers=headers)
    assert 200 <= response.status_code < 300, response.text

    new = reader.get("/api/v1/activity", params={"limit": 10}).json()["data"]
    new = [e for e in new if e["seq"] > before]
    assert len(new) == 1, f"expected one entry, got {[e['action'] for e in new]}"
    entry = new[0]
    assert entry["seq"] == before + 1
    assert entry["action"] == call.action
    assert entry["ip"] == ip
    assert entry["request_id"] == request_id
    if call.as_session:
        assert entry["actor"] == {"type": "session", "id": tenant.owner_id, "name": tenant.owner_email}
        assert entry["user_agent"] == "tests-browser/1.0"
    else:
        assert entry["actor"] == {"type": "api_key", "id": tenant.key_id, "name": "Test key"}
        assert entry["user_agent"] == "tests-key/1.0"
    rtype, rid = call.resource
    if rid is None:
        rid = response.json()["id"]
    assert entry["resource"]["type"] == rtype
    assert entry["resource"]["id"] == rid
    _subset(call.changes, entry["changes"])
    assert "secret" not in str(entry["changes"]).lower() or REDACTED in str(entry["changes"])
    if response.status_code != 204 and isinstance(response.json(), dict) and "key" in response.json():
        assert response.json()["key"] not in str(entry)  # a key's secret never reaches the log
