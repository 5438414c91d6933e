"""Every bad input gets a 4xx (never a 5xx) with ``{"error": {"code", "message", "field"?}}`` whose message
names the offending field, and leaves no entry in the log.

One table of bad requests covers every POST/PATCH body, the activity filters, paging parameters and the
contact import, and NUL characters wherever text comes in.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from conftest import PASSWORD, Server, Tenant, make_tenant

LONG = "x" * 201  # names and most labels are at most 200 characters
FUTURE = "2099-06-01T09:00:00Z"
JSON_CT = {"Content-Type": "application/json"}
CSV_CT = {"Content-Type": "text/csv"}


@dataclass(frozen=True)
class Case:
    method: str
    path: str  # "{list}", "{contact}", ... are filled with the ids of real rows
    field: str  # must appear in the message (and in "field" when there is one)
    json: Any = None
    content: bytes | None = None
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    params: dict[str, str | list[str]] = dataclasses.field(default_factory=dict)  # a list repeats it
    who: str = "key"  # key (full scope), owner (session), anonymous
    status: int | None = 422  # None: any 4xx
    mentions: tuple[str, ...] = ()  # more text the message must contain


def cursor_of(payload: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


def case(id_: str, *args: Any, **kwargs: Any) -> Any:
    return pytest.param(Case(*args, **kwargs), id=id_)


BODY_CASES = [
    # ---- lists ----
    case("list-missing-name", "POST", "/api/v1/lists", "name", json={}),
    case("list-name-wrong-type", "POST", "/api/v1/lists", "name", json={"name": 5}),
    case("list-name-null", "POST", "/api/v1/lists", "name", json={"name": None}),
    case("list-name-too-long", "POST", "/api/v1/lists", "name", json={"name": LONG}),
    case("list-name-blank", "POST", "/api/v1/lists", "name", json={"name": "   "}),
    case("list-name-control", "POST", "/api/v1/lists", "name", json={"name": "a\nb"}),
    case("list-unknown-field", "POST", "/api/v1/lists", "color", json={"name": "ok", "color": "red"}),
    case("list-patch-empty", "PATCH", "/api/v1/lists/{list}", "name", json={}),
    case("list-patch-too-long", "PATCH", "/api/v1/lists/{list}", "name", json={"name": LONG}),
    case("list-patch-unknown", "PATCH", "/api/v1/lists/{list}", "id", json={"name": "ok", "id": "lst_x"}),
    # ---- contacts ----
    case("contact-missing-email", "POST", "/api/v1/lists/{list}/contacts", "email", json={"first_name": "A"}),
    case(
        "contact-bad-email", "POST", "/api/v1/lists/{list}/contacts", "email", json={"email": "not-an-email"}
    ),
    case(
        "contact-email-two-ats", "POST", "/api/v1/lists/{list}/contacts", "email", json={"email": "a@@b.com"}
    ),
    case(
        "contact-email-no-dot",
        "POST",
        "/api/v1/lists/{list}/contacts",
        "email",
        json={"email": "a@localhost"},
    ),
    case(
        "contact-email-too-long",
        "POST",
        "/api/v1/lists/{list}/contacts",
        "email",
        json={"email": "a" * 250 + "@example.com"},
    ),
    case(
        "contact-email-wrong-type",
        "POST",
        "/api/v1/lists/{list}/contacts",
        "email",
        json={"email": ["a@b.co"]},
    ),
    case(
        "contact-first-name-too-long",
        "POST",
        "/api/v1/lists/{list}/contacts",
        "first_name",
        json={"email": "ok@example.com", "first_name": LONG},
    ),
    case(
        "contact-last-name-wrong-type",
        "POST",
        "/api/v1/lists/{list}/contacts",
        "last_name",
        json={"email": "ok@example.com", "last_name": 7},
    ),
    case(
        "contact-unknown-field",
        "POST",
        "/api/v1/lists/{list}/contacts",
        "phone",
        json={"email": "ok@example.com", "phone": "555"},
    ),
    case(
        "contact-patch-bad-status",
        "PATCH",
        "/api/v1/contacts/{contact}",
        "status",
        json={"status": "bounced"},
    ),
    case("contact-patch-bad-email", "PATCH", "/api/v1/contacts/{contact}", "email", json={"email": "nope"}),
    case(
        "contact-patch-long-last",
        "PATCH",
        "/api/v1/contacts/{contact}",
        "last_name",
        json={"last_name": LONG},
    ),
    case(
        "contact-patch-unknown", "PATCH", "/api/v1/contacts/{contact}", "list_id", json={"list_id": "{list}"}
    ),
    # ---- segments ----
    case("segment-missing-list", "POST", "/api/v1/segments", "list_id", json={"name": "S"}),
    case("segment-missing-name", "POST", "/api/v1/segments", "name", json={"list_id": "{list}"}),
    case(
        "segment-list-id-too-long",
        "POST",
        "/api/v1/segments",
        "list_id",
        json={"name": "S", "list_id": "l" * 41},
    ),
    case(
        "segment-conditions-not-list",
        "POST",
        "/api/v1/segments",
        "conditions",
        json={"name": "S", "list_id": "{list}", "conditions": "email"},
    ),
    case(
        "segment-condition-bad-field",
        "POST",
        "/api/v1/segments",
        "conditions.0.field",
        json={
            "name": "S",
            "list_id": "{list}",
            "conditions": [{"field": "age", "op": "equals", "value": "1"}],
        },
    ),
    case(
        "segment-condition-bad-op",
        "POST",
        "/api/v1/segments",
        "conditions.0.op",
        json={
            "name": "S",
            "list_id": "{list}",
            "conditions": [{"field": "email", "op": "like", "value": "a"}],
        },
    ),
    case(
        "segment-condition-within-mismatch",
        "POST",
        "/api/v1/segments",
        "conditions.0",
        json={
            "name": "S",
            "list_id": "{list}",
            "conditions": [{"field": "email", "op": "within", "value": 3}],
        },
    ),
    case(
        "segment-condition-days-range",
        "POST",
        "/api/v1/segments",
        "conditions.1",
        json={
            "name": "S",
            "list_id": "{list}",
            "conditions": [
                {"field": "status", "op": "equals", "value": "subscribed"},
                {"field": "engaged_within_days", "op": "within", "value": 0},
            ],
        },
    ),
    case(
        "segment-condition-unknown-key",
        "POST",
        "/api/v1/segments",
        "conditions.0.negate",
        json={
            "name": "S",
            "list_id": "{list}",
            "conditions": [{"field": "email", "op": "contains", "value": "a", "negate": True}],
        },
    ),
    case(
        "segment-condition-long-numeric-value",  # was stored as the number 0
        "POST",
        "/api/v1/segments",
        "conditions.0.value",
        json={
            "name": "S",
            "list_id": "{list}",
            "conditions": [{"field": "email", "op": "equals", "value": "0" * 321}],
        },
        mentions=("320 characters",),
    ),
    case(
        "segment-condition-bool-value",
        "PATCH",
        "/api/v1/segments/{segment}",
        "conditions.0.value",
        json={"conditions": [{"field": "email", "op": "equals", "value": True}]},
    ),
    case(
        "segment-too-many-conditions",
        "POST",
        "/api/v1/segments",
        "conditions",
        json={
            "name": "S",
            "list_id": "{list}",
            "conditions": [{"field": "email", "op": "contains", "value": "a"}] * 21,
        },
    ),
    case(
        "segment-patch-condition-missing-op",
        "PATCH",
        "/api/v1/segments/{segment}",
        "conditions.0.op",
        json={"conditions": [{"field": "email", "value": "a"}]},
    ),
    case("segment-patch-long-name", "PATCH", "/api/v1/segments/{segment}", "name", json={"name": LONG}),
    # ---- broadcasts ----
    case(
        "broadcast-missing-name",
        "POST",
        "/api/v1/broadcasts",
        "name",
        json={"subject": "S", "from_email": "a@example.com", "list_id": "{list}"},
    ),
    case(
        "broadcast-missing-subject",
        "POST",
        "/api/v1/broadcasts",
        "subject",
        json={"name": "B", "from_email": "a@example.com", "list_id": "{list}"},
    ),
    case(
        "broadcast-missing-from",
        "POST",
        "/api/v1/broadcasts",
        "from_email",
        json={"name": "B", "subject": "S", "list_id": "{list}"},
    ),
    case(
        "broadcast-bad-from",
        "POST",
        "/api/v1/broadcasts",
        "from_email",
        json={"name": "B", "subject": "S", "from_email": "news at example", "list_id": "{list}"},
    ),
    case(
        "broadcast-both-audiences",
        "POST",
        "/api/v1/broadcasts",
        "list_id",
        json={
            "name": "B",
            "subject": "S",
            "from_email": "a@example.com",
            "list_id": "{list}",
            "segment_id": "{segment}",
        },
        mentions=("segment_id",),
    ),
    case(
        "broadcast-no-audience",
        "POST",
        "/api/v1/broadcasts",
        "list_id",
        json={"name": "B", "subject": "S", "from_email": "a@example.com"},
        mentions=("segment_id",),
    ),
    case(
        "broadcast-subject-too-long",
        "POST",
        "/api/v1/broadcasts",
        "subject",
        json={"name": "B", "subject": "s" * 999, "from_email": "a@example.com", "list_id": "{list}"},
    ),
    case(
        "broadcast-subject-header-injection",
        "POST",
        "/api/v1/broadcasts",
        "subject",
        json={
            "name": "B",
            "subject": "Hi\r\nBcc: x@evil.test",
            "from_email": "a@example.com",
            "list_id": "{list}",
        },
    ),
    case(
        "broadcast-html-wrong-type",
        "POST",
        "/api/v1/broadcasts",
        "html",
        json={"name": "B", "subject": "S", "from_email": "a@example.com", "list_id": "{list}", "html": 5},
    ),
    case(
        "broadcast-text-too-long",
        "POST",
        "/api/v1/broadcasts",
        "text",
        json={
            "name": "B",
            "subject": "S",
            "from_email": "a@example.com",
            "list_id": "{list}",
            "text": "t" * 1_000_001,
        },
    ),
    case(
        "broadcast-unknown-field",
        "POST",
        "/api/v1/broadcasts",
        "cc",
        json={"name": "B", "subject": "S", "from_email": "a@example.com", "list_id": "{list}", "cc": "x"},
    ),
    case(
        "broadcast-unknown-status",
        "POST",
        "/api/v1/broadcasts",
        "status",
        json={
            "name": "B",
            "subject": "S",
            "from_email": "a@example.com",
            "list_id": "{list}",
            "status": "sent",
        },
    ),
    case(
        "broadcast-patch-both-audiences",
        "PATCH",
        "/api/v1/broadcasts/{broadcast}",
        "list_id",
        json={"list_id": "{list}", "segment_id": "{segment}"},
    ),
    case(
        "broadcast-patch-bad-from",
        "PATCH",
        "/api/v1/broadcasts/{broadcast}",
        "from_email",
        json={"from_email": "x"},
    ),
    case("broadcast-patch-long-name", "PATCH", "/api/v1/broadcasts/{broadcast}", "name", json={"name": LONG}),
    # ---- scheduling ----
    case("schedule-missing", "POST", "/api/v1/broadcasts/{broadcast}/schedule", "send_at", json={}),
    case(
        "schedule-past",
        "POST",
        "/api/v1/broadcasts/{broadcast}/schedule",
        "send_at",
        json={"send_at": "2001-01-01T00:00:00Z"},
    ),
    case(
        "schedule-past-offset",
        "POST",
        "/api/v1/broadcasts/{broadcast}/schedule",
        "send_at",
        json={"send_at": "0001-01-01T00:00:00+01:00"},
    ),
    case(
        "schedule-naive",
        "POST",
        "/api/v1/broadcasts/{broadcast}/schedule",
        "send_at",
        json={"send_at": "2099-06-01T09:00:00"},
    ),
    case(
        "schedule-not-a-time",
        "POST",
        "/api/v1/broadcasts/{broadcast}/schedule",
        "send_at",
        json={"send_at": "next tuesday"},
    ),
    case(
        "schedule-unknown-field",
        "POST",
        "/api/v1/broadcasts/{broadcast}/schedule",
        "timezone",
        json={"send_at": FUTURE, "timezone": "UTC"},
    ),
    case(
        "schedule-calendar-edge",
        "POST",
        "/api/v1/broadcasts/{broadcast}/schedule",
        "send_at",
        json={"send_at": "9999-12-31T23:59:59-01:00"},
    ),
    # ---- suppressions ----
    # ---- delivery events ----
    case(
        "event-bounce-without-type",
        "POST",
        "/api/v1/delivery-events",
        "0.bounce_type",
        json=[{"id": "e1", "type": "bounce", "email": "a@example.com"}],
    ),
    case(
        "event-unknown-type",
        "POST",
        "/api/v1/delivery-events",
        "0.type",
        json=[{"id": "e1", "type": "opened", "email": "a@example.com"}],
    ),
    case(
        "event-bad-email",
        "POST",
        "/api/v1/delivery-events",
        "0.email",
        json=[{"id": "e1", "type": "delivered", "email": "nope"}],
    ),
    case("event-empty-batch", "POST", "/api/v1/delivery-events", "body", json=[]),
    case(
        "event-id-with-space",
        "POST",
        "/api/v1/delivery-events",
        "0.id",
        json=[{"id": "e 1", "type": "delivered", "email": "a@example.com"}],
    ),
    case("suppression-missing-email", "POST", "/api/v1/suppressions", "email", json={"reason": "r"}),
    case("suppression-bad-email", "POST", "/api/v1/suppressions", "email", json={"email": "bad"}),
    case(
        "suppression-reason-too-long",
        "POST",
        "/api/v1/suppressions",
        "reason",
        json={"email": "ok@example.com", "reason": LONG},
    ),
    case(
        "suppression-reason-wrong-type",
        "POST",
        "/api/v1/suppressions",
        "reason",
        json={"email": "ok@example.com", "reason": {"why": "x"}},
    ),
    case(
        "suppression-path-too-long",
        "DELETE",
        "/api/v1/suppressions/" + "a" * 320 + "@example.com",
        "email",
        json=None,
    ),
    # ---- sending domains ----
    case("domain-missing", "POST", "/api/v1/sending-domains", "domain", json={}),
    case("domain-space", "POST", "/api/v1/sending-domains", "domain", json={"domain": "exa mple.com"}),
    case("domain-single-label", "POST", "/api/v1/sending-domains", "domain", json={"domain": "localhost"}),
    case(
        "domain-leading-hyphen",
        "POST",
        "/api/v1/sending-domains",
        "domain",
        json={"domain": "-mail.example.com"},
    ),
    case(
        "domain-label-too-long",
        "POST",
        "/api/v1/sending-domains",
        "domain",
        json={"domain": "a" * 64 + ".com"},
    ),
    case(
        "domain-too-long",
        "POST",
        "/api/v1/sending-domains",
        "domain",
        json={"domain": ".".join(["a" * 60] * 5)},
    ),
    case("domain-with-path", "POST", "/api/v1/sending-domains", "domain", json={"domain": "example.com/x"}),
    case(
        "domain-with-scheme",
        "POST",
        "/api/v1/sending-domains",
        "domain",
        json={"domain": "https://example.com"},
    ),
    case(
        "domain-underscore",
        "POST",
        "/api/v1/sending-domains",
        "domain",
        json={"domain": "my_mail.example.com"},
    ),
    case("domain-wrong-type", "POST", "/api/v1/sending-domains", "domain", json={"domain": 42}),
    case(
        "domain-patch-selector",
        "PATCH",
        "/api/v1/sending-domains/{domain}",
        "dkim_selector",
        json={"dkim_selector": "Bad_Selector"},
    ),
    case(
        "domain-patch-return-path",
        "PATCH",
        "/api/v1/sending-domains/{domain}",
        "return_path",
        json={"return_path": "not a host"},
    ),
    case(
        "domain-patch-tracking",
        "PATCH",
        "/api/v1/sending-domains/{domain}",
        "tracking_domain",
        json={"tracking_domain": "-x.example.com"},
    ),
    case(
        "domain-patch-empty-key",
        "PATCH",
        "/api/v1/sending-domains/{domain}",
        "dkim_private_key",
        json={"dkim_private_key": ""},
    ),
    case(
        "domain-patch-status",
        "PATCH",
        "/api/v1/sending-domains/{domain}",
        "status",
        json={"status": "verified"},
    ),
    # ---- reputation rules ----
    case(
        "rule-missing-name",
        "POST",
        "/api/v1/reputation-rules",
        "name",
        json={"condition": {"event": "complaint"}, "action": {"type": "suppress_address"}},
    ),
    case(
        "rule-missing-action",
        "POST",
        "/api/v1/reputation-rules",
        "action",
        json={"name": "R", "condition": {"event": "complaint"}},
    ),
    case(
        "rule-unknown-event",
        "POST",
        "/api/v1/reputation-rules",
        "condition",
        json={"name": "R", "condition": {"event": "open"}, "action": {"type": "suppress_address"}},
    ),
    case(
        "rule-empty-condition",
        "POST",
        "/api/v1/reputation-rules",
        "condition",
        json={"name": "R", "condition": {}, "action": {"type": "suppress_address"}},
    ),
    case(
        "rule-condition-string",
        "POST",
        "/api/v1/reputation-rules",
        "condition",
        json={"name": "R", "condition": "complaint", "action": {"type": "suppress_address"}},
    ),
    case(
        "rule-condition-both-shapes",
        "POST",
        "/api/v1/reputation-rules",
        "condition",
        json={
            "name": "R",
            "condition": {"event": "complaint", "metric": "bounce_rate"},
            "action": {"type": "suppress_address"},
        },
    ),
    case(
        "rule-rate-threshold-out-of-range",
        "POST",
        "/api/v1/reputation-rules",
        "condition",
        json={
            "name": "R",
            "condition": {"metric": "bounce_rate", "threshold": 2, "window_minutes": 60, "min_sends": 100},
            "action": {"type": "pause_sending"},
        },
    ),
    case(
        "rule-rate-threshold-named",
        "POST",
        "/api/v1/reputation-rules",
        "condition.threshold",
        json={
            "name": "R",
            "condition": {"metric": "bounce_rate", "threshold": 2, "window_minutes": 60, "min_sends": 100},
            "action": {"type": "pause_sending"},
        },
    ),
    case(
        "rule-rate-missing-window-named",
        "POST",
        "/api/v1/reputation-rules",
        "condition.window_minutes",
        json={
            "name": "R",
            "condition": {"metric": "complaint_rate", "threshold": 0.01, "min_sends": 100},
            "action": {"type": "pause_sending"},
        },
    ),
    case(
        "rule-unknown-action",
        "POST",
        "/api/v1/reputation-rules",
        "action.type",
        json={"name": "R", "condition": {"event": "complaint"}, "action": {"type": "delete_everything"}},
    ),
    case(
        "rule-action-extra",
        "POST",
        "/api/v1/reputation-rules",
        "action.delay",
        json={
            "name": "R",
            "condition": {"event": "complaint"},
            "action": {"type": "pause_sending", "delay": 5},
        },
    ),
    case(
        "rule-patch-bad-condition",
        "PATCH",
        "/api/v1/reputation-rules/{rule}",
        "condition",
        json={"condition": {"metric": "open_rate"}},
    ),
    case(
        "rule-patch-enabled", "PATCH", "/api/v1/reputation-rules/{rule}", "enabled", json={"enabled": False}
    ),
    # ---- API keys (session only) ----
    case("key-missing-name", "POST", "/api/v1/api-keys", "name", json={}, who="owner"),
    case("key-name-too-long", "POST", "/api/v1/api-keys", "name", json={"name": LONG}, who="owner"),
    case(
        "key-bad-scope",
        "POST",
        "/api/v1/api-keys",
        "scopes",
        json={"name": "k", "scopes": ["admin"]},
        who="owner",
    ),
    case(
        "key-no-scopes", "POST", "/api/v1/api-keys", "scopes", json={"name": "k", "scopes": []}, who="owner"
    ),
    case(
        "key-scopes-string",
        "POST",
        "/api/v1/api-keys",
        "scopes",
        json={"name": "k", "scopes": "full"},
        who="owner",
    ),
    case(
        "key-too-many-scopes",
        "POST",
        "/api/v1/api-keys",
        "scopes",
        json={"name": "k", "scopes": ["full", "read", "write", "activity:read", "full"]},
        who="owner",
    ),
    case(
        "key-unknown-field",
        "POST",
        "/api/v1/api-keys",
        "expires",
        json={"name": "k", "expires": 3},
        who="owner",
    ),
    # ---- users (owner only) ----
    case("user-missing-email", "POST", "/api/v1/users", "email", json={"password": PASSWORD}, who="owner"),
    case(
        "user-missing-password",
        "POST",
        "/api/v1/users",
        "password",
        json={"email": "u@example.com"},
        who="owner",
    ),
    case(
        "user-bad-email",
        "POST",
        "/api/v1/users",
        "email",
        json={"email": "u@", "password": PASSWORD},
        who="owner",
    ),
    case(
        "user-short-password",
        "POST",
        "/api/v1/users",
        "password",
        json={"email": "u@example.com", "password": "short"},
        who="owner",
    ),
    case(
        "user-bad-role",
        "POST",
        "/api/v1/users",
        "role",
        json={"email": "u@example.com", "password": PASSWORD, "role": "superuser"},
        who="owner",
    ),
    case(
        "user-unknown-field",
        "POST",
        "/api/v1/users",
        "is_admin",
        json={"email": "u@example.com", "password": PASSWORD, "is_admin": True},
        who="owner",
    ),
    case("user-patch-bad-role", "PATCH", "/api/v1/users/{user}", "role", json={"role": "god"}, who="owner"),
    case(
        "user-patch-short-password",
        "PATCH",
        "/api/v1/users/{user}",
        "password",
        json={"password": "x"},
        who="owner",
    ),
    case(
        "user-patch-bad-email", "PATCH", "/api/v1/users/{user}", "email", json={"email": "nope"}, who="owner"
    ),
    # ---- the account ----
    # a partial update: {} changes nothing (200), so no "missing" case
    case("account-blank-name", "PATCH", "/api/v1/account", "name", json={"name": "  "}, who="owner"),
    case(
        "account-short-retention",
        "PATCH",
        "/api/v1/account",
        "log_retention_days",
        json={"log_retention_days": 364},
        who="owner",
    ),
    case(
        "account-retention-text",
        "PATCH",
        "/api/v1/account",
        "log_retention_days",
        json={"log_retention_days": "400"},
        who="owner",
    ),
    # ---- legal holds ----
    case("hold-missing-reason", "POST", "/api/v1/legal-holds", "reason", json={}),
    case(
        "hold-since-after-until",
        "POST",
        "/api/v1/legal-holds",
        "until",
        json={"reason": "r", "since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
    ),
    case(
        "hold-naive-since",
        "POST",
        "/api/v1/legal-holds",
        "since",
        json={"reason": "r", "since": "2026-02-01T00:00:00"},
    ),
    # ---- alert policy (sessions only) and erasures ----
    case(
        "policy-zero-count",
        "PATCH",
        "/api/v1/alert-policy",
        "burst.delete.count",
        json={"burst.delete": {"count": 0}},
        who="owner",
    ),
    case("policy-email-type", "PATCH", "/api/v1/alert-policy", "email", json={"email": 1}, who="owner"),
    case("erasure-missing-email", "POST", "/api/v1/erasures", "email", json={}),
    case("erasure-not-an-address", "POST", "/api/v1/erasures", "email", json={"email": "not an address"}),
    # ---- saved views (a user's: sessions only) ----
    case("view-missing-name", "POST", "/api/v1/saved-views", "name", json={"filter": {}}, who="owner"),
    case(
        "view-bad-action",
        "POST",
        "/api/v1/saved-views",
        "filter.action",
        json={"name": "v", "filter": {"action": "nope"}},
        who="owner",
    ),
    case(
        "view-unknown-filter",
        "POST",
        "/api/v1/saved-views",
        "filter",
        json={"name": "v", "filter": {"resource": "x"}},
        who="owner",
    ),
    case("view-blank-rename", "PATCH", "/api/v1/saved-views/{view}", "name", json={"name": " "}, who="owner"),
    case("account-empty-name", "PATCH", "/api/v1/account", "name", json={"name": ""}, who="owner"),
    case("account-long-name", "PATCH", "/api/v1/account", "name", json={"name": LONG}, who="owner"),
    # ---- signing in ----
    case(
        "session-missing-email", "POST", "/api/v1/session", "email", json={"password": "p"}, who="anonymous"
    ),
    case(
        "session-missing-password",
        "POST",
        "/api/v1/session",
        "password",
        json={"email": "a@b.co"},
        who="anonymous",
    ),
    case(
        "session-email-too-long",
        "POST",
        "/api/v1/session",
        "email",
        json={"email": "e" * 321, "password": "p"},
        who="anonymous",
    ),
    # ---- the body as a whole ----
    case("malformed-json", "POST", "/api/v1/lists", "body", content=b'{"name": ', headers=JSON_CT),
    case(
        "malformed-json-trailing-comma",
        "POST",
        "/api/v1/lists",
        "body",
        content=b'{"name": "a",}',
        headers=JSON_CT,
    ),
    case(
        "malformed-json-not-utf8",
        "POST",
        "/api/v1/lists",
        "body",
        content=b'{"name": "\xff"}',
        headers=JSON_CT,
        status=400,
        mentions=("UTF-8",),
    ),
    case(
        "malformed-json-latin1-declared",
        "PATCH",
        "/api/v1/lists/{list}",
        "body",
        content='{"name": "Café"}'.encode("latin-1"),
        headers={"Content-Type": "application/json; charset=latin-1"},
        status=400,
        mentions=("UTF-8",),
    ),
    case(
        "malformed-json-too-deep",
        "POST",
        "/api/v1/lists",
        "body",
        content=b"[" * 100_000 + b"]" * 100_000,
        headers=JSON_CT,
        status=400,
        mentions=("nested",),
    ),
    case(
        "malformed-json-10k-nested-arrays",
        "POST",
        "/api/v1/segments",
        "body",
        content=b'{"name": "S", "conditions": ' + b"[" * 10_000 + b"]" * 10_000 + b"}",
        headers=JSON_CT,
        status=400,
        mentions=("nested",),
    ),
    case(
        "malformed-json-10k-nested-objects",
        "POST",
        "/api/v1/delivery-events",
        "body",
        content=b'{"a": ' * 10_000 + b"1" + b"}" * 10_000,
        headers=JSON_CT,
        status=400,
        mentions=("nested",),
    ),
    case("body-absent", "POST", "/api/v1/lists", "body", content=b"", headers=JSON_CT),
    case("body-array", "POST", "/api/v1/lists", "body", json=[{"name": "a"}]),
    # ---- streams ----
    case(
        "stream-missing-type",
        "POST",
        "/api/v1/streams",
        "type",
        json={"name": "S", "url": "https://example.com/"},
    ),
    case(
        "stream-unknown-type",
        "POST",
        "/api/v1/streams",
        "type",
        json={"name": "S", "type": "kafka", "url": "https://example.com/"},
    ),
    case("stream-webhook-no-url", "POST", "/api/v1/streams", "url", json={"name": "S", "type": "webhook"}),
    case(
        "stream-url-not-http",
        "POST",
        "/api/v1/streams",
        "url",
        json={"name": "S", "type": "webhook", "url": "file:///etc/passwd"},
    ),
    case(
        "stream-url-loopback",
        "POST",
        "/api/v1/streams",
        "url",
        json={"name": "S", "type": "webhook", "url": "http://127.0.0.1:8000/"},
    ),
    case(
        "stream-bad-format",
        "POST",
        "/api/v1/streams",
        "format",
        json={"name": "S", "type": "webhook", "url": "https://example.com/", "format": "xml"},
    ),
    case(
        "stream-filter-unknown-action",
        "POST",
        "/api/v1/streams",
        "filter.action",
        json={"name": "S", "type": "webhook", "url": "https://example.com/", "filter": {"action": "x.y"}},
    ),
    case(
        "stream-filter-number",
        "POST",
        "/api/v1/streams",
        "filter",
        json={"name": "S", "type": "webhook", "url": "https://example.com/", "filter": {"ip": 5}},
    ),
    case(
        "stream-from-seq-zero",
        "POST",
        "/api/v1/streams",
        "from_seq",
        json={"name": "S", "type": "webhook", "url": "https://example.com/", "from_seq": 0},
    ),
    case(
        "stream-nats-bad-subject",
        "POST",
        "/api/v1/streams",
        "subject",
        json={"name": "S", "type": "nats", "subject": "a.>"},
    ),
    case("stream-patch-unknown", "PATCH", "/api/v1/streams/{stream}", "type", json={"type": "nats"}),
    case(
        "stream-patch-url", "PATCH", "/api/v1/streams/{stream}", "url", json={"url": "gopher://example.com/"}
    ),
    case("stream-replay-missing", "POST", "/api/v1/streams/{stream}/replay", "from_seq", json={}),
    case(
        "stream-replay-string", "POST", "/api/v1/streams/{stream}/replay", "from_seq", json={"from_seq": "1"}
    ),
    case(
        "stream-replay-beyond-head",
        "POST",
        "/api/v1/streams/{stream}/replay",
        "from_seq",
        json={"from_seq": 2**62},
    ),
    case("body-string", "POST", "/api/v1/lists", "body", json="a list"),
    case(
        "body-wrong-content-type",
        "POST",
        "/api/v1/lists",
        "body",
        content=b'{"name": "a"}',
        headers={"Content-Type": "text/plain"},
        status=None,
    ),
]

ROWS_10001 = ("email\n" + "".join(f"row{i}@example.com\n" for i in range(10_001))).encode()

IMPORT = "/api/v1/lists/{list}/contacts/import"
IMPORT_CASES = [
    case(
        "import-csv-no-email-column",
        "POST",
        IMPORT,
        "body",
        content=b"mail,first_name\na@example.com,A\n",
        headers=CSV_CT,
        mentions=("email",),
    ),
    case(
        "import-csv-unknown-column",
        "POST",
        IMPORT,
        "body",
        content=b"email,phone\na@example.com,555\n",
        headers=CSV_CT,
        mentions=("phone",),
    ),
    case("import-csv-empty", "POST", IMPORT, "body", content=b"", headers=CSV_CT),
    case("import-csv-header-only", "POST", IMPORT, "body", content=b"email,first_name\n", headers=CSV_CT),
    case(
        "import-csv-not-utf8",
        "POST",
        IMPORT,
        "body",
        content=b"email\n\xff\xfe@example.com\n",
        headers=CSV_CT,
        mentions=("UTF-8",),
    ),
    case(
        "import-csv-bad-row",
        "POST",
        IMPORT,
        "[1]",
        content=b"email\nok@example.com\nnot-an-email\n",
        headers=CSV_CT,
        mentions=("email",),
    ),
    case(
        "import-csv-long-name-row",
        "POST",
        IMPORT,
        "[2]",
        content=b"email,last_name\na@example.com,A\nb@example.com,B\nc@example.com," + b"n" * 201 + b"\n",
        headers=CSV_CT,
        mentions=("last_name",),
    ),
    case(
        "import-csv-extra-cell",
        "POST",
        IMPORT,
        "[0]",
        content=b"email\nok@example.com,surplus\n",
        headers=CSV_CT,
    ),
    case(
        "import-csv-too-many-rows",
        "POST",
        IMPORT,
        "body",
        content=ROWS_10001,
        headers=CSV_CT,
        mentions=("10000",),
    ),
    case(
        "import-csv-duplicate-column",
        "POST",
        IMPORT,
        "body",
        content=b"email,email\na@example.com,b@example.com\n",
        headers=CSV_CT,
        mentions=("email",),
    ),
    case(
        "import-csv-huge-cell",
        "POST",
        IMPORT,
        "[0]",
        content=b"email\n" + b"a" * 200_000 + b"@example.com\n",
        headers=CSV_CT,
        status=None,
    ),
    case("import-json-not-array", "POST", IMPORT, "body", json={"email": "a@example.com"}),
    case("import-json-malformed", "POST", IMPORT, "body", content=b"[{", headers=JSON_CT),
    case("import-json-nested-past-the-parser", "POST", IMPORT, "body", content=b"[" * 5000, headers=JSON_CT),
    case("import-json-empty", "POST", IMPORT, "body", json=[]),
    case("import-json-row-not-object", "POST", IMPORT, "[0]", json=[1]),
    case(
        "import-json-bad-row",
        "POST",
        IMPORT,
        "[2].email",
        json=[{"email": "a@example.com"}, {"email": "b@example.com"}, {"email": "c@"}],
    ),
    case("import-json-row-extra-key", "POST", IMPORT, "[0].age", json=[{"email": "a@example.com", "age": 3}]),
    case(
        "import-json-row-missing-email",
        "POST",
        IMPORT,
        "[1].email",
        json=[{"email": "a@example.com"}, {"first_name": "B"}],
    ),
    case(
        "import-text-plain",
        "POST",
        IMPORT,
        "content-type",
        content=b"email\na@example.com\n",
        headers={"Content-Type": "text/plain"},
    ),
    case(
        "import-xml",
        "POST",
        IMPORT,
        "content-type",
        content=b"<contacts/>",
        headers={"Content-Type": "application/xml"},
    ),
    case("import-no-content-type", "POST", IMPORT, "content-type", content=b"email\na@example.com\n"),
]

ACTIVITY = "/api/v1/activity"


def activity(id_: str, field_: str, **params: str | list[str]) -> Any:
    return case(id_, "GET", ACTIVITY, field_, params=params)


FILTER_CASES = [
    activity("since-word", "since", since="yesterday"),
    activity("since-bad-month", "since", since="2026-13-01T00:00:00Z"),
    activity("since-bad-offset", "since", since="2026-01-01T00:00:00+25:00"),
    activity("until-word", "until", until="noon"),
    activity("since-after-until", "since", since="2026-01-02T00:00:00Z", until="2026-01-01T00:00:00Z"),
    activity(
        "since-after-until-offsets", "since", since="2026-01-01T12:00:00-05:00", until="2026-01-01T12:00:00Z"
    ),
    activity(
        "since-calendar-edge",
        "since",
        since="0001-01-01T00:00:00+01:00",
    ),
    activity(
        "until-calendar-edge",
        "until",
        until="9999-12-31T23:59:59-01:00",
    ),
    activity("ip-cidr-v4-too-long", "ip", ip="10.0.0.0/99"),
    activity("ip-cidr-v6-too-long", "ip", ip="2001:db8::/129"),
    activity("ip-bad-octet", "ip", ip="300.1.2.3"),
    activity("ip-word", "ip", ip="localhost"),
    activity("ip-one-bad-of-two", "ip", ip="203.0.113.0/24,banana"),
    activity("action-unknown-verb", "action", action="explode"),
    activity("action-unknown-action", "action", action="broadcast.explode"),
    activity("action-unknown-wildcard", "action", action="planet.*"),
    activity("action-one-bad-of-two", "action", action="send,explode"),
    activity("action-bare-star", "action", action="*"),
    activity("action-verb-of-other-type", "action", action="list.send"),
    activity("actor-type-unknown", "actor_type", actor_type="robot"),
    activity("actor-type-one-bad", "actor_type", actor_type="session,robot"),
    activity("resource-type-unknown", "resource_type", resource_type="planet"),
    activity("resource-type-one-bad", "resource_type", resource_type="list,planet"),
    activity("q-too-long", "q", q="q" * 4001),
    activity("q-15k", "q", q="q" * 15_000),  # longer heads are refused by the HTTP server (16 KB)
    activity("action-2000-values", "action", action=",".join(["send"] * 2_000)),
    activity("resource-id-many-values", "resource_id", resource_id=",".join(["lst_x"] * 1_000)),
    activity("ip-host-bits-v6", "ip", ip="2001:db8::/140"),
    activity("ip-cidr-negative", "ip", ip="10.0.0.0/-1"),
    activity("ip-cidr-empty-prefix", "ip", ip="10.0.0.0/"),
    activity("ip-cidr-word-prefix", "ip", ip="10.0.0.0/abc"),
    activity("actor-too-long", "actor", actor="a" * 4001),
    activity("limit-zero", "limit", limit="0"),
    activity("limit-too-big", "limit", limit="1001"),
    activity("limit-negative", "limit", limit="-1"),
    activity("limit-word", "limit", limit="abc"),
    activity("limit-fraction", "limit", limit="1.5"),
    activity("cursor-garbage", "cursor", cursor="!!!not a cursor!!!"),
    activity("cursor-not-json", "cursor", cursor=base64.urlsafe_b64encode(b"not json").decode()),
    activity("cursor-wrong-shape", "cursor", cursor=cursor_of({"after": "lst_x"})),
    activity("cursor-list", "cursor", cursor=cursor_of([1])),
    activity("cursor-negative", "cursor", cursor=cursor_of({"seq": -1})),
    activity("cursor-string-seq", "cursor", cursor=cursor_of({"seq": "5"})),
    activity("cursor-too-long", "cursor", cursor="A" * 501),
    activity(
        "cursor-bool-seq",
        "cursor",
        cursor=cursor_of({"seq": True}),
    ),
    activity(
        "cursor-huge-seq",
        "cursor",
        cursor=cursor_of({"seq": 2**63}),
    ),
    activity(
        "cursor-enormous-seq",
        "cursor",
        cursor=cursor_of({"seq": 10**30}),
    ),
    case(
        "export-since-after-until",
        "GET",
        ACTIVITY + "/export",
        "since",
        params={"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
    ),
    case("export-bad-cidr", "GET", ACTIVITY + "/export", "ip", params={"ip": "198.51.100.0/33"}),
    case("export-bad-format", "GET", ACTIVITY + "/export", "format", params={"format": "xlsx"}),
    case(
        "manifest-as-of-seq-huge",  # was a 500: larger than BIGINT
        "GET",
        ACTIVITY + "/export/manifest",
        "as_of_seq",
        params={"as_of_seq": str(10**21)},
    ),
    case(
        "manifest-as-of-seq-zero",
        "GET",
        ACTIVITY + "/export/manifest",
        "as_of_seq",
        params={"as_of_seq": "0"},
    ),
    # A filter that is not applied must never answer as if it were (issue 14, item 9).
    activity("unknown-filter", "resource", resource="dom_x"),
    activity("unknown-filter-case", "Actor", Actor="usr_x"),
    activity("empty-filter", "resource_id", resource_id=""),
    activity("blank-filter", "actor", actor="  "),
    activity("empty-cursor", "cursor", cursor=""),
    activity("repeated-filter", "actor", actor=["usr_a", "usr_b"]),
    activity("repeated-limit", "limit", limit=["5", "6"]),
    case("export-unknown-filter", "GET", ACTIVITY + "/export", "resource", params={"resource": "dom_x"}),
    case("export-empty-filter", "GET", ACTIVITY + "/export", "action", params={"action": ""}),
    case(
        "export-repeated-format",
        "GET",
        ACTIVITY + "/export",
        "format",
        params={"format": ["csv", "jsonl"]},
    ),
    case(
        "manifest-unknown-filter",
        "GET",
        ACTIVITY + "/export/manifest",
        "resource",
        params={"as_of_seq": "1", "resource": "dom_x"},
    ),
    case(
        "manifest-empty-filter",
        "GET",
        ACTIVITY + "/export/manifest",
        "q",
        params={"as_of_seq": "1", "q": ""},
    ),
    case("entry-seq-word", "GET", ACTIVITY + "/abc", "seq"),
    case(
        "entry-seq-huge",
        "GET",
        ACTIVITY + f"/{2**63}",
        "seq",
        status=None,
    ),
    case("lists-limit-zero", "GET", "/api/v1/lists", "limit", params={"limit": "0"}),
    case("lists-limit-word", "GET", "/api/v1/lists", "limit", params={"limit": "many"}),
    case("lists-cursor-garbage", "GET", "/api/v1/lists", "cursor", params={"cursor": "%%%"}),
    case(
        "lists-cursor-with-a-field-of-its-own",
        "GET",
        "/api/v1/lists",
        "cursor",
        params={"cursor": cursor_of({"after": "lst_a", "x": 1})},
    ),
    case(
        "activity-cursor-respelled",
        "GET",
        ACTIVITY,
        "cursor",
        params={"cursor": cursor_of({"seq": 10, "x": 1})},
    ),
    case("lists-unknown-parameter", "GET", "/api/v1/lists", "foo", params={"foo": "1"}),
    case("activity-q-not-utf8", "GET", ACTIVITY + "?q=%FF", "q", mentions=("UTF-8",)),
    case(
        "activity-actor-a-lone-surrogate", "GET", ACTIVITY + "?actor=%ED%A0%80", "actor", mentions=("UTF-8",)
    ),
    case("verify-unknown-parameter", "GET", ACTIVITY + "/verify", "foo", params={"foo": "1"}),
    case("holds-empty-cursor", "GET", "/api/v1/legal-holds", "cursor", params={"cursor": ""}),
    case(
        "suppressions-cursor-wrong-kind",
        "GET",
        "/api/v1/suppressions",
        "cursor",
        params={"cursor": cursor_of({"seq": 3})},
    ),
    case("keys-limit-too-big", "GET", "/api/v1/api-keys", "limit", params={"limit": "5000"}, who="owner"),
]

NUL_BODY_CASES = [
    case(
        "nul-contact-first-name",
        "POST",
        "/api/v1/lists/{list}/contacts",
        "first_name",
        json={"email": "nul1@example.com", "first_name": "A\x00"},
    ),
    case(
        "nul-contact-patch-last-name",
        "PATCH",
        "/api/v1/contacts/{contact}",
        "last_name",
        json={"last_name": "B\x00"},
    ),
    case(
        "nul-suppression-reason",
        "POST",
        "/api/v1/suppressions",
        "reason",
        json={"email": "nul2@example.com", "reason": "r\x00"},
    ),
    case(
        "nul-import-json",
        "POST",
        IMPORT,
        "[0].first_name",
        json=[{"email": "nul3@example.com", "first_name": "\x00"}],
    ),
    case(
        "nul-broadcast-html",
        "PATCH",
        "/api/v1/broadcasts/{broadcast}",
        "html",
        json={"html": "<p>\x00</p>"},
    ),
    case(
        "nul-dkim-key",
        "PATCH",
        "/api/v1/sending-domains/{domain}",
        "dkim_private_key",
        json={"dkim_private_key": "key\x00"},
    ),
]

NUL_LOOKUP_CASES = [
    case("nul-q", "GET", ACTIVITY, "q", params={"q": "a\x00b"}, status=None),
    case("nul-actor", "GET", ACTIVITY, "actor", params={"actor": "usr_\x00"}, status=None),
    case(
        "nul-resource-id",
        "GET",
        ACTIVITY,
        "resource_id",
        params={"resource_id": "\x00"},
        status=None,
    ),
    case("nul-list-path", "GET", "/api/v1/lists/lst_%00", "lst_", status=None),
    case(
        "nul-contact-patch-path",
        "PATCH",
        "/api/v1/contacts/con_%00",
        "con_",
        json={"first_name": "A"},
        status=None,
    ),
    case(
        "nul-unsuppress-path",
        "DELETE",
        "/api/v1/suppressions/a%00@example.com",
        "example.com",
        status=None,
    ),
]


# ---- fixtures and helpers ----
@dataclass
class Ctx:
    server: Server
    tenant: Tenant
    ids: dict[str, str]
    owner_cookies: httpx.Cookies
    csrf: str

    @property
    def engine(self) -> str:
        return "postgresql" if self.server.db.url.startswith("postgresql") else "sqlite"

    def client(self, who: str) -> httpx.Client:
        """A fresh connection per request: a 500 may close the one it came on."""
        if who == "key":
            return self.tenant.key_client()
        headers = {"User-Agent": "tests-validation/1.0"}
        if who == "owner":
            headers["X-CSRF-Token"] = self.csrf
            return httpx.Client(
                base_url=self.server.url, headers=headers, cookies=self.owner_cookies, timeout=30
            )
        return httpx.Client(base_url=self.server.url, headers=headers, timeout=30)

    def head(self) -> int:
        with self.tenant.key_client() as c:
            r = c.get(ACTIVITY, params={"limit": "1"})
            assert r.status_code == 200, r.text
            return int(r.json()["data"][0]["seq"])


@pytest.fixture(scope="module")
def ctx(server: Server) -> Iterator[Ctx]:
    tenant = make_tenant(server, name="Validation Co")
    owner = tenant.session_client()
    try:
        with tenant.key_client() as k:

            def made(r: httpx.Response) -> str:
                assert r.status_code == 201, r.text
                return str(r.json()["id"])

            lst = made(k.post("/api/v1/lists", json={"name": "Target"}))
            ids = {
                "list": lst,
                "contact": made(k.post(f"/api/v1/lists/{lst}/contacts", json={"email": "c@example.com"})),
                "segment": made(k.post("/api/v1/segments", json={"name": "Seg", "list_id": lst})),
                "domain": made(k.post("/api/v1/sending-domains", json={"domain": "mail.example.com"})),
                "rule": made(
                    k.post(
                        "/api/v1/reputation-rules",
                        json={
                            "name": "R",
                            "condition": {"event": "complaint"},
                            "action": {"type": "pause_sending"},
                        },
                    )
                ),
            }
            ids["stream"] = made(
                k.post(
                    "/api/v1/streams", json={"name": "S", "type": "webhook", "url": "https://example.com/"}
                )
            )
            ids["broadcast"] = made(
                k.post(
                    "/api/v1/broadcasts",
                    json={"name": "B", "subject": "S", "from_email": "a@example.com", "list_id": lst},
                )
            )
        ids["user"] = made(
            owner.post(
                "/api/v1/users", json={"email": f"m-{tenant.account_id}@example.com", "password": PASSWORD}
            )
        )
        ids["view"] = made(owner.post("/api/v1/saved-views", json={"name": "Target view"}))
        yield Ctx(server, tenant, ids, owner.cookies, owner.headers["X-CSRF-Token"])
    finally:
        owner.close()


def fill(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str) and value.startswith("{") and value.endswith("}") and value[1:-1] in ids:
        return ids[value[1:-1]]
    if isinstance(value, dict):
        return {k: fill(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, ids) for v in value]
    return value


def send(ctx: Ctx, c: Case) -> httpx.Response:
    path = c.path.format(**ctx.ids) if "{" in c.path else c.path
    kwargs: dict[str, Any] = {"headers": c.headers}
    if c.params:  # httpx drops a query written in the path when given params, even empty ones
        kwargs["params"] = c.params
    if c.content is not None:
        kwargs["content"] = c.content
    elif c.json is not None:
        kwargs["json"] = fill(c.json, ctx.ids)
    with ctx.client(c.who) as client:
        response = client.request(c.method, path, **kwargs)
        if response.status_code >= 500:
            settle(client)
        return response


def settle(client: httpx.Client) -> None:
    """Wait until the server is done with a 500: uvicorn logs the exception and only then closes the
    connection, so one more request on it returns only after the log is written. Otherwise the server thread
    may format its traceback (which calls ast.parse on 3.11) while pytest formats the expected failure, and
    CPython 3.11's AST state is not safe for that: pytest can crash with "AST constructor recursion depth
    mismatch" (see cpython gh-106905, pytest-dev/pytest#10763)."""
    with contextlib.suppress(httpx.TransportError):
        client.get("/api/v1/session")


def assert_named_error(r: httpx.Response, c: Case) -> dict[str, Any]:
    assert r.status_code < 500, f"{r.status_code}: {r.text[:300]}"
    assert r.status_code >= 400, f"bad input accepted: {r.status_code} {r.text[:300]}"
    if c.status is not None:
        assert r.status_code == c.status, r.text[:300]
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) <= {"code", "message", "field"} and {"code", "message"} <= set(error), error
    assert isinstance(error["code"], str) and error["code"], error
    assert isinstance(error["message"], str) and error["message"], error
    assert c.field in error["message"], f"the message names {c.field!r}: {error}"
    if "field" in error:
        assert isinstance(error["field"], str) and c.field in error["field"], error
    for text in c.mentions:
        assert text in error["message"], error
    return dict(error)


# ---- the tests ----
@pytest.mark.parametrize("c", BODY_CASES + IMPORT_CASES + FILTER_CASES + NUL_BODY_CASES)
def test_bad_input_is_a_4xx_naming_its_field_and_leaves_no_entry(ctx: Ctx, c: Case) -> None:
    before = ctx.head()
    assert_named_error(send(ctx, c), c)
    assert ctx.head() == before, "bad input is not logged (only a 403 for role or scope is)"


@pytest.mark.parametrize("c", NUL_LOOKUP_CASES)
def test_nul_in_a_lookup_is_never_a_500(ctx: Ctx, c: Case) -> None:
    """A filter or id with NUL matches nothing: 200 with no rows or a 4xx, on both engines."""
    r = send(ctx, c)
    assert r.status_code < 500, f"{r.status_code}: {r.text[:300]}"
    if r.status_code == 200:
        assert r.json()["data"] == []
    else:
        assert 400 <= r.status_code < 500
        assert set(r.json()["error"]) >= {"code", "message"}


def test_a_streamed_body_over_the_limit_is_413_not_a_parse_error(ctx: Ctx) -> None:
    """Read by the framework's JSON parser (not the import's own reader), the limit used to surface as 400."""
    before = ctx.head()

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while read
        yield b'{"name": "'
        for _ in range(70):
            yield b"x" * 100_000
        yield b'"}'

    with ctx.client("key") as client:
        r = client.post("/api/v1/lists", content=chunks(), headers=JSON_CT)
    assert r.status_code == 413, r.text
    assert r.json()["error"] == {"code": "too_large", "message": "body: larger than 6 MB", "field": "body"}
    assert ctx.head() == before


def test_an_over_long_query_string_is_refused_before_the_app(ctx: Ctx) -> None:
    """A 100 KB ``q`` (or 10,000 ``action`` values) never reaches a route: the edge guard answers 414 with a
    message that says what is too long (not the HTTP server's bare "Invalid HTTP request received."), and
    nothing is logged; filters up to that size get the app's own 422."""
    before = ctx.head()
    url = httpx.URL(ctx.server.url)
    head = f"GET {ACTIVITY}?q={'q' * 100_000} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    with socket.create_connection((url.host, url.port), timeout=30) as sock:
        sock.sendall(head)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 414 "), answer[:200]
    assert b"query: too long" in answer
    assert ctx.head() == before


def test_the_table_covers_every_endpoint_that_takes_a_body(ctx: Ctx) -> None:
    """Every POST/PATCH with a request body in the OpenAPI schema has at least one case above, so a new
    endpoint cannot slip past this file unnoticed."""
    with ctx.client("anonymous") as client:
        schema = client.get("/openapi.json").json()

    def shape(path: str) -> str:
        return re.sub(r"\{[^}]+\}", "{}", path)

    with_body = {
        (method.upper(), shape(path))
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        if "requestBody" in operation
    }
    assert len(with_body) >= 20
    covered = {(p.values[0].method, shape(p.values[0].path)) for p in BODY_CASES + IMPORT_CASES}
    assert with_body <= covered, f"no validation case for {sorted(with_body - covered)}"
